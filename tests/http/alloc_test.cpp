// The steady state allocates nothing: neither the HTTP session for small
// requests nor an echoing connection (send queue, recycled send buffers).
// The global allocation functions are replaced by counting ones (counting
// only while a test asks for it, on the thread that asks).
#include <doctest/doctest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <string_view>

#include "http/http_test_util.hpp"
#include "ringshard/net/listener.hpp"
#include "ringshard/net/reply_queue.hpp"
#include "counting_alloc.hpp"
#include "support.hpp"

using namespace ringshard::net::http;
using ringshard::test::http::gets;
using ringshard::test::http::parse_responses;

namespace {
/// Appends to a buffer reserved in advance: the output itself allocates nothing.
struct QuietOutput final : Output {
  std::string bytes;
  int flushes = 0;
  int closes = 0;
  void write(std::string_view b) override { bytes.append(b); }
  void flush() override { ++flushes; }
  void close_after_flush() override { ++closes; }
};

struct Counting {
  Counting() {
    allocations = 0;
    counting = true;
  }
  ~Counting() { counting = false; }
};
}  // namespace

TEST_CASE("http session: no heap allocation per request in the steady state") {
  Router router;
  router.get("/plaintext", [](Request&) { return Response::text(200, "Hello, World!"); });
  router.get("/later", [](Request&, Responder r) { r(Response::text(200, "later")); });
  router.post("/echo", [](Request& req) {
    Response r(200);
    r.body.swap(req.body);  // both keep their capacity: give the request the response's old buffer
    return r;
  });
  QuietOutput out;
  out.bytes.reserve(std::size_t{4} << 20);
  Session s(router, Limits{}, out);

  const std::string one = gets(1);
  const std::string sixteen = gets(16);
  const std::string with_headers =
      "GET /plaintext HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: bench/1.0\r\nAccept: */*\r\n"
      "Connection: keep-alive\r\nAccept-Encoding: gzip, deflate\r\n\r\n";
  const std::string deferred = gets(1, "/later");
  const std::string post = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
  auto round = [&] {
    s.feed(one);
    s.feed(sixteen);
    s.feed(with_headers);
    s.feed(deferred);
    s.feed(post);
    for (char c : with_headers) s.feed(std::string_view(&c, 1));
  };
  for (int i = 0; i < 10; ++i) round();  // warm-up: buffers reach their working sizes
  out.bytes.clear();
  {
    Counting c;
    for (int i = 0; i < 100; ++i) round();
    CHECK(allocations == 0);
  }
  CHECK(s.requests() == 110 * 21);
  CHECK(out.closes == 0);
  CHECK(parse_responses(out.bytes).size() == 100 * 21);
}

TEST_CASE("http session: a template route with a parameter allocates nothing per request in the steady state") {
  Router router;
  for (const char* exact : {"/plaintext", "/a", "/b", "/c"})
    router.get(exact, [](Request&) { return Response::text(200, "exact"); });
  router.get("/users/{user}", [](Request&) { return Response::text(200, "user"); });
  router.get("/links/{id}", [](Request& req) { return Response::text(200, std::string(req.param("id"))); });
  router.get("/links/{id}/stats", [](Request& req) {
    std::string body(req.param("id"));
    body += '|';
    body += req.query_param("q").value_or("none");
    return Response::text(200, std::move(body));
  });
  router.del("/links/{id}", [](Request&) { return Response(204); });
  QuietOutput out;
  out.bytes.reserve(std::size_t{4} << 20);
  Session s(router, Limits{}, out);
  const std::string plain = gets(4, "/links/abc12");
  const std::string escaped = gets(1, "/links/a%20b%2Fc/stats?q=x+y%21");
  const std::string not_allowed = "PUT /links/abc HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
  auto round = [&] {
    s.feed(plain);
    s.feed(escaped);
  };
  for (int i = 0; i < 10; ++i) round();  // warm-up
  s.feed(not_allowed);  // the error path (a 405 and its Allow) allocates its response; not counted
  out.bytes.clear();
  {
    Counting c;
    for (int i = 0; i < 100; ++i) round();
    CHECK(allocations == 0);
  }
  s.feed(not_allowed);
  const auto rs = parse_responses(out.bytes);
  REQUIRE(rs.size() == 501);
  CHECK(rs[0].body == "abc12");
  CHECK(rs[4].body == "a b/c|x y!");
  CHECK(rs[500].status == 405);
  CHECK(rs[500].header("Allow") == "GET, DELETE, HEAD");
}

namespace {
struct EchoConnection : ringshard::net::Connection<EchoConnection> {
  void on_data(std::span<const std::byte> bytes) override { send(bytes); }
};

// Blocking round trip of `message` over a connected socket.
bool round_trip(int fd, const std::string& message) {
  if (::send(fd, message.data(), message.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(message.size())) return false;
  std::string got;
  char buf[4096];
  while (got.size() < message.size()) {
    const ssize_t r = ::recv(fd, buf, sizeof buf, 0);
    if (r <= 0) return false;
    got.append(buf, static_cast<std::size_t>(r));
  }
  return got == message;
}
}  // namespace

namespace {
struct KeepingEcho : ringshard::net::Connection<KeepingEcho> {
  void on_data(std::span<const std::byte>) override { send(keep_received()); }
};

// Message and answer fit the 48-byte task slot (larger ones are boxed: one
// allocation each way).
struct Lookup {
  using Response = long;
  long key;
};
struct Table : ringshard::actors::Actor<Table> {
  long on_message(const Lookup& l) { return l.key; }
};
// Lines answered in order through a ReplyQueue, every other one after an ask
// to the actor on the other shard.
struct OrderedLines : ringshard::net::Connection<OrderedLines> {
  ringshard::actors::ActorRef<Table> table;
  ringshard::net::ReplyQueue replies{*this};
  explicit OrderedLines(ringshard::actors::ActorRef<Table> t) : table(t) {}
  std::size_t on_input(std::span<const std::byte> in) override {
    const std::string_view all(reinterpret_cast<const char*>(in.data()), in.size());
    const std::size_t eol = all.find('\n');
    if (eol == std::string_view::npos) return 0;
    ringshard::net::ReplySlot slot = replies.reserve();
    if (all[0] == 'a') {
      ask(table, Lookup{static_cast<long>(all[1] - '0')},
          [this, slot = std::move(slot)](ringshard::actors::AskResult<long> r) mutable {
            std::string reply = send_buffer();
            reply.assign(r.ok() ? "a" + std::to_string(*r) : std::string("error"));
            reply += "-short\n";
            slot(std::move(reply));
          });
    } else {
      std::string reply = send_buffer();
      reply.assign(all.substr(0, eol + 1));
      slot(std::move(reply));
    }
    return eol + 1;
  }
};

// Runs `traffic` with allocation counting on every shard of `rt`; returns the count.
template <class F>
std::size_t allocations_on_shards(ringshard::Runtime& rt, F&& traffic) {
  using namespace ringshard;
  const unsigned n = rt.shard_count();
  std::atomic<unsigned> ready{0};
  for (unsigned i = 0; i < n; ++i) {
    rt.post(i, [&] {
      allocations = 0;
      counting = true;
      ready.fetch_add(1);
    });
  }
  REQUIRE(test::eventually([&] { return ready.load() == n; }, std::chrono::seconds(10)));
  traffic();
  std::atomic<std::size_t> counted{0};
  std::atomic<unsigned> done{0};
  for (unsigned i = 0; i < n; ++i) {
    rt.post(i, [&] {
      counting = false;
      counted.fetch_add(allocations);
      done.fetch_add(1);
    });
  }
  REQUIRE(test::eventually([&] { return done.load() == n; }, std::chrono::seconds(10)));
  return counted.load();
}

// One keep-alive client sends `request` to `address` and reads until
// `answered` appears, 100 times to warm up, then 2,000 times with
// allocation counting on the shards of `rt`; returns that count.
std::size_t keep_alive_allocations(ringshard::Runtime& rt, const ringshard::net::Address& address,
                                   const std::string& request, std::string_view answered) {
  using namespace ringshard;
  test::Fd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(::connect(client.get(), address.get(), address.length()) == 0);
  auto exchange = [&] {
    if (::send(client.get(), request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size()))
      return false;
    std::string got;
    char buf[4096];
    while (got.find(answered) == std::string::npos) {
      const ssize_t r = ::recv(client.get(), buf, sizeof buf, 0);
      if (r <= 0) return false;
      got.append(buf, static_cast<std::size_t>(r));
    }
    return true;
  };
  for (int i = 0; i < 100; ++i) REQUIRE(exchange());  // warm-up
  bool ok = true;
  const std::size_t counted = allocations_on_shards(rt, [&] {
    for (int i = 0; i < 2000 && ok; ++i) ok = exchange();
  });
  CHECK(ok);
  return counted;
}
}  // namespace

TEST_CASE("connection: echoing received buffers without a copy allocates nothing in the steady state") {
  using namespace ringshard;
  RuntimeOptions o;
  o.shards = 1;
  Runtime rt(o);
  rt.start();
  auto listener = net::listen<KeepingEcho>(rt, net::ListenOptions{});
  const auto address = listener.address();
  test::Fd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(::connect(client.get(), address.get(), address.length()) == 0);
  const std::string small(100, 's');
  const std::string big(3000, 'b');
  for (int i = 0; i < 50; ++i) REQUIRE(round_trip(client.get(), i % 2 ? small : big));  // warm-up
  bool ok = true;
  const std::size_t counted = allocations_on_shards(rt, [&] {
    for (int i = 0; i < 2000 && ok; ++i) ok = round_trip(client.get(), i % 2 ? small : big);
  });
  CHECK(ok);
  CHECK(counted == 0);
  rt.stop();
  rt.wait();
}

TEST_CASE("ordered replies with asks to another shard allocate nothing per request in the steady state") {
  using namespace ringshard;
  RuntimeOptions o;
  o.shards = 2;
  Runtime rt(o);
  rt.start();
  auto table = actors::spawn<Table>(rt, 1);
  net::ListenOptions lo;
  lo.accept_shard = 0;
  auto listener = net::listen<OrderedLines>(rt, lo, table);
  const auto address = listener.address();
  test::Fd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(::connect(client.get(), address.get(), address.length()) == 0);
  std::string batch;
  for (int i = 0; i < 16; ++i) batch += (i % 2 ? "a4-short\n" : "e-short\n");
  // Warm-up past the end of the first 64 KiB receive buffer: a request that
  // the end of an incremental buffer splits is kept in the connection's
  // input (allocated once, reused after).
  for (int i = 0; i < 600; ++i) REQUIRE(round_trip(client.get(), batch));
  bool ok = true;
  const std::size_t counted = allocations_on_shards(rt, [&] {
    for (int i = 0; i < 500 && ok; ++i) ok = round_trip(client.get(), batch);
  });
  CHECK(ok);
  MESSAGE("allocations for 8,000 requests (4,000 asks across shards): " << counted);
  CHECK(counted == 0);
  rt.stop();
  rt.wait();
}

TEST_CASE("connection: echoing 2,000 messages allocates nothing on the shard in the steady state") {
  using namespace ringshard;
  RuntimeOptions o;
  o.shards = 1;
  Runtime rt(o);
  rt.start();
  auto listener = net::listen<EchoConnection>(rt, net::ListenOptions{});
  const auto address = listener.address();
  test::Fd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(::connect(client.get(), address.get(), address.length()) == 0);
  const std::string small(100, 's');
  const std::string big(3000, 'b');
  for (int i = 0; i < 50; ++i) REQUIRE(round_trip(client.get(), i % 2 ? small : big));  // warm-up

  std::atomic<int> phase{0};
  std::atomic<std::size_t> counted{0};
  rt.post(0, [&] {
    allocations = 0;
    counting = true;
    phase.store(1);
  });
  REQUIRE(test::eventually([&] { return phase.load() == 1; }, std::chrono::seconds(10)));
  bool ok = true;
  for (int i = 0; i < 2000 && ok; ++i) ok = round_trip(client.get(), i % 2 ? small : big);
  rt.post(0, [&] {
    counting = false;
    counted.store(allocations);
    phase.store(2);
  });
  REQUIRE(test::eventually([&] { return phase.load() == 2; }, std::chrono::seconds(10)));
  CHECK(ok);
  CHECK(counted.load() == 0);
  client.reset();
  rt.stop();
  rt.wait();
}

TEST_CASE("http server: keep-alive requests over a socket allocate nothing in the steady state, every timeout on") {
  // The header, keep-alive, request and send timeouts are all on (the
  // defaults): they are checked on each connection's tick, with no timer
  // touched and no clock read per request.
  using namespace ringshard;
  RuntimeOptions o;
  o.shards = 1;
  Runtime rt(o);
  rt.start();
  auto router = std::make_shared<Router>();
  router->get("/plaintext", [](Request&) { return Response::text(200, "Hello, World!"); });
  ServerOptions so;  // defaults: every timeout on
  REQUIRE(so.header_timeout.count() > 0);
  REQUIRE(so.keepalive_timeout.count() > 0);
  REQUIRE(so.request_timeout.count() > 0);
  REQUIRE(so.send_timeout.count() > 0);
  auto listener = serve(rt, ringshard::net::ListenOptions{}, router, so);
  const std::size_t counted = keep_alive_allocations(rt, listener.address(), gets(1), "Hello, World!");
  MESSAGE("allocations on the shard for 2,000 keep-alive requests: " << counted);
  CHECK(counted == 0);
  rt.stop();
  rt.wait();
}

TEST_CASE("http server: a template route with a parameter over a socket allocates nothing in the steady state") {
  using namespace ringshard;
  RuntimeOptions o;
  o.shards = 1;
  Runtime rt(o);
  rt.start();
  auto router = std::make_shared<Router>();
  router->get("/links/{id}", [](Request& req) { return Response::text(200, std::string(req.param("id"))); });
  router->get("/links/{id}/stats", [](Request&) { return Response::text(200, "stats"); });
  auto listener = serve(rt, ringshard::net::ListenOptions{}, router, ServerOptions{});
  const std::size_t counted = keep_alive_allocations(rt, listener.address(), gets(1, "/links/k3Yx9"), "\r\n\r\nk3Yx9");
  MESSAGE("allocations on the shard for 2,000 requests to a template route: " << counted);
  CHECK(counted == 0);
  rt.stop();
  rt.wait();
}
