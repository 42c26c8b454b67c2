// What a protocol needs from a connection, against real sockets: framed
// input across receive boundaries, an input limit, pausing, ordered replies
// filled after asks to another shard, half-close that keeps what is owed,
// handlers that throw, and sends that do not copy.
#include <fcntl.h>
#include <sys/socket.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "net/net_support.hpp"
#include "ringshard/net/reply_queue.hpp"

using namespace ringshard;
using namespace ringshard::net;
using namespace std::chrono_literals;
using test::connect_to;
using test::eventually;
using test::Fd;
using test::opts;
using test::read_exactly;
using test::write_all;
using test::sees_close;

namespace {

std::string_view text(std::span<const std::byte> b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }


// ---- a line protocol: "get K" answered by the store on shard 1, "echo X"
// answered at once, "boom" throws, "slow K" is answered after a timer ------

struct Get {
  using Response = std::string;
  std::string key;
};

struct Store : actors::Actor<Store> {
  std::string on_message(const Get& g) { return "value-of-" + g.key; }
};

struct Lines : Connection<Lines> {
  actors::ActorRef<Store> store;
  ReplyQueue replies;
  std::atomic<int>* closes_with_error;
  Lines(actors::ActorRef<Store> s, std::atomic<int>* errors, std::size_t max_open)
      : store(s), replies(*this, max_open), closes_with_error(errors) {}

  std::size_t on_input(std::span<const std::byte> in) override {
    const std::string_view all = text(in);
    const std::size_t eol = all.find('\n');
    if (eol == std::string_view::npos) return 0;  // a partial line: wait
    const std::string_view line = all.substr(0, eol);
    if (line.starts_with("get ")) {
      ask(store, Get{std::string(line.substr(4))}, [slot = replies.reserve()](actors::AskResult<std::string> r) mutable {
        slot(r.ok() ? *r + "\n" : std::string("error\n"));
      });
    } else if (line.starts_with("echo ")) {
      replies.reserve()(std::string(line.substr(5)) + "\n");
    } else if (line == "boom") {
      throw std::runtime_error("boom requested");
    } else {
      replies.reserve()("unknown\n");
    }
    return eol + 1;
  }
  void on_close(CloseReason r) override {
    if (r == CloseReason::error) closes_with_error->fetch_add(1);
  }
};

struct LineServer {
  Runtime rt{opts(2)};
  std::atomic<int> errors{0};
  ListenerHandle listener;
  explicit LineServer(std::size_t max_open = 256, ListenOptions o = {}) {
    rt.start();
    auto store = actors::spawn<Store>(rt, 1);
    o.policy = Policy::round_robin;
    listener = listen<Lines>(rt, o, store, &errors, max_open);
  }
};

std::string requests(int n, int from = 0) {
  std::string s;
  for (int i = from; i < from + n; ++i) s += (i % 3 == 0 ? "echo e" : "get k") + std::to_string(i) + "\n";
  return s;
}
std::string answers(int n, int from = 0) {
  std::string s;
  for (int i = from; i < from + n; ++i) s += (i % 3 == 0 ? "e" : "value-of-k") + std::to_string(i) + "\n";
  return s;
}

}  // namespace

TEST_CASE("pipelined lines are answered in order, some after asks to another shard, on 2 shards") {
  LineServer server;
  for (int c = 0; c < 4; ++c) {  // lands on both shards
    Fd s = connect_to(server.listener.address());
    const std::string req = requests(500);
    REQUIRE(write_all(s.get(), req));
    const std::string want = answers(500);
    CHECK(read_exactly(s.get(), want.size()) == want);
  }
}

TEST_CASE("lines split at every byte boundary are framed whole") {
  LineServer server;
  Fd s = connect_to(server.listener.address());
  const std::string req = requests(30);
  for (char ch : req) {
    REQUIRE(::write(s.get(), &ch, 1) == 1);
    if (ch == '\n') std::this_thread::sleep_for(1ms);  // separate receives
  }
  const std::string want = answers(30);
  CHECK(read_exactly(s.get(), want.size()) == want);
}

TEST_CASE("a line over the input limit closes the connection with input_too_large, and others are served") {
  ListenOptions o;
  o.connection.max_input_bytes = 1024;
  LineServer server(256, o);
  Fd big = connect_to(server.listener.address());
  REQUIRE(write_all(big.get(), std::string(4096, 'x')));
  CHECK(sees_close(big.get()));
  Fd ok = connect_to(server.listener.address());
  REQUIRE(write_all(ok.get(), "echo fine\n"));
  CHECK(read_exactly(ok.get(), 5) == "fine\n");
}

TEST_CASE("a handler that throws aborts its connection with CloseReason::error and the shard serves on") {
  LineServer server;
  Fd bad = connect_to(server.listener.address());
  REQUIRE(write_all(bad.get(), "echo before\n"));
  CHECK(read_exactly(bad.get(), 7) == "before\n");
  REQUIRE(write_all(bad.get(), "boom\necho after\n"));
  CHECK(sees_close(bad.get()));
  REQUIRE(eventually([&] { return server.errors.load() == 1; }, 10s));
  for (int i = 0; i < 4; ++i) {
    Fd ok = connect_to(server.listener.address());
    REQUIRE(write_all(ok.get(), "get x\n"));
    CHECK(read_exactly(ok.get(), 11) == "value-of-x\n");
  }
}

TEST_CASE("half-close: requests sent before the client shut down its side are all answered") {
  LineServer server;
  for (int c = 0; c < 4; ++c) {
    Fd s = connect_to(server.listener.address());
    REQUIRE(write_all(s.get(), requests(200)));
    ::shutdown(s.get(), SHUT_WR);
    const std::string want = answers(200);
    CHECK(read_exactly(s.get(), want.size()) == want);
    CHECK(sees_close(s.get()));
  }
}

TEST_CASE("over max_open reply slots reading pauses, so a client that never reads is bounded") {
  LineServer server(8);
  Fd hog = connect_to(server.listener.address());
  ::fcntl(hog.get(), F_SETFL, O_NONBLOCK);
  const std::string req = requests(1000);
  std::size_t written = 0;
  const auto end = Clock::now() + 3s;
  while (written < (64u << 20) && Clock::now() < end) {  // up to 64 MiB of requests, never reading
    const ssize_t w = ::send(hog.get(), req.data(), req.size(), MSG_NOSIGNAL);
    if (w > 0) written += static_cast<std::size_t>(w);
    else std::this_thread::sleep_for(1ms);
  }
  MESSAGE("request bytes taken before the server stopped reading: " << written);
  CHECK(written < (64u << 20));
  // Everyone else is served meanwhile.
  Fd other = connect_to(server.listener.address());
  REQUIRE(write_all(other.get(), requests(50)));
  const std::string want = answers(50);
  CHECK(read_exactly(other.get(), want.size()) == want);
  // Resets in the middle of pipelines leave the server serving.
  for (int i = 0; i < 20; ++i) {
    Fd r = connect_to(server.listener.address());
    REQUIRE(write_all(r.get(), requests(100)));
    linger lg{1, 0};
    ::setsockopt(r.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  }
  Fd last = connect_to(server.listener.address());
  REQUIRE(write_all(last.get(), requests(10)));
  CHECK(read_exactly(last.get(), answers(10).size()) == answers(10));
}

namespace {

// Replies out of order: the second slot is filled first.
struct Swapped : Connection<Swapped> {
  ReplyQueue replies{*this};
  void on_data(std::span<const std::byte>) override {
    ReplySlot first = replies.reserve();
    ReplySlot second = replies.reserve();
    ReplySlot third = replies.reserve();
    second("2");
    third("3");
    first("1");
  }
};

// A slot dropped unfilled: the replies before it go out, then the connection closes.
struct Dropping : Connection<Dropping> {
  ReplyQueue replies{*this};
  void on_data(std::span<const std::byte>) override {
    replies.reserve()("kept;");
    { ReplySlot dropped = replies.reserve(); }
    replies.reserve()("never");
  }
};

}  // namespace

TEST_CASE("reply slots leave in reservation order, and a dropped slot closes after the replies before it") {
  Runtime rt(opts(1));
  rt.start();
  auto swapped = listen<Swapped>(rt, ListenOptions{});
  Fd s = connect_to(swapped.address());
  REQUIRE(write_all(s.get(), "x"));
  CHECK(read_exactly(s.get(), 3) == "123");

  auto dropping = listen<Dropping>(rt, ListenOptions{});
  Fd d = connect_to(dropping.address());
  REQUIRE(write_all(d.get(), "x"));
  CHECK(read_exactly(d.get(), 5) == "kept;");
  CHECK(sees_close(d.get()));
}

namespace {

struct PauseProbe {
  std::atomic<int> seen{0};
};

// Pauses after every line; a message resumes it.
struct Resume {};
struct Stepper : Connection<Stepper> {
  PauseProbe* probe;
  explicit Stepper(PauseProbe* p) : probe(p) {}
  std::size_t on_input(std::span<const std::byte> in) override {
    const std::size_t eol = text(in).find('\n');
    if (eol == std::string_view::npos) return 0;
    probe->seen.fetch_add(1);
    send(text(in).substr(0, eol + 1));
    pause_reading();
    after(20ms, Resume{});
    return eol + 1;
  }
  void on_message(Resume) { resume_reading(); }
};

}  // namespace

TEST_CASE("pause_reading stops input until resume_reading, and bytes that arrived meanwhile are kept in order") {
  Runtime rt(opts(1));
  rt.start();
  PauseProbe probe;
  auto l = listen<Stepper>(rt, ListenOptions{}, &probe);
  Fd s = connect_to(l.address());
  std::string req;
  for (int i = 0; i < 10; ++i) req += "line" + std::to_string(i) + "\n";
  REQUIRE(write_all(s.get(), req));  // all in one segment
  std::this_thread::sleep_for(5ms);
  CHECK(probe.seen.load() <= 2);  // paused after the first line
  CHECK(read_exactly(s.get(), req.size(), 5000ms) == req);
  CHECK(probe.seen.load() == 10);
}

TEST_CASE("a half-close while reading is paused with input kept answers all of it after the resume") {
  Runtime rt(opts(1));
  rt.start();
  PauseProbe probe;
  auto l = listen<Stepper>(rt, ListenOptions{}, &probe);
  for (int c = 0; c < 3; ++c) {
    Fd s = connect_to(l.address());
    std::string req;
    for (int i = 0; i < 10; ++i) req += "line" + std::to_string(i) + "\n";
    REQUIRE(write_all(s.get(), req));  // one segment, then the FIN right behind it
    ::shutdown(s.get(), SHUT_WR);
    CHECK(read_exactly(s.get(), req.size(), 5000ms) == req);
    CHECK(sees_close(s.get()));
  }
}

namespace {

// Echoes each chunk as the received buffer itself, pausing reading for a
// moment after each: bytes that arrive meanwhile are kept, and come back
// through on_data once reading resumes.
struct PausingEcho : Connection<PausingEcho> {
  std::atomic<int>* empty_keeps;
  explicit PausingEcho(std::atomic<int>* e) : empty_keeps(e) {}
  void on_data(std::span<const std::byte> bytes) override {
    RecvBuffer kept = keep_received();
    if (kept.size() != bytes.size()) empty_keeps->fetch_add(1);
    send(std::move(kept));
    pause_reading();
    after(1ms, Resume{});
  }
  void on_message(Resume) { resume_reading(); }
};

}  // namespace

TEST_CASE("keep_received() works on input kept while reading was paused: an echo that pauses loses no byte") {
  Runtime rt(opts(1));
  rt.start();
  std::atomic<int> empty_keeps{0};
  auto l = listen<PausingEcho>(rt, ListenOptions{}, &empty_keeps);
  Fd s = connect_to(l.address());
  std::string payload(1 << 20, '\0');
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>('a' + (i * 7 + i / 4096) % 26);
  bool wrote = false;
  std::thread writer([&] { wrote = write_all(s.get(), payload); });
  const std::string back = read_exactly(s.get(), payload.size(), 20000ms);
  writer.join();
  CHECK(wrote);
  CHECK(back.size() == payload.size());
  CHECK(back == payload);
  CHECK(empty_keeps.load() == 0);
}

namespace {

// Pauses reading at the first line and waits for an answer from elsewhere
// that never comes: only the peer can end it.
struct Waiter : Connection<Waiter> {
  std::atomic<int>* resets;
  std::atomic<int>* closes;
  Waiter(std::atomic<int>* r, std::atomic<int>* c) : resets(r), closes(c) {}
  std::size_t on_input(std::span<const std::byte> in) override {
    const std::size_t eol = text(in).find('\n');
    if (eol == std::string_view::npos) return 0;
    send(std::string_view("waiting\n"));
    pause_reading();
    return eol + 1;
  }
  void on_peer_shutdown() override {}  // a half-close: the answer would still go out
  void on_close(CloseReason r) override {
    if (r == CloseReason::peer_reset) resets->fetch_add(1);
    closes->fetch_add(1);
  }
};

}  // namespace

TEST_CASE("a peer that resets while reading is paused closes the connection, a half-close does not") {
  Runtime rt(opts(1));
  rt.start();
  std::atomic<int> resets{0};
  std::atomic<int> closes{0};
  auto l = listen<Waiter>(rt, ListenOptions{}, &resets, &closes);
  for (int c = 0; c < 3; ++c) {
    Fd s = connect_to(l.address());
    REQUIRE(write_all(s.get(), "question\nmore pipelined behind it\n"));
    CHECK(read_exactly(s.get(), 8) == "waiting\n");
    if (c != 1) {                   // a reset after a FIN, and (c == 1) one without
      ::shutdown(s.get(), SHUT_WR);  // a FIN: the connection waits on
      std::this_thread::sleep_for(50ms);
      CHECK(closes.load() == c);
    }
    const linger reset{1, 0};
    REQUIRE(::setsockopt(s.get(), SOL_SOCKET, SO_LINGER, &reset, sizeof reset) == 0);
    s = Fd{};  // an RST
    CHECK(eventually([&] { return resets.load() == c + 1; }, 5s));
    CHECK(closes.load() == c + 1);
  }
}

namespace {

// Every form of send without a copy, interleaved with copies.
struct Forms : Connection<Forms> {
  SharedBuffer shared = SharedBuffer::copy_of(std::string_view("<shared>"));
  std::atomic<int>* done_ok;
  static inline const char kStatic[] = "<static>";
  explicit Forms(std::atomic<int>* d) : done_ok(d) {}
  void on_data(std::span<const std::byte> bytes) override {
    send(shared);
    send(std::as_bytes(std::span(kStatic, 8)), [d = done_ok](bool sent) {
      if (sent) d->fetch_add(1);
    });
    send(std::string_view("["));
    send(keep_received());  // the received bytes themselves
    send(std::string("]"));
    (void)bytes;
  }
};

}  // namespace

TEST_CASE("shared, caller-owned and received buffers are sent without copies, in order with copies") {
  Runtime rt(opts(1));
  rt.start();
  std::atomic<int> done_ok{0};
  auto l = listen<Forms>(rt, ListenOptions{}, &done_ok);
  Fd s = connect_to(l.address());
  for (int i = 0; i < 100; ++i) {
    const std::string msg = "msg" + std::to_string(i);
    REQUIRE(write_all(s.get(), msg));
    const std::string want = "<shared><static>[" + msg + "]";
    REQUIRE(read_exactly(s.get(), want.size()) == want);
  }
  REQUIRE(eventually([&] { return done_ok.load() == 100; }, 5s));
  // All kept receive buffers went back to the ring.
  std::atomic<unsigned> held{99};
  rt.post(0, [&] { held = NetShard::of(*Shard::current()).buffers_held(); });
  REQUIRE(eventually([&] { return held.load() == 0; }, 5s));
}

TEST_CASE("a SharedBuffer is freed after the last send on any shard") {
  Runtime rt(opts(2));
  rt.start();
  struct Holder : Connection<Holder> {
    void on_data(std::span<const std::byte>) override {}
  };
  struct Sender : Connection<Sender> {
    SharedBuffer payload;
    explicit Sender(SharedBuffer p) : payload(std::move(p)) {}
    void on_open() override {
      send(payload);
      payload = SharedBuffer();
      close();
    }
    void on_data(std::span<const std::byte>) override {}
  };
  SharedBuffer payload(1 << 20);
  std::memset(payload.writable().data(), 'p', payload.size());
  auto l = listen<Sender>(rt, ListenOptions{}, payload);
  for (int i = 0; i < 4; ++i) {
    Fd s = connect_to(l.address());
    CHECK(read_exactly(s.get(), 1 << 20) == std::string(1 << 20, 'p'));
    CHECK(sees_close(s.get()));
  }
  l.close();
  // The listener's factory holds one copy, this test another.
  REQUIRE(eventually([&] { return payload.use_count() <= 2; }, 5s));
}

namespace {

// Answers each ask 30 ms later, from a timer.
struct SlowGet {
  using Response = std::string;
  std::string key;
};
struct Answer {};
struct SlowStore : actors::Actor<SlowStore> {
  std::vector<actors::Reply<std::string>> waiting;
  void on_message(const SlowGet& g, actors::Reply<std::string> r) {
    (void)g;
    waiting.push_back(std::move(r));
    after(30ms, Answer{});
  }
  void on_message(Answer) {
    for (auto& r : waiting) r("late");
    waiting.clear();
  }
};

// Sends straight from its ask callbacks, with no reply slot: only the count
// of pending asks tells the half-close what is still owed.
struct Noter : Connection<Noter> {
  actors::ActorRef<SlowStore> store;
  explicit Noter(actors::ActorRef<SlowStore> s) : store(s) {}
  std::size_t on_input(std::span<const std::byte> in) override {
    const std::size_t eol = text(in).find('\n');
    if (eol == std::string_view::npos) return 0;
    ask(store, SlowGet{std::string(text(in).substr(0, eol))}, [this](actors::AskResult<std::string> r) {
      // A second, chained ask keeps the connection owed after this callback.
      if (r.ok() && r.value() == "late") {
        send(std::string_view("first;"));
        ask(store, SlowGet{"again"}, [this](actors::AskResult<std::string> again) {
          send(again.ok() ? std::string("second\n") : std::string("failed\n"));
        });
      }
    });
    return eol + 1;
  }
};

}  // namespace

TEST_CASE("half-close waits for pending asks, also ones answered without a reply slot") {
  Runtime rt(opts(2));
  rt.start();
  auto store = actors::spawn<SlowStore>(rt, 1);
  auto l = listen<Noter>(rt, ListenOptions{}, store);
  for (int c = 0; c < 2; ++c) {
    Fd s = connect_to(l.address());
    REQUIRE(write_all(s.get(), "k\n"));
    ::shutdown(s.get(), SHUT_WR);
    CHECK(read_exactly(s.get(), 13) == "first;second\n");
    CHECK(sees_close(s.get()));
  }
}
