// The net layer against real sockets: addresses, listener balance per policy,
// IPv6 and Unix sockets, client connect, close reasons, timeouts, no fd leaks.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "net/net_support.hpp"

using namespace ringshard;
using namespace ringshard::net;
using namespace std::chrono_literals;
using test::Fd;
using test::connect_to;
using test::eventually;
using test::opts;
using test::read_exactly;
using test::sees_close;

namespace {

struct Echo : Connection<Echo> {
  void on_data(std::span<const std::byte> bytes) override { send(bytes); }
};

struct Holder : Connection<Holder> {
  void on_data(std::span<const std::byte>) override {}
};

struct CloseLog {
  std::mutex m;
  std::vector<CloseReason> reasons;
  void add(CloseReason r) {
    std::lock_guard<std::mutex> g(m);
    reasons.push_back(r);
  }
  bool has(CloseReason r) {
    std::lock_guard<std::mutex> g(m);
    return std::find(reasons.begin(), reasons.end(), r) != reasons.end();
  }
};

struct Reporting : Connection<Reporting> {
  CloseLog* log;
  explicit Reporting(CloseLog* l) : log(l) {}
  void on_data(std::span<const std::byte> bytes) override {
    const std::string_view s(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    if (s.find("close") != std::string_view::npos) close();
    else if (s.find("abort") != std::string_view::npos) abort();
    else send(bytes);
  }
  void on_close(CloseReason r) override { log->add(r); }
};

}  // namespace

TEST_CASE("addresses parse and print IPv4, IPv6 and Unix forms, and reject garbage") {
  CHECK(Address::parse("127.0.0.1:8080").to_string() == "127.0.0.1:8080");
  CHECK(Address::parse("[::1]:443").to_string() == "[::1]:443");
  CHECK(Address::parse("*:80").to_string() == "0.0.0.0:80");
  CHECK(Address::parse("unix:/tmp/x.sock").to_string() == "unix:/tmp/x.sock");
  CHECK(Address::parse("[::1]:443").family() == AF_INET6);
  CHECK(Address::parse("127.0.0.1:9").port() == 9);
  CHECK_THROWS_AS(Address::parse("127.0.0.1"), std::invalid_argument);
  CHECK_THROWS_AS(Address::parse("127.0.0.1:99999"), std::invalid_argument);
  CHECK_THROWS_AS(Address::parse("300.1.1.1:80"), std::invalid_argument);
  CHECK_THROWS_AS(Address::parse("[::1]80"), std::invalid_argument);
  CHECK(parse_policy("least-connections") == Policy::least_connections);
  CHECK_THROWS_AS(parse_policy("random"), std::invalid_argument);
}

TEST_CASE("listen on a busy port fails with an error naming the address") {
  Runtime rt(opts(1));
  rt.start();
  Fd taken = test::listen_loopback();
  const auto addr = test::local_address(taken.get());
  ListenOptions o;
  o.address = Address::ipv4("127.0.0.1", ntohs(addr.sin_port));
  try {
    listen<Echo>(rt, o);
    FAIL("bind on a port in use succeeded");
  } catch (const std::system_error& e) {
    CHECK(std::string(e.what()).find("127.0.0.1:" + std::to_string(ntohs(addr.sin_port))) != std::string::npos);
    CHECK(e.code().value() == EADDRINUSE);
  }
}

TEST_CASE("echo over IPv6 and over a Unix socket") {
  Runtime rt(opts(2));
  rt.start();
  test::TempDir dir;
  for (const Address& a : {Address::parse("[::1]:0"), Address::unix_path(dir.file("echo.sock"))}) {
    CAPTURE(a.to_string());
    ListenOptions o;
    o.address = a;
    auto l = listen<Echo>(rt, o);
    for (int i = 0; i < 4; ++i) {  // lands on both shards (round robin)
      Fd c = connect_to(l.address());
      const std::string msg = "hello " + std::to_string(i) + " over " + a.to_string();
      REQUIRE(::write(c.get(), msg.data(), msg.size()) == static_cast<ssize_t>(msg.size()));
      CHECK(read_exactly(c.get(), msg.size()) == msg);
    }
    l.close();
  }
}

TEST_CASE("least-connections keeps shards within 1.2x after 2,000 connections of mixed lifetimes") {
  // Three shards; clients close a random half of their connections at random
  // moments, so per-shard counts drift unless the policy looks at live counts.
  const unsigned kShards = 3;
  for (Policy policy : {Policy::least_connections, Policy::round_robin}) {
    const std::string name = to_string(policy);
    CAPTURE(name);
    Runtime rt(opts(kShards));
    rt.start();
    ListenOptions o;
    o.policy = policy;
    auto l = listen<Holder>(rt, o);
    std::mt19937 rng(42);
    std::vector<Fd> open;
    constexpr int kTotal = 2000;
    int closed = 0;
    for (int i = 0; i < kTotal; ++i) {
      open.push_back(connect_to(l.address()));
      // Mixed lifetimes: now and then close a few random connections.
      if (rng() % 3 == 0 && !open.empty()) {
        const std::size_t k = rng() % open.size();
        std::swap(open[k], open.back());
        open.pop_back();
        ++closed;
        // The server sees the close before the next connection arrives, so
        // the test measures the policy, not how fast a loaded machine is.
        REQUIRE(eventually([&] {
          auto c = connections_per_shard(rt);
          int sum = 0;
          for (int v : c) sum += v;
          return sum == i + 1 - closed;
        }));
      }
    }
    const int expected_live = kTotal - closed;
    REQUIRE(eventually([&] {
      auto c = connections_per_shard(rt);
      int sum = 0;
      for (int v : c) sum += v;
      return sum == expected_live;
    }));
    auto counts = connections_per_shard(rt);
    const int hi = *std::max_element(counts.begin(), counts.end());
    const int lo = *std::min_element(counts.begin(), counts.end());
    const double ratio = static_cast<double>(hi) / std::max(lo, 1);
    MESSAGE(name << ": live per shard " << counts[0] << " / " << counts[1] << " / " << counts[2]
                              << ", busiest/idlest = " << ratio);
    if (policy == Policy::least_connections) CHECK(ratio <= 1.2);
    open.clear();
    REQUIRE(eventually([&] {
      auto c = connections_per_shard(rt);
      return std::all_of(c.begin(), c.end(), [](int v) { return v == 0; });
    }));
    l.close();
    rt.stop();
    rt.wait();
  }
}

TEST_CASE("close flushes, abort does not, and peer close and reset are reported with their reason") {
  Runtime rt(opts(2));
  rt.start();
  CloseLog log;
  auto l = listen<Reporting>(rt, ListenOptions{}, &log);
  {
    Fd c = connect_to(l.address());
    REQUIRE(::write(c.get(), "ping", 4) == 4);
    CHECK(read_exactly(c.get(), 4) == "ping");
    REQUIRE(::write(c.get(), "close", 5) == 5);
    CHECK(sees_close(c.get()));
    REQUIRE(eventually([&] { return log.has(CloseReason::closed); }));
  }
  {
    Fd c = connect_to(l.address());
    REQUIRE(::write(c.get(), "abort", 5) == 5);
    CHECK(sees_close(c.get()));
    REQUIRE(eventually([&] { return log.has(CloseReason::aborted); }));
  }
  {
    Fd c = connect_to(l.address());
    ::shutdown(c.get(), SHUT_WR);  // half-close
    REQUIRE(eventually([&] { return log.has(CloseReason::peer_closed); }));
  }
  {
    Fd c = connect_to(l.address());
    REQUIRE(::write(c.get(), "x", 1) == 1);
    CHECK(read_exactly(c.get(), 1) == "x");
    linger lg{1, 0};  // close with RST
    ::setsockopt(c.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    c.reset();
    REQUIRE(eventually([&] { return log.has(CloseReason::peer_reset); }));
  }
  REQUIRE(eventually([&] { return connections_per_shard(rt) == std::vector<int>{0, 0}; }));
}

TEST_CASE("idle and read timeouts close a silent connection") {
  Runtime rt(opts(1));
  rt.start();
  CloseLog log;
  ListenOptions o;
  o.connection.idle_timeout = 100ms;
  auto l = listen<Reporting>(rt, o, &log);
  Fd c = connect_to(l.address());
  const auto start = Clock::now();
  CHECK(sees_close(c.get(), 3000ms));
  CHECK(Clock::now() - start >= 100ms);
  REQUIRE(eventually([&] { return log.has(CloseReason::idle_timeout); }));

  ListenOptions r;
  r.connection.read_timeout = 100ms;
  auto l2 = listen<Reporting>(rt, r, &log);
  Fd c2 = connect_to(l2.address());
  CHECK(sees_close(c2.get(), 3000ms));
  REQUIRE(eventually([&] { return log.has(CloseReason::read_timeout); }));
}

namespace {
struct Client : Connection<Client> {
  std::atomic<int>* state;
  std::string* got;
  std::size_t want;
  Client(std::atomic<int>* s, std::string* g, std::size_t w) : state(s), got(g), want(w) {}
  void on_open() override {
    state->store(1);
    send(std::string(want, 'z'));
  }
  void on_data(std::span<const std::byte> bytes) override {
    got->append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    if (got->size() == want) close();
  }
  void on_close(CloseReason r) override { state->store(r == CloseReason::closed ? 2 : r == CloseReason::connect_failed ? 3 : 4); }
};
}  // namespace

TEST_CASE("client connect from a shard talks to a listener, and a refused connect is reported") {
  Runtime rt(opts(2));
  rt.start();
  auto l = listen<Echo>(rt, ListenOptions{});
  std::atomic<int> state{0};
  std::string got;
  connect<Client>(rt, 1, l.address(), &state, &got, std::size_t{3 << 20});  // 3 MiB round trip
  REQUIRE(eventually([&] { return state.load() == 2; }));
  CHECK(got == std::string(3 << 20, 'z'));

  // A port nobody listens on.
  Fd probe = test::listen_loopback();
  const auto dead = Address::ipv4("127.0.0.1", ntohs(test::local_address(probe.get()).sin_port));
  probe.reset();
  std::atomic<int> state2{0};
  std::string got2;
  connect<Client>(rt, 0, dead, &state2, &got2, std::size_t{1});
  REQUIRE(eventually([&] { return state2.load() == 3; }));
}

TEST_CASE("a client stopped while its connect is pending is cancelled and freed, and so is one left at shutdown") {
  // A listener whose accept queue is full drops further SYNs: connects to it
  // stay pending (the kernel retries the SYN for minutes).
  Fd full = test::listen_loopback(0);
  const auto port = ntohs(test::local_address(full.get()).sin_port);
  const auto target = Address::ipv4("127.0.0.1", port);
  std::vector<Fd> fillers;
  for (int i = 0; i < 4; ++i) {
    Fd f(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    REQUIRE(f.get() >= 0);
    (void)::connect(f.get(), target.get(), target.length());  // EINPROGRESS, or queued
    fillers.push_back(std::move(f));
  }
  std::this_thread::sleep_for(50ms);
  const int fds_before = test::open_fd_count();
  {
    Runtime rt(opts(1));
    rt.start();
    std::atomic<int> state{0}, state2{0};
    std::string got, got2;
    auto pending = connect<Client>(rt, 0, target, &state, &got, std::size_t{1});
    connect<Client>(rt, 0, target, &state2, &got2, std::size_t{1});  // left pending at shutdown
    std::this_thread::sleep_for(300ms);
    REQUIRE(state.load() == 0);  // still connecting
    actors::stop(pending);
    // The connect is cancelled and the socket closed: one live connection left.
    REQUIRE(eventually([&] { return NetShard::of(rt.shard(0)).connections.load() == 1; }, 5s));
    const auto stop_started = Clock::now();
    rt.stop();
    rt.wait();
    CHECK(Clock::now() - stop_started < 3s);  // not held up by the pending connect
  }
  // Both sockets are closed (and, under LeakSanitizer, freed).
  CHECK(test::open_fd_count() <= fds_before);
}

TEST_CASE("a client that never reads pauses reception and bounds the server's queue, and others are served") {
  Runtime rt(opts(1));
  rt.start();
  std::atomic<std::size_t> max_pending{0};
  struct Watch : Connection<Watch> {
    std::atomic<std::size_t>* max_pending;
    explicit Watch(std::atomic<std::size_t>* m) : max_pending(m) {}
    void on_data(std::span<const std::byte> bytes) override {
      send(bytes);
      std::size_t p = pending_send_bytes();
      std::size_t prev = max_pending->load();
      while (p > prev && !max_pending->compare_exchange_weak(prev, p)) {}
    }
  };
  auto l = listen<Watch>(rt, ListenOptions{}, &max_pending);
  Fd hog = connect_to(l.address());
  ::fcntl(hog.get(), F_SETFL, O_NONBLOCK);
  const std::string chunk(64 << 10, 'h');
  std::size_t written = 0;
  const auto end = Clock::now() + 3s;
  while (written < (32u << 20) && Clock::now() < end) {  // push up to 32 MiB without reading
    const ssize_t w = ::write(hog.get(), chunk.data(), chunk.size());
    if (w > 0) written += static_cast<std::size_t>(w);
    else std::this_thread::sleep_for(1ms);
  }
  MESSAGE("written before the server stopped taking more: " << written << " bytes; max queued "
                                                            << max_pending.load());
  CHECK(written < (32u << 20));  // the server stopped reading
  CHECK(max_pending.load() < (4u << 20));  // high watermark (1 MiB) + one receive's worth
  Fd other = connect_to(l.address());
  REQUIRE(::write(other.get(), "still here", 10) == 10);
  CHECK(read_exactly(other.get(), 10) == "still here");
}

TEST_CASE("1,000 connections opened and dropped at once leave no fd behind") {
  Runtime rt(opts(2));
  rt.start();
  auto l = listen<Echo>(rt, ListenOptions{});
  {  // warm up: rings, buffers and the like exist before we count
    Fd c = connect_to(l.address());
    REQUIRE(::write(c.get(), "w", 1) == 1);
    CHECK(read_exactly(c.get(), 1) == "w");
  }
  REQUIRE(eventually([&] { return connections_per_shard(rt) == std::vector<int>{0, 0}; }));
  const int before = test::open_fd_count();
  {
    std::vector<Fd> conns;
    for (int i = 0; i < 1000; ++i) conns.push_back(connect_to(l.address()));
    for (int i = 0; i < 1000; i += 2) {  // half of them reset
      linger lg{1, 0};
      ::setsockopt(conns[static_cast<std::size_t>(i)].get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
  }
  REQUIRE(eventually([&] { return connections_per_shard(rt) == std::vector<int>{0, 0}; }));
  REQUIRE(eventually([&] { return test::open_fd_count() == before; }));
  Fd c = connect_to(l.address());
  REQUIRE(::write(c.get(), "ok", 2) == 2);
  CHECK(read_exactly(c.get(), 2) == "ok");
}

namespace {

struct NagleProbe : Connection<NagleProbe> {
  std::atomic<int>* seen;
  explicit NagleProbe(std::atomic<int>* s) : seen(s) {}
  void on_open() override {
    int v = -1;
    socklen_t len = sizeof v;
    seen->store(::getsockopt(fd(), IPPROTO_TCP, TCP_NODELAY, &v, &len) == 0 ? v : -2);
  }
  void on_data(std::span<const std::byte>) override {}
};

}  // namespace

TEST_CASE("accepted TCP connections have TCP_NODELAY unless the options turn it off") {
  Runtime rt(opts(1));
  rt.start();
  for (const bool nodelay : {true, false}) {
    std::atomic<int> seen{-1};
    ListenOptions o;
    o.connection.nodelay = nodelay;
    auto l = listen<NagleProbe>(rt, o, &seen);
    Fd s = connect_to(l.address());
    REQUIRE(eventually([&] { return seen.load() != -1; }, 5s));
    CHECK((seen.load() != 0) == nodelay);
  }
}

TEST_CASE("a runtime stopped with a zero stop timeout frees its listeners and connections (checked by LeakSanitizer)") {
  // The stop gives up waiting at once: the acceptor and the sockets end at
  // the final CQEs collected after it, not in tasks that never run.
  struct Quiet : Connection<Quiet> {
    void on_data(std::span<const std::byte> b) override { send(b); }
  };
  RuntimeOptions o = opts(2);
  o.stop_timeout = 0ms;
  Runtime rt(o);
  rt.start();
  auto l = listen<Quiet>(rt, ListenOptions{});
  Fd a = connect_to(l.address());
  Fd b = connect_to(l.address());
  REQUIRE(::write(a.get(), "x", 1) == 1);
  CHECK(read_exactly(a.get(), 1) == "x");
  rt.stop();
  rt.wait();
}
