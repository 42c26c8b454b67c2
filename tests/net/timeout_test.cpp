// Connection timeouts checked on the tick (idle with traffic, send timeout,
// the application's own tick) and the lingering close, on plain connections.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
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

namespace {

struct Reasons {
  std::mutex m;
  std::vector<CloseReason> seen;
  void add(CloseReason r) {
    std::lock_guard g(m);
    seen.push_back(r);
  }
  bool has(CloseReason r) {
    std::lock_guard g(m);
    return std::find(seen.begin(), seen.end(), r) != seen.end();
  }
};

// Echoes; "big" queues 32 MiB; "linger" answers "bye" and closes lingeringly.
struct Server : Connection<Server> {
  Reasons* reasons;
  explicit Server(Reasons* r) : reasons(r) {}
  void on_data(std::span<const std::byte> bytes) override {
    const std::string_view s(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    if (s.find("big") != std::string_view::npos) {
      send(std::string(32u << 20, 'b'));
    } else if (s.find("linger") != std::string_view::npos) {
      send("bye");
      close_lingering();
    } else {
      send(bytes);
    }
  }
  void on_close(CloseReason r) override { reasons->add(r); }
};

}  // namespace

TEST_CASE("the idle timeout leaves a connection with traffic alone and closes it once silent") {
  Runtime rt(opts(1));
  rt.start();
  Reasons reasons;
  ListenOptions o;
  o.connection.idle_timeout = 150ms;
  auto l = listen<Server>(rt, o, &reasons);
  Fd c = connect_to(l.address());
  for (int i = 0; i < 12; ++i) {  // 600 ms of traffic, every 50 ms
    std::this_thread::sleep_for(50ms);
    REQUIRE(::write(c.get(), "x", 1) == 1);
    CHECK(test::read_exactly(c.get(), 1) == "x");
  }
  const auto t0 = Clock::now();  // silent from here
  CHECK_FALSE(reasons.has(CloseReason::idle_timeout));
  CHECK(test::sees_close(c.get(), 2000ms));
  const auto took = Clock::now() - t0;
  CHECK(took >= 140ms);
  CHECK(took < 600ms);
  REQUIRE(eventually([&] { return reasons.has(CloseReason::idle_timeout); }, 3s));
}

TEST_CASE("the send timeout resets a connection whose peer takes nothing of what is queued") {
  Runtime rt(opts(1));
  rt.start();
  Reasons reasons;
  ListenOptions o;
  o.connection.send_timeout = 200ms;
  auto l = listen<Server>(rt, o, &reasons);
  Fd c = connect_to(l.address());
  REQUIRE(::write(c.get(), "big", 3) == 3);
  const auto t0 = Clock::now();
  REQUIRE(eventually([&] { return reasons.has(CloseReason::send_timeout); }, 3s));
  const auto took = Clock::now() - t0;
  MESSAGE("send timeout after " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
  CHECK(took >= 190ms);
  // The stall counts from when the socket's buffers are full, which takes
  // longer under a sanitizer on a busy machine.
  CHECK(took < (test::under_sanitizer() ? 3000ms : 1000ms));
  // A reset, so the kernel drops what it still held for the peer too.
  char buf[65536];
  ssize_t n;
  std::size_t got = 0;
  while ((n = ::recv(c.get(), buf, sizeof buf, MSG_DONTWAIT)) > 0) got += static_cast<std::size_t>(n);
  CHECK((n == 0 || errno == ECONNRESET));
  CHECK(got < (32u << 20));
  CHECK(NetShard::of(rt.shard(0)).connections.load() == 0);
}

TEST_CASE("close_lingering: the reply arrives and then a clean end, though the peer was still sending") {
  Runtime rt(opts(1));
  rt.start();
  Reasons reasons;
  auto l = listen<Server>(rt, ListenOptions{}, &reasons);
  Fd c = connect_to(l.address());
  // "linger", then 4 MiB the server never reads as data: it arrives while
  // the server closes. A plain close would reset the connection.
  std::string all = "linger";
  all += std::string(4u << 20, 'q');
  std::size_t sent = 0;
  while (sent < all.size()) {
    const ssize_t w = ::send(c.get(), all.data() + sent, all.size() - sent, MSG_NOSIGNAL);
    REQUIRE(w > 0);
    sent += static_cast<std::size_t>(w);
  }
  CHECK(test::read_exactly(c.get(), 3) == "bye");
  char x;
  CHECK(::recv(c.get(), &x, 1, 0) == 0);  // EOF, not ECONNRESET
  c.reset();
  REQUIRE(eventually([&] { return reasons.has(CloseReason::closed); }, 3s));
}

TEST_CASE("close_lingering ends at linger_time when the peer never stops sending") {
  Runtime rt(opts(1));
  rt.start();
  Reasons reasons;
  ListenOptions o;
  o.connection.linger_time = 200ms;
  o.connection.linger_timeout = 1s;
  auto l = listen<Server>(rt, o, &reasons);
  Fd c = connect_to(l.address());
  ::fcntl(c.get(), F_SETFL, O_NONBLOCK);
  REQUIRE(::write(c.get(), "linger", 6) == 6);
  const auto t0 = Clock::now();
  while (!reasons.has(CloseReason::closed) && Clock::now() - t0 < 2s) {
    (void)::send(c.get(), "more", 4, MSG_NOSIGNAL);
    std::this_thread::sleep_for(5ms);
  }
  const auto took = Clock::now() - t0;
  CHECK(reasons.has(CloseReason::closed));
  CHECK(took >= 190ms);
  CHECK(took < 800ms);
}

TEST_CASE("on_tick runs at the interval set_tick asks for, only while the connection is open") {
  Runtime rt(opts(1));
  rt.start();
  std::atomic<int> ticks{0};
  struct Ticking : Connection<Ticking> {
    std::atomic<int>* ticks;
    explicit Ticking(std::atomic<int>* t) : ticks(t) {}
    void on_open() override { set_tick(20ms); }
    void on_data(std::span<const std::byte>) override {}
    void on_tick(Clock::time_point) override { ticks->fetch_add(1); }
  };
  auto l = listen<Ticking>(rt, ListenOptions{}, &ticks);
  Fd c = connect_to(l.address());
  std::this_thread::sleep_for(300ms);
  const int seen = ticks.load();
  MESSAGE(seen << " ticks in 300 ms at 20 ms");
  CHECK(seen >= 8);
  CHECK(seen <= 16);
  c.reset();
  REQUIRE(eventually([&] { return NetShard::of(rt.shard(0)).connections.load() == 0; }, 3s));
  const int after = ticks.load();
  std::this_thread::sleep_for(100ms);
  CHECK(ticks.load() == after);
}
