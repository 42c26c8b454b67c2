// The shard's receive ring on each of its paths: incremental buffers (the
// default on this kernel), receive bundles over whole buffers, and neither
// (whole buffers, one per completion). Bytes are checked exactly, kept bytes
// must survive the kernel filling the rest of their buffer, and every buffer
// goes back to the ring.
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "net/net_support.hpp"

using namespace ringshard;
using namespace ringshard::net;
using namespace std::chrono_literals;
using test::connect_to;
using test::eventually;
using test::Fd;
using test::opts;
using test::read_exactly;
using test::write_all;

namespace {

struct Path {
  const char* name;
  bool incremental;
  bool bundles;
};
constexpr Path kPaths[] = {{"incremental buffers", true, true},
                           {"bundles of whole buffers", false, true},
                           {"whole buffers, one per completion", false, false}};

ReceiveBuffers ring_of(const Path& path, unsigned count, unsigned size) {
  ReceiveBuffers rb;
  rb.count = count;
  rb.size = size;
  rb.incremental = path.incremental;
  rb.bundles = path.bundles;
  return rb;
}

struct RingState {
  bool incremental = false;
  bool bundles = false;
  unsigned count = 0;
  unsigned size = 0;
  unsigned held = 99;
  unsigned slices = 99;
};

RingState ring_state(Runtime& rt) {
  std::atomic<bool> done{false};
  RingState s;
  rt.post(0, [&] {
    NetShard& net = NetShard::of(*Shard::current());
    s = RingState{net.incremental(), net.bundles(), net.buffer_count(), net.buffer_size(), net.buffers_held(),
                  net.slices_kept()};
    done = true;
  });
  REQUIRE(eventually([&] { return done.load(); }, 5s));
  return s;
}

// The kernel used up no buffer that the shard has not given back, and no
// kept bytes are alive (within 5 s: sends may still be completing).
bool every_buffer_back(Runtime& rt) {
  return eventually([&] {
    const RingState s = ring_state(rt);
    return s.held == 0 && s.slices == 0;
  }, 5s);
}

// Sends the received bytes themselves back (no copy).
struct KeepingEcho : Connection<KeepingEcho> {
  void on_data(std::span<const std::byte>) override { send(keep_received()); }
};

// Echoes whole lines: framed input that receive boundaries split anywhere.
struct LineEcho : Connection<LineEcho> {
  std::size_t on_input(std::span<const std::byte> bytes) override {
    const auto* begin = reinterpret_cast<const char*>(bytes.data());
    const void* nl = std::memchr(begin, '\n', bytes.size());
    if (nl == nullptr) return 0;
    const std::size_t n = static_cast<std::size_t>(static_cast<const char*>(nl) - begin) + 1;
    send(std::string_view(begin, n));
    return n;
  }
};

// Writes `out` in random pieces while reading back what is echoed; true when
// every byte came back in order within the limit.
bool echoes_exactly(int fd, const std::string& out, std::mt19937& rng) {
  std::string back;
  std::size_t written = 0;
  std::uniform_int_distribution<std::size_t> piece(1, 200 << 10);
  const auto end = Clock::now() + 20s;
  char buf[65536];
  while (back.size() < out.size() && Clock::now() < end) {
    pollfd p{fd, static_cast<short>(POLLIN | (written < out.size() ? POLLOUT : 0)), 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    if ((p.revents & POLLOUT) != 0 && written < out.size()) {
      const std::size_t n = std::min(piece(rng), out.size() - written);
      const ssize_t w = ::send(fd, out.data() + written, n, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w > 0) written += static_cast<std::size_t>(w);
    }
    if ((p.revents & POLLIN) != 0) {
      const ssize_t r = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (r <= 0) return false;
      back.append(buf, static_cast<std::size_t>(r));
    }
  }
  return back == out;
}

std::string random_bytes(std::size_t n, std::mt19937& rng) {
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

}  // namespace

TEST_CASE("receive ring: every path echoes messages of 1 byte to 200 KiB exactly and gives every buffer back") {
  for (const Path& path : kPaths) {
    const std::string path_name = path.name;
    CAPTURE(path_name);
    Runtime rt(opts(1));
    rt.start();
    ListenOptions lo;
    lo.receive_buffers = ring_of(path, 1024, 4096);  // 4 MiB: 64 x 64 KiB when incremental
    auto l = listen<KeepingEcho>(rt, lo);
    std::vector<Fd> clients;
    for (int i = 0; i < 4; ++i) clients.push_back(connect_to(l.address()));
    RingState built;
    REQUIRE(eventually([&] { return (built = ring_state(rt)).count != 0; }, 5s));  // built for the first connection
    CHECK(built.incremental == path.incremental);  // this kernel has both features
    CHECK(built.bundles == (path.bundles && !path.incremental));
    CHECK(built.size == (path.incremental ? 65536U : 4096U));
    CHECK(built.count == (path.incremental ? 64U : 1024U));
    std::vector<std::thread> threads;
    std::atomic<int> exact{0};
    for (int i = 0; i < 4; ++i) {
      threads.emplace_back([&, i] {
        std::mt19937 rng(42U + static_cast<unsigned>(i));
        std::string out;
        std::uniform_int_distribution<std::size_t> size(1, 200 << 10);
        for (int m = 0; m < 20; ++m) out += random_bytes(m % 3 == 0 ? size(rng) % 300 + 1 : size(rng), rng);
        if (echoes_exactly(clients[static_cast<std::size_t>(i)].get(), out, rng)) ++exact;
      });
    }
    for (auto& t : threads) t.join();
    CHECK(exact.load() == 4);
    CHECK(every_buffer_back(rt));
  }
}

TEST_CASE("receive ring: lines split anywhere by the buffers are framed exactly on every path") {
  for (const Path& path : kPaths) {
    const std::string path_name = path.name;
    CAPTURE(path_name);
    Runtime rt(opts(1));
    rt.start();
    ListenOptions lo;
    lo.receive_buffers = ring_of(path, 1024, 4096);
    auto l = listen<LineEcho>(rt, lo);
    Fd client = connect_to(l.address());
    std::mt19937 rng(42);
    std::string out;
    std::uniform_int_distribution<std::size_t> length(0, 9000);
    while (out.size() < (3u << 20)) {
      std::string line(length(rng), 'x');
      for (char& c : line) c = static_cast<char>('a' + rng() % 26);
      out += line;
      out += '\n';
    }
    CHECK(echoes_exactly(client.get(), out, rng));
    CHECK(every_buffer_back(rt));
  }
}

namespace {

// The first byte chooses: 'K' keeps everything it receives (until told to
// let go), anything else is echoed from the received buffers.
struct KeepOrEcho : Connection<KeepOrEcho> {
  std::vector<RecvBuffer>* kept;
  bool keeper = false;
  bool decided = false;
  explicit KeepOrEcho(std::vector<RecvBuffer>* k) : kept(k) {}
  void on_data(std::span<const std::byte> bytes) override {
    if (!decided) {
      decided = true;
      keeper = static_cast<char>(bytes[0]) == 'K';
    }
    if (keeper) kept->push_back(keep_received());
    else send(keep_received());
  }
};

}  // namespace

TEST_CASE("receive ring: kept bytes stay as received while the kernel fills and reuses the rest of the ring") {
  for (const Path& path : kPaths) {
    const std::string path_name = path.name;
    CAPTURE(path_name);
    Runtime rt(opts(1));
    rt.start();
    std::vector<RecvBuffer> kept;  // shard 0's
    ListenOptions lo;
    lo.receive_buffers = ring_of(path, 8, 4096);  // 32 KiB: the ring wraps many times below
    auto l = listen<KeepOrEcho>(rt, lo, &kept);
    Fd keeper = connect_to(l.address());
    const std::string keep_this = "K" + std::string(99, 'k');
    REQUIRE(write_all(keeper.get(), keep_this));
    std::atomic<std::size_t> kept_bytes{0};
    const auto count_kept = [&] {
      std::atomic<bool> done{false};
      rt.post(0, [&] {
        std::size_t n = 0;
        for (const RecvBuffer& b : kept) n += b.size();
        kept_bytes = n;
        done = true;
      });
      REQUIRE(eventually([&] { return done.load(); }, 5s));
      return kept_bytes.load();
    };
    REQUIRE(eventually([&] { return count_kept() == keep_this.size(); }, 5s));
    // Another connection streams 2 MiB through the rest of the ring (the
    // shard falls back to plain receives whenever it runs dry).
    Fd streamer = connect_to(l.address());
    std::mt19937 rng(42);
    CHECK(echoes_exactly(streamer.get(), "E" + random_bytes(2 << 20, rng), rng));
    std::atomic<bool> intact{false};
    std::atomic<bool> done{false};
    rt.post(0, [&] {
      std::string got;
      for (const RecvBuffer& b : kept) got.append(reinterpret_cast<const char*>(b.bytes().data()), b.size());
      intact = got == keep_this;
      kept.clear();  // back to the ring
      done = true;
    });
    REQUIRE(eventually([&] { return done.load(); }, 5s));
    CHECK(intact.load());
    CHECK(every_buffer_back(rt));
  }
}

namespace {

struct InPlace {
  std::atomic<unsigned> large{0};     // receives of 32 KiB or more
  std::atomic<unsigned> in_place{0};  // ... kept where they were received
};

// Echoes the received bytes themselves, noting whether large receives were
// kept where the kernel put them.
struct InPlaceEcho : Connection<InPlaceEcho> {
  InPlace* seen;
  explicit InPlaceEcho(InPlace* s) : seen(s) {}
  void on_data(std::span<const std::byte> bytes) override {
    RecvBuffer kept = keep_received();
    if (bytes.size() >= (32u << 10)) {
      ++seen->large;
      if (kept.bytes().data() == bytes.data()) ++seen->in_place;
    }
    send(std::move(kept));
  }
};

}  // namespace

// A ring of eight 4 KiB buffers, one per completion, runs dry under a 2 MiB
// stream: receives fall back to the socket's own 64 KiB buffer, stay there
// while the ring is low, and a large one is kept in that buffer, not copied
// (every receive of 32 KiB or more came from a fallback here).
TEST_CASE("receive ring: receives that missed the ring are large, and kept in their own buffer without a copy") {
  Runtime rt(opts(1));
  rt.start();
  InPlace seen;
  ListenOptions lo;
  lo.receive_buffers = ring_of(kPaths[2], 8, 4096);
  auto l = listen<InPlaceEcho>(rt, lo, &seen);
  Fd client = connect_to(l.address());
  std::mt19937 rng(7);
  CHECK(echoes_exactly(client.get(), random_bytes(2 << 20, rng), rng));
  MESSAGE("receives of 32 KiB or more: " << seen.large.load() << ", kept in place: " << seen.in_place.load());
  CHECK(seen.large.load() > 0);
  CHECK(seen.in_place.load() == seen.large.load());
  CHECK(every_buffer_back(rt));
}

namespace {

// Files in the kernel's fixed file table of `ring_fd` (one `  SLOT: FILE`
// line each in the fdinfo of the ring's descriptor, after `UserFiles:`).
int fixed_files_in_kernel(int ring_fd) {
  std::FILE* f = std::fopen(("/proc/self/fdinfo/" + std::to_string(ring_fd)).c_str(), "r");
  if (f == nullptr) return -1;
  int count = 0;
  bool in_files = false;
  char line[512];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    const std::string_view l(line);
    if (l.starts_with("UserFiles:")) {
      in_files = true;
    } else if (in_files) {
      const std::size_t first = l.find_first_not_of(' ');
      if (first == std::string_view::npos || first == 0 || l.find(':') == std::string_view::npos ||
          !std::isdigit(static_cast<unsigned char>(l[first]))) {
        break;  // the next section
      }
      ++count;
    }
  }
  std::fclose(f);
  return count;
}

struct DirectState {
  bool direct = false;
  unsigned slots = 0;
  unsigned in_use = 0;
  std::uint64_t fallbacks = 0;
  int in_kernel = -2;
};

DirectState direct_state(Runtime& rt) {
  std::atomic<bool> done{false};
  DirectState s;
  rt.post(0, [&] {
    NetShard& net = NetShard::of(*Shard::current());
    s = DirectState{net.direct(), net.fixed_slots(), net.fixed_in_use(), net.direct_fallbacks.get(),
                    fixed_files_in_kernel(Shard::current()->reactor().ring().fd())};
    done = true;
  });
  REQUIRE(eventually([&] { return done.load(); }, 5s));
  return s;
}

}  // namespace

TEST_CASE("direct descriptors: connections take slots of the ring's file table, a full table falls back, slots are reused") {
  Runtime rt(opts(1));
  rt.start();
  ListenOptions lo;
  lo.fixed_files = 3;
  auto l = listen<KeepingEcho>(rt, lo);
  std::vector<Fd> clients;
  const auto all_echo = [&] {
    for (std::size_t i = 0; i < clients.size(); ++i) {
      const std::string msg = "hello " + std::to_string(i);
      if (!write_all(clients[i].get(), msg) || read_exactly(clients[i].get(), msg.size()) != msg) return false;
    }
    return true;
  };
  for (int i = 0; i < 5; ++i) clients.push_back(connect_to(l.address()));
  CHECK(all_echo());  // 3 through slots, 2 through plain descriptors
  DirectState s = direct_state(rt);
  CHECK(s.direct);
  CHECK(s.slots == 3);
  CHECK(s.in_use == 3);
  CHECK(s.in_kernel == 3);
  CHECK(s.fallbacks == 2);
  clients.clear();
  REQUIRE(eventually([&] { return direct_state(rt).in_kernel == 0; }, 5s));
  CHECK(direct_state(rt).in_use == 0);
  for (int i = 0; i < 3; ++i) clients.push_back(connect_to(l.address()));  // the freed slots again
  CHECK(all_echo());
  s = direct_state(rt);
  CHECK(s.in_use == 3);
  CHECK(s.in_kernel == 3);
  CHECK(s.fallbacks == 2);
}

TEST_CASE("direct descriptors: 0 slots means plain descriptors only") {
  Runtime rt(opts(1));
  rt.start();
  ListenOptions lo;
  lo.fixed_files = 0;
  auto l = listen<KeepingEcho>(rt, lo);
  Fd client = connect_to(l.address());
  REQUIRE(write_all(client.get(), "plain"));
  CHECK(read_exactly(client.get(), 5) == "plain");
  const DirectState s = direct_state(rt);
  CHECK_FALSE(s.direct);
  CHECK(s.in_use == 0);
  CHECK(s.fallbacks == 0);
}

namespace {

// Pauses reading at its first bytes for five ticks (100 ms), meanwhile the
// client sends everything and shuts down its side: the bytes received after
// the pause began come after it, in order, and the peer's end after them.
// on_open keeps the shard busy for 50 ms, so that a small message and the
// peer's end are in the socket when the first receive runs: they come in the
// same batch of completions as the bytes that pause.
struct PausingCounter : Connection<PausingCounter> {
  std::atomic<std::size_t>* got;
  std::atomic<std::size_t>* at_end;
  std::atomic<bool>* in_order;
  std::size_t count = 0;
  int ticks = 0;
  bool paused = false;
  bool resumed = false;
  PausingCounter(std::atomic<std::size_t>* g, std::atomic<std::size_t>* e, std::atomic<bool>* o)
      : got(g), at_end(e), in_order(o) {}
  void on_open() override {
    std::this_thread::sleep_for(50ms);
    set_tick(20ms);
  }
  void on_data(std::span<const std::byte> bytes) override {
    for (const std::byte b : bytes) {
      if (static_cast<unsigned char>(b) != static_cast<unsigned char>(count % 251)) in_order->store(false);
      ++count;
    }
    got->store(count);
    if (!resumed && !paused) {
      paused = true;
      pause_reading();
    }
  }
  void on_tick(Clock::time_point) override {
    if (paused && ++ticks == 5) {
      paused = false;
      resumed = true;
      resume_reading();
    }
  }
  void on_peer_shutdown() override {
    at_end->store(count);
    close();
  }
};

}  // namespace

TEST_CASE("receive ring: bytes received after a pause began, and the peer's end behind them, come after it in order") {
  for (const auto& run : {std::pair{kPaths[0], std::size_t{100} << 10}, std::pair{kPaths[0], std::size_t{4} << 20},
                          std::pair{kPaths[1], std::size_t{100} << 10}, std::pair{kPaths[2], std::size_t{100} << 10}}) {
    const Path& path = run.first;
    const std::size_t size = run.second;  // not a structured binding: clang 14 cannot capture those
    const std::string path_name = path.name;
    CAPTURE(path_name);
    CAPTURE(size);
    Runtime rt(opts(1));
    rt.start();
    std::atomic<std::size_t> got{0};
    std::atomic<std::size_t> at_end{0};
    std::atomic<bool> in_order{true};
    ListenOptions lo;
    lo.receive_buffers = ring_of(path, 4096, 4096);
    auto l = listen<PausingCounter>(rt, lo, &got, &at_end, &in_order);
    Fd client = connect_to(l.address());
    std::string out(size, '\0');
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<char>(i % 251);
    REQUIRE(write_all(client.get(), out));
    REQUIRE(::shutdown(client.get(), SHUT_WR) == 0);
    CHECK(test::sees_close(client.get(), 10s));
    CHECK(got.load() == out.size());
    CHECK(at_end.load() == out.size());  // the end after every byte
    CHECK(in_order.load());
  }
}
