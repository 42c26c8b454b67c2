// net::Stream against real sockets: framed reads across receive boundaries,
// the end of the stream as a value, half-closes both ways, Go's deadlines
// during a read and during a write, a peer reset during a write, handlers
// that throw, dial, cancellation at each suspension point, a runtime
// stopped with coroutines suspended everywhere, and pooled frames.
#include <fcntl.h>
#include <sys/socket.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "net/net_support.hpp"
#include "ringshard/net/stream.hpp"

using namespace ringshard;
using namespace ringshard::net;
using namespace std::chrono_literals;
using test::connect_to;
using test::eventually;
using test::Fd;
using test::on_shard;
using test::opts;
using test::read_exactly;
using test::write_all;
using test::sees_close;

namespace {


void reset(Fd& fd) {
  const linger l{1, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
  fd = Fd{};
}

std::string str(std::error_code e) { return e ? e.message() : "ok"; }

/// What the coroutines under test report to the test thread.
struct Probe {
  std::atomic<int> stage{0};
  std::atomic<int> destroyed{0};
  std::atomic<int> resumed_after_stop{0};
  std::mutex m;
  std::vector<std::string> events;
  void add(std::string e) {
    std::lock_guard lock(m);
    events.push_back(std::move(e));
  }
  std::vector<std::string> seen() {
    std::lock_guard lock(m);
    return events;
  }
};

struct Witness {
  Probe* p;
  ~Witness() { p->destroyed.fetch_add(1); }
};

struct Server {
  Runtime rt;
  ListenerHandle listener;
  Server(StreamHandler h, unsigned shards = 1, Policy policy = Policy::round_robin) : rt(opts(shards)) {
    rt.start();
    ListenOptions o;
    o.policy = policy;
    listener = serve(rt, o, std::move(h));
  }
};


// A framed protocol: a 4-digit length, that many bytes, a CRLF line of at
// most 16 bytes, then 3 bytes read with read_some; answered with the parts.
Task<> framed(Stream s) {
  for (;;) {
    auto head = co_await s.read_exactly(4);
    if (!head) co_return;
    const std::size_t n = std::stoul(std::string(head.text()));
    auto body = co_await s.read_exactly(n);
    if (!body) co_return;
    std::string reply = "[" + std::string(body.text()) + "]";
    auto line = co_await s.read_until("\r\n", 16);
    if (line.error) {
      co_await s.write("error: " + line.error.message() + "\n");
      co_return;
    }
    reply += "[" + std::string(line.text()) + "]";
    std::byte three[3];
    std::size_t got = 0;
    while (got < 3) {
      auto r = co_await s.read_some(std::span(three).subspan(got));
      if (!r) co_return;
      got += r.size;
    }
    reply.append(reinterpret_cast<const char*>(three), 3);
    reply += "\n";
    if (co_await s.write(std::move(reply))) co_return;
  }
}

// Heads ended by a blank line: a 4-byte delimiter.
Task<> heads(Stream s) {
  for (;;) {
    auto head = co_await s.read_until("\r\n\r\n", 24);
    if (head.error == StreamErrc::too_long) {
      co_await s.write("too long\n");
      co_return;
    }
    if (!head) co_return;
    if (co_await s.write("[" + std::string(head.text()) + "]")) co_return;
  }
}

}  // namespace

TEST_CASE("stream: read_until finds a delimiter whose false starts and bytes are spread over chunks") {
  Server srv(heads);
  Fd c = connect_to(srv.listener.address());
  // The pieces arrive as chunks of their own: "\r\n\r" then "X" is a false
  // start; the delimiter comes over three chunks.
  for (const char* piece : {"GET\r\n\r", "X", "\r\n", "\r", "\nA\r\n", "\r\n"}) {
    REQUIRE(write_all(c.get(), piece));
    std::this_thread::sleep_for(2ms);
  }
  const std::string want = "[GET\r\n\rX\r\n\r\n][A\r\n\r\n]";
  CHECK(read_exactly(c.get(), want.size()) == want);
  // 24 bytes before the delimiter is the most: 25 is too long, whatever the chunks.
  REQUIRE(write_all(c.get(), std::string(20, 'a')));
  std::this_thread::sleep_for(2ms);
  REQUIRE(write_all(c.get(), std::string(4, 'a') + "\r\n\r"));
  std::this_thread::sleep_for(2ms);
  REQUIRE(write_all(c.get(), "\n"));
  const std::string ok = "[" + std::string(24, 'a') + "\r\n\r\n]";
  CHECK(read_exactly(c.get(), ok.size()) == ok);
  REQUIRE(write_all(c.get(), std::string(25, 'b') + "\r\n\r\n"));
  CHECK(read_exactly(c.get(), 9) == "too long\n");
}

TEST_CASE("stream: read_exactly, read_until and read_some frame input sent in one piece or a byte at a time") {
  Server srv(framed);
  const std::string msg = "0005hello" "a line\r\n" "xyz" "0002ok" "\r\n" "123";
  const std::string want = "[hello][a line\r\n]xyz\n[ok][\r\n]123\n";
  {
    Fd c = connect_to(srv.listener.address());
    REQUIRE(write_all(c.get(), msg));
    CHECK(read_exactly(c.get(), want.size()) == want);
  }
  {
    Fd c = connect_to(srv.listener.address());
    for (char ch : msg) {
      REQUIRE(write_all(c.get(), std::string_view(&ch, 1)));
      std::this_thread::sleep_for(200us);
    }
    CHECK(read_exactly(c.get(), want.size()) == want);
  }
  {  // a body larger than what a stream holds unread before pausing
    Fd c = connect_to(srv.listener.address());
    const std::string big(9000, 'b');
    REQUIRE(write_all(c.get(), "9000" + big + "x\r\nabc"));
    const std::string want_big = "[" + big + "][x\r\n]abc\n";
    CHECK((read_exactly(c.get(), want_big.size()) == want_big));
  }
  {  // no delimiter within 16 bytes
    Fd c = connect_to(srv.listener.address());
    REQUIRE(write_all(c.get(), "0001a" + std::string(40, 'l')));
    const std::string err = "error: " + make_error_code(StreamErrc::too_long).message() + "\n";
    CHECK(read_exactly(c.get(), err.size()) == err);
    CHECK(sees_close(c.get()));
  }
}

namespace {

Task<> exact_then_report(Stream s, Probe* p) {
  auto r = co_await s.read_exactly(10);
  p->add(std::string(r.text()) + "|" + str(r.error));
  auto again = co_await s.read();
  p->add(std::string(again.eof() ? "eof" : "more") + "|" + str(again.error));
  co_await s.write("bye\n");  // the client only shut down its sending side
}

// Counts lines until the end of the stream, then answers the count.
Task<> count_lines(Stream s) {
  int lines = 0;
  for (;;) {
    auto r = co_await s.read_until("\n", 100);
    if (r.eof()) break;
    if (r.error) co_return;
    ++lines;
  }
  co_await s.write(std::to_string(lines) + " lines\n");
}

}  // namespace

TEST_CASE("stream: the end of the stream is a value, also inside read_exactly, and writing goes on after it") {
  Probe p;
  Server srv([&p](Stream s) { return exact_then_report(std::move(s), &p); });
  Fd c = connect_to(srv.listener.address());
  REQUIRE(write_all(c.get(), "short"));
  ::shutdown(c.get(), SHUT_WR);
  CHECK(read_exactly(c.get(), 4) == "bye\n");
  CHECK(sees_close(c.get()));
  const auto seen = p.seen();
  REQUIRE(seen.size() == 2);
  CHECK(seen[0] == "short|" + make_error_code(StreamErrc::unexpected_eof).message());
  CHECK(seen[1] == "eof|ok");

  Server lines(count_lines);
  Fd d = connect_to(lines.listener.address());
  REQUIRE(write_all(d.get(), "a\nb\nc\n"));
  ::shutdown(d.get(), SHUT_WR);
  CHECK(read_exactly(d.get(), 8) == "3 lines\n");
  CHECK(sees_close(d.get()));
}

namespace {

Task<> half_closer(Stream s) {
  co_await s.write("first\n");
  s.shutdown_write();
  auto r = co_await s.read();  // reading goes on
  if (r) co_await s.write(std::string(r.text()));  // dropped: the side is shut
  auto end = co_await s.read();
  (void)end;
}

}  // namespace

TEST_CASE("stream: shutdown_write sends the end after what was written, and reading goes on") {
  Server srv(half_closer);
  Fd c = connect_to(srv.listener.address());
  CHECK(read_exactly(c.get(), 6) == "first\n");
  CHECK(sees_close(c.get()));  // EOF on our reading side
  REQUIRE(write_all(c.get(), "still heard"));
  ::shutdown(c.get(), SHUT_WR);
  char b;
  CHECK(::recv(c.get(), &b, 1, 0) == 0);
}

namespace {

Task<> read_deadlines(Stream s, Probe* p) {
  s.set_read_deadline(Clock::now() + 50ms);
  const auto t0 = Clock::now();
  auto r = co_await s.read();
  const auto waited = Clock::now() - t0;
  p->add("pending:" + str(r.error) + (waited >= 50ms ? ":late enough" : ":early"));
  auto r2 = co_await s.read();  // started after the deadline: fails at once
  p->add("after:" + str(r2.error));
  s.set_read_deadline(Clock::time_point::max());
  co_await s.write("go\n");
  auto r3 = co_await s.read();
  p->add("rearmed:" + std::string(r3.text()));
}

Task<> write_until_blocked(Stream s, Probe* p, bool deadline) {
  Witness w{p};
  if (deadline) s.set_write_deadline(Clock::now() + 100ms);
  const std::string piece(64 * 1024, 'w');
  std::size_t written = 0;
  for (;;) {
    const std::error_code e = co_await s.write(std::string_view(piece));
    if (e) {
      p->add("write:" + str(e));
      break;
    }
    written += piece.size();
    if (written > (std::size_t{64} << 20)) {
      p->add("never blocked");
      co_return;
    }
  }
  p->stage = 1;
  const std::error_code slept = co_await sleep_for(1ms);
  p->add("sleep:" + str(slept));
}

}  // namespace

TEST_CASE("stream: a read deadline fails a pending read and one started after it, and a new deadline re-arms") {
  Probe p;
  Server srv([&p](Stream s) { return read_deadlines(std::move(s), &p); });
  Fd c = connect_to(srv.listener.address());
  CHECK(read_exactly(c.get(), 3, 2000ms) == "go\n");
  REQUIRE(write_all(c.get(), "data"));
  REQUIRE(eventually([&] { return p.seen().size() == 3; }, std::chrono::seconds(5)));
  const auto seen = p.seen();
  const std::string timed_out = std::make_error_code(std::errc::timed_out).message();
  CHECK(seen[0] == "pending:" + timed_out + ":late enough");
  CHECK(seen[1] == "after:" + timed_out);
  CHECK(seen[2] == "rearmed:data");
}

TEST_CASE("stream: a write deadline fails a write waiting on a client that does not read, and resets the connection") {
  Probe p;
  Server srv([&p](Stream s) { return write_until_blocked(std::move(s), &p, true); });
  Fd c = connect_to(srv.listener.address());
  int small = 4096;
  ::setsockopt(c.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  REQUIRE(eventually([&] { return p.destroyed.load() == 1; }, std::chrono::seconds(5)));
  const auto seen = p.seen();
  REQUIRE(seen.size() >= 2);
  CHECK(seen[0] == "write:" + std::make_error_code(std::errc::timed_out).message());
  // The task closed the connection itself (a reset): it is not cancelled.
  CHECK(seen[1] == "sleep:ok");
  CHECK(sees_close(c.get()));
}

TEST_CASE("stream: a peer reset fails a write waiting for the drain, and the task is cancelled") {
  Probe p;
  Server srv([&p](Stream s) { return write_until_blocked(std::move(s), &p, false); });
  Fd c = connect_to(srv.listener.address());
  int small = 4096;
  ::setsockopt(c.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  std::this_thread::sleep_for(100ms);  // the server fills the socket and waits
  CHECK(p.seen().empty());
  reset(c);
  REQUIRE(eventually([&] { return p.destroyed.load() == 1; }, std::chrono::seconds(5)));
  const auto seen = p.seen();
  REQUIRE(seen.size() == 2);
  CHECK(seen[0] == "write:" + std::make_error_code(std::errc::connection_reset).message());
  CHECK(seen[1] == "sleep:" + std::make_error_code(std::errc::operation_canceled).message());
}

namespace {

Task<> throws_on_boom(Stream s) {
  for (;;) {
    auto r = co_await s.read_until("\n", 100);
    if (!r) co_return;
    if (r.text() == "boom\n") throw std::runtime_error("boom requested");
    if (co_await s.write(std::string(r.text()))) co_return;
  }
}

}  // namespace

TEST_CASE("stream: an exception escaping a handler resets its connection and the shard serves the others") {
  Server srv(throws_on_boom);
  Fd a = connect_to(srv.listener.address());
  Fd b = connect_to(srv.listener.address());
  REQUIRE(write_all(a.get(), "one\n"));
  CHECK(read_exactly(a.get(), 4) == "one\n");
  REQUIRE(write_all(b.get(), "boom\n"));
  CHECK(sees_close(b.get()));
  REQUIRE(write_all(a.get(), "two\n"));
  CHECK(read_exactly(a.get(), 4) == "two\n");
}

namespace {

Task<> echo(Stream s) {
  for (;;) {
    auto r = co_await s.read();
    if (!r) co_return;
    if (co_await s.write(r.bytes)) co_return;
  }
}

Task<> silent(Stream s) {
  auto r = co_await s.read();  // never answers
  (void)r;
  co_await sleep_for(std::chrono::hours(1));
}

Task<> client(Address to, Probe* p, std::string what) {
  Witness w{p};
  auto d = co_await dial(to, 2000ms);
  if (!d) {
    p->add("dial:" + str(d.error));
    co_return;
  }
  Stream s = std::move(d.stream);
  p->add("local:" + std::to_string(s.local().port() != 0) + " peer:" + std::to_string(s.peer().port() == to.port()));
  if (what == "echo") {
    co_await s.write("ping");
    auto r = co_await s.read_exactly(4);
    p->add("got:" + std::string(r.text()));
  } else if (what == "read") {
    p->stage = 1;
    auto r = co_await s.read();  // the server never answers: cancelled
    p->add("read:" + str(r.error));
    auto again = co_await s.read();
    p->add("again:" + str(again.error));
  } else if (what == "write") {
    const std::string piece(64 * 1024, 'w');
    std::error_code e;
    std::size_t n = 0;
    while (!e && n < 4096) {
      p->stage = 1;
      e = co_await s.write(std::string_view(piece));
      ++n;
    }
    p->add("write:" + str(e));
  }
}

}  // namespace

TEST_CASE("stream: dial connects a coroutine, knows both addresses, and a refused port is an error") {
  Server srv(echo);
  Probe p;
  on_shard(srv.rt, 0, [&] { spawn(client(srv.listener.address(), &p, "echo")); });
  REQUIRE(eventually([&] { return p.destroyed.load() == 1; }, std::chrono::seconds(5)));
  auto seen = p.seen();
  REQUIRE(seen.size() == 2);
  CHECK(seen[0] == "local:1 peer:1");
  CHECK(seen[1] == "got:ping");

  // A port nothing listens on (bound and closed again).
  Fd probe(::socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(probe.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  ::getsockname(probe.get(), reinterpret_cast<sockaddr*>(&a), &len);
  probe = Fd{};
  Probe q;
  const Address closed = Address::ipv4("127.0.0.1", ntohs(a.sin_port));
  on_shard(srv.rt, 0, [&] { spawn(client(closed, &q, "echo")); });
  REQUIRE(eventually([&] { return q.destroyed.load() == 1; }, std::chrono::seconds(5)));
  seen = q.seen();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0] == "dial:" + std::make_error_code(std::errc::connection_refused).message());
}

TEST_CASE("stream: cancel resumes a pending read and a write waiting for the drain with operation_canceled") {
  Server srv(silent);
  for (const char* what : {"read", "write"}) {
    CAPTURE(what);
    Probe p;
    TaskHandle h;
    on_shard(srv.rt, 0, [&] { h = spawn(client(srv.listener.address(), &p, what)); });
    REQUIRE(eventually([&] { return p.stage.load() == 1; }, std::chrono::seconds(5)));
    std::this_thread::sleep_for(50ms);  // suspended now
    on_shard(srv.rt, 0, [&] { h.cancel(); });
    REQUIRE(eventually([&] { return p.destroyed.load() == 1; }, std::chrono::seconds(5)));
    const auto seen = p.seen();
    const std::string canceled = std::make_error_code(std::errc::operation_canceled).message();
    REQUIRE(seen.size() >= 2);
    CHECK(seen[1] == std::string(what) + ":" + canceled);
    if (std::string(what) == "read") CHECK(seen[2] == "again:" + canceled);
  }
}

TEST_CASE("stream: stopping the runtime with coroutines suspended in reads, writes, sleeps and dials destroys them all") {
  Probe p;
  int clients = 0;
  {
    Server srv(silent, 2);  // accepted streams: suspended in a read (silent clients)
    std::vector<Fd> conns;
    for (int i = 0; i < 20; ++i) conns.push_back(connect_to(srv.listener.address()));
    for (unsigned sh = 0; sh < 2; ++sh) {
      on_shard(srv.rt, sh, [&] {
        spawn(client(srv.listener.address(), &p, "read"));   // dialed, reading
        spawn(client(srv.listener.address(), &p, "write"));  // dialed, writing into a silent server
        spawn(client(srv.listener.address(), &p, "echo"));   // dialing now
      });
      clients += 3;
    }
    std::this_thread::sleep_for(100ms);
    const auto t0 = Clock::now();
    srv.rt.stop();
    srv.rt.wait();
    CHECK(Clock::now() - t0 < 5s);
  }
  CHECK(p.destroyed.load() == clients);
}

TEST_CASE("stream: once warm, new connections take their frames from the pool") {
  Server srv(echo);
  auto round = [&] {
    for (int i = 0; i < 20; ++i) {
      Fd c = connect_to(srv.listener.address());
      REQUIRE(write_all(c.get(), "x"));
      REQUIRE(read_exactly(c.get(), 1) == "x");
    }
  };
  round();
  std::this_thread::sleep_for(50ms);
  FramePoolStats before{};
  on_shard(srv.rt, 0, [&] { before = frame_pool_stats(); });
  round();
  REQUIRE(eventually([&] {
    FramePoolStats now{};
    on_shard(srv.rt, 0, [&] { now = frame_pool_stats(); });
    return now.live == before.live;
  }, std::chrono::seconds(5)));
  FramePoolStats after{};
  on_shard(srv.rt, 0, [&] { after = frame_pool_stats(); });
  CHECK(after.allocated == before.allocated);
  CHECK(after.reused - before.reused >= 20);
}

namespace {

Task<> accept_loop(Runtime* rt, StreamListener* l, Probe* p) {
  Witness w{p};
  for (unsigned next = 0;; ++next) {
    auto a = co_await l->accept();
    if (!a) {
      p->add("accept:" + str(a.error));
      co_return;
    }
    CHECK(a.conn.peer().port() != 0);
    start_stream(*rt, next % rt->shard_count(), std::move(a.conn), echo);
  }
}

}  // namespace

TEST_CASE("stream: a Go-style accept loop hands each connection to the shard it picks, and ends when cancelled") {
  Runtime rt(opts(2));
  rt.start();
  StreamListener l(ListenOptions{});
  Probe p;
  TaskHandle loop;
  on_shard(rt, 0, [&] { loop = spawn(accept_loop(&rt, &l, &p)); });
  std::vector<Fd> conns;
  for (int i = 0; i < 4; ++i) {
    conns.push_back(connect_to(l.address()));
    const std::string m = "hello " + std::to_string(i);
    REQUIRE(write_all(conns.back().get(), m));
    CHECK(read_exactly(conns.back().get(), m.size()) == m);
  }
  CHECK(NetShard::of(rt.shard(0)).accepted.load() == 2);
  CHECK(NetShard::of(rt.shard(1)).accepted.load() == 2);
  on_shard(rt, 0, [&] { loop.cancel(); });
  REQUIRE(eventually([&] { return p.destroyed.load() == 1; }, std::chrono::seconds(5)));
  CHECK(p.seen() == std::vector<std::string>{"accept:" + std::make_error_code(std::errc::operation_canceled).message()});
  conns.clear();
  REQUIRE(eventually([&] {
    return NetShard::of(rt.shard(0)).connections.load() == 0 && NetShard::of(rt.shard(1)).connections.load() == 0;
  }, std::chrono::seconds(5)));
}

namespace {

Task<> dial_with_timeout(Address to, Probe* p) {
  Witness w{p};
  const auto t0 = Clock::now();
  auto d = co_await dial(to, 200ms);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  p->add("dial:" + str(d.error) + (took >= 190 ? ":waited" : ":early"));
}

}  // namespace

TEST_CASE("stream: dial gives up with timed_out when the connection is not established in time") {
  // A listener whose accept queue is full drops further SYNs: the connect
  // neither succeeds nor fails until the timeout.
  Fd l(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(l.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(l.get(), 0) == 0);
  socklen_t len = sizeof a;
  ::getsockname(l.get(), reinterpret_cast<sockaddr*>(&a), &len);
  const Address to = Address::ipv4("127.0.0.1", ntohs(a.sin_port));
  std::vector<Fd> fillers;
  for (int i = 0; i < 4; ++i) {  // fill the queue; later connects stay in SYN_SENT
    Fd f(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    ::connect(f.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
    fillers.push_back(std::move(f));
  }
  std::this_thread::sleep_for(20ms);
  Runtime rt(opts(1));
  rt.start();
  Probe p;
  on_shard(rt, 0, [&] { spawn(dial_with_timeout(to, &p)); });
  REQUIRE(eventually([&] { return p.destroyed.load() == 1; }, std::chrono::seconds(5)));
  CHECK(p.seen() == std::vector<std::string>{"dial:" + std::make_error_code(std::errc::timed_out).message() + ":waited"});
}

namespace {

struct Lookup {
  using Response = std::string;
  std::string key;
};

struct Directory : actors::Actor<Directory> {
  std::string on_message(const Lookup& l) { return "value-of-" + l.key; }
};

struct Ignore {
  using Response = int;
};
struct Sink : actors::Actor<Sink> {
  void on_message(const Ignore&, actors::Reply<int> r) { kept.push_back(std::move(r)); }  // never answers
  std::vector<actors::Reply<int>> kept;
};

// Reads a key per line, asks the directory on the other shard, answers.
Task<> lookup_lines(Stream s, actors::ActorRef<Directory> dir) {
  for (;;) {
    auto line = co_await s.read_until("\n", 256);
    if (!line) co_return;
    auto key = line.text();
    key.remove_suffix(1);
    // Built before the co_await: g++ 12 mishandles an aggregate temporary
    // (and a conditional expression's temporary) inside a co_await
    // expression (see README, Coroutines).
    Lookup q{std::string(key)};
    auto r = co_await actors::ask(dir, std::move(q));
    std::string reply = r.ok() ? *r : std::string("error");
    reply += "\n";
    if (co_await s.write(std::move(reply))) co_return;
  }
}

Task<> ask_sink(actors::ActorRef<Sink> sink, Probe* p, std::chrono::milliseconds timeout) {
  Witness w{p};
  p->stage = 1;
  auto r = co_await actors::ask(sink, Ignore{}, timeout);
  p->add(std::string(actors::to_string(r.status())));
}

}  // namespace

TEST_CASE("stream: a coroutine asks an actor on another shard between a read and a write, and asks time out and cancel") {
  Runtime rt(opts(2));
  rt.start();
  auto dir = actors::spawn<Directory>(rt, 1);
  ListenOptions o;
  o.policy = Policy::round_robin;
  auto l = serve(rt, o, [dir](Stream s) { return lookup_lines(std::move(s), dir); });
  for (int c = 0; c < 2; ++c) {  // one connection per shard
    Fd f = connect_to(l.address());
    REQUIRE(write_all(f.get(), "a\nbb\nccc\n"));
    const std::string want = "value-of-a\nvalue-of-bb\nvalue-of-ccc\n";
    CHECK(read_exactly(f.get(), want.size()) == want);
  }
  auto sink = actors::spawn<Sink>(rt, 1);
  Probe timed;
  on_shard(rt, 0, [&] { spawn(ask_sink(sink, &timed, 50ms)); });
  REQUIRE(eventually([&] { return timed.destroyed.load() == 1; }, std::chrono::seconds(5)));
  CHECK(timed.seen() == std::vector<std::string>{"timed_out"});
  Probe cancelled;
  TaskHandle h;
  on_shard(rt, 0, [&] { h = spawn(ask_sink(sink, &cancelled, 0ms)); });
  std::this_thread::sleep_for(20ms);
  on_shard(rt, 0, [&] { h.cancel(); });
  REQUIRE(eventually([&] { return cancelled.destroyed.load() == 1; }, std::chrono::seconds(5)));
  CHECK(cancelled.seen() == std::vector<std::string>{"canceled"});
  Probe stopped;
  on_shard(rt, 0, [&] { h = spawn(ask_sink(sink, &stopped, 0ms)); });
  std::this_thread::sleep_for(20ms);
  on_shard(rt, 0, [&] {
    h.stop();
    CHECK(actors::ActorTable::of(*Shard::current()).asks().pending() == 0);
  });
  CHECK(stopped.destroyed.load() == 1);
  CHECK(stopped.seen().empty());
}
