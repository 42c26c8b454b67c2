// The HTTP/1.1 session on its own: bytes in, responses out, no sockets.
#include <doctest/doctest.h>

#include <ctime>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "http/http_test_util.hpp"

using namespace ringshard::net::http;
using ringshard::test::http::FakeOutput;
using ringshard::test::http::gets;
using ringshard::test::http::parse_responses;

namespace {

/// The routes most tests use.
Router make_router() {
  Router r;
  r.get("/plaintext", [](Request&) { return Response::text(200, "Hello, World!"); });
  r.get("/json", [](Request&) { return Response::json(200, R"({"message":"Hello, World!"})"); });
  r.post("/echo", [](Request& req) { return Response::text(200, std::move(req.body), "application/octet-stream"); });
  r.get("/path/*", [](Request& req) { return Response::text(200, std::string(req.path)); });
  r.get("/size", [](Request& req) {
    return Response::text(200, std::string(static_cast<std::size_t>(std::stoul(std::string(req.query))), 'x'));
  });
  r.get("/resource", [](Request&) { return Response::text(200, "get"); });
  r.post("/resource", [](Request&) { return Response::text(201, "created"); });
  r.get("/close", [](Request&) {
    Response resp = Response::text(200, "bye");
    resp.close = true;
    return resp;
  });
  r.get("/throw", [](Request&) -> Response { throw std::runtime_error("handler failed"); });
  return r;
}

/// A router with deferred routes whose Responders are parked in `held`.
struct DeferredFixture {
  Router router;
  std::vector<Responder> held;
  std::vector<std::string> held_paths;
  FakeOutput out;
  std::unique_ptr<Session> session;

  DeferredFixture() {
    router.get("/later/*", [this](Request& req, Responder r) {
      held_paths.emplace_back(req.path);
      held.push_back(std::move(r));
    });
    router.get("/now/*", [](Request& req) { return Response::text(200, std::string(req.path)); });
    router.get("/sync", [](Request&, Responder r) { r(Response::text(200, "sync")); });
    router.get("/drop", [](Request&, Responder) {});
    // Answered at once, and its response congests the output (as a response
    // over the connection's high watermark would).
    router.get("/congest/*", [this](Request& req) {
      out.congestion = true;
      return Response::text(200, std::string(req.path));
    });
    session = std::make_unique<Session>(router, Limits{}, out);
  }
};

std::string request_with_body(std::string_view head_extra, std::string_view body) {
  std::string s = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  s += head_extra;
  s += "\r\n";
  s += body;
  return s;
}

}  // namespace

TEST_CASE("http session: GET /plaintext") {
  const Router router = make_router();
  FakeOutput out;
  Session s(router, Limits{}, out);
  s.feed("GET /plaintext HTTP/1.1\r\nHost: localhost\r\n\r\n");
  auto rs = parse_responses(out.bytes);
  REQUIRE(rs.size() == 1);
  CHECK(rs[0].version == "HTTP/1.1");
  CHECK(rs[0].status == 200);
  CHECK(rs[0].reason == "OK");
  CHECK(rs[0].body == "Hello, World!");
  CHECK(rs[0].header("Content-Length") == "13");
  CHECK(rs[0].header("Content-Type") == "text/plain");
  CHECK_FALSE(rs[0].header("Connection"));
  CHECK(out.writes.size() == 1);
  CHECK(out.flushes.size() == 1);
  CHECK(out.all_flushed());
  CHECK(out.closes == 0);
  CHECK(s.requests() == 1);
  CHECK_FALSE(s.mid_request());
  CHECK_FALSE(s.closing());
}

TEST_CASE("http session: three keep-alive requests in one feed give three responses and one flush") {
  const Router router = make_router();
  FakeOutput out;
  Session s(router, Limits{}, out);
  s.feed("GET /path/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /json HTTP/1.1\r\nHost: x\r\n\r\nGET /path/3 HTTP/1.1\r\nHost: x\r\n\r\n");
  auto rs = parse_responses(out.bytes);
  REQUIRE(rs.size() == 3);
  CHECK(rs[0].body == "/path/1");
  CHECK(rs[1].body == R"({"message":"Hello, World!"})");
  CHECK(rs[1].header("Content-Type") == "application/json");
  CHECK(rs[2].body == "/path/3");
  CHECK(out.flushes.size() == 1);
  CHECK(out.all_flushed());
  CHECK(out.closes == 0);
  CHECK(s.requests() == 3);
  // And the connection keeps serving.
  s.feed(gets(1));
  CHECK(parse_responses(out.bytes).size() == 4);
  CHECK(out.flushes.size() == 2);
}

TEST_CASE("http session: 16 pipelined requests are answered in order") {
  const Router router = make_router();
  FakeOutput out;
  Session s(router, Limits{}, out);
  std::string in;
  for (int i = 0; i < 16; ++i) in += "GET /path/" + std::to_string(i) + "?q=1 HTTP/1.1\r\nHost: h\r\n\r\n";
  s.feed(in);
  auto rs = parse_responses(out.bytes);
  REQUIRE(rs.size() == 16);
  for (int i = 0; i < 16; ++i) CHECK(rs[static_cast<std::size_t>(i)].body == "/path/" + std::to_string(i));
  CHECK(out.flushes.size() == 1);
  CHECK(s.requests() == 16);
}

TEST_CASE("http session: the answers of a pipelined batch are timed together, deferred ones alone") {
  using namespace std::chrono_literals;
  Router router = make_router();
  router.get("/slow", [](Request&) {
    std::this_thread::sleep_for(2ms);
    return Response::text(200, "slow");
  });
  std::vector<Responder> held;
  router.get("/later", [&](Request&, Responder r) { held.push_back(std::move(r)); });
  FakeOutput out;
  Session s(router, Limits{}, out);

  // 16 answers and a 404 in one feed: one report for the 16, none for the 404.
  std::string in;
  for (int i = 0; i < 16; ++i) in += "GET /plaintext HTTP/1.1\r\nHost: h\r\n\r\n";
  in += "GET /nowhere HTTP/1.1\r\nHost: h\r\n\r\n";
  s.feed(in);
  CHECK(out.statuses.size() == 17);
  CHECK(out.statuses.back() == 404);
  REQUIRE(out.handled.size() == 1);
  CHECK(out.handled[0].second == 16);

  // Two slow handlers in one batch: each counted at the batch's average, at
  // least the 2 ms each slept.
  s.feed("GET /slow HTTP/1.1\r\nHost: h\r\n\r\nGET /slow HTTP/1.1\r\nHost: h\r\n\r\n");
  REQUIRE(out.handled.size() == 2);
  CHECK(out.handled[1].second == 2);
  CHECK(out.handled[1].first >= 2ms);
  CHECK(out.handled[1].first < 1s);

  // A deferred answer counts alone, from its batch to the answer; the
  // answer returned behind it in the same batch is timed with the batch.
  s.feed("GET /later HTTP/1.1\r\nHost: h\r\n\r\nGET /plaintext HTTP/1.1\r\nHost: h\r\n\r\n");
  REQUIRE(out.handled.size() == 3);
  CHECK(out.handled[2].second == 1);
  CHECK(out.handled[2].first < 1s);
  REQUIRE(held.size() == 1);
  std::this_thread::sleep_for(5ms);
  held[0](Response::text(200, "late"));
  REQUIRE(out.handled.size() == 4);
  CHECK(out.handled[3].second == 1);
  CHECK(out.handled[3].first >= 5ms);
  CHECK(parse_responses(out.bytes).size() == 21);
}

TEST_CASE("http session: a request split byte by byte") {
  const Router router = make_router();
  FakeOutput out;
  Session s(router, Limits{}, out);
  const std::string in = "GET /plaintext HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n";
  CHECK_FALSE(s.mid_request());
  for (std::size_t i = 0; i + 1 < in.size(); ++i) {
    s.feed(std::string_view(in).substr(i, 1));
    CHECK(s.mid_request());
  }
  CHECK(out.bytes.empty());
  CHECK(out.flushes.empty());
  s.feed(std::string_view(in).substr(in.size() - 1));
  CHECK_FALSE(s.mid_request());
  auto rs = parse_responses(out.bytes);
  REQUIRE(rs.size() == 1);
  CHECK(rs[0].body == "Hello, World!");
  CHECK(out.flushes.size() == 1);
}

TEST_CASE("http session: HTTP/1.0 without keep-alive closes") {
  const Router router = make_router();
  FakeOutput out;
  Session s(router, Limits{}, out);
  s.feed("GET /plaintext HTTP/1.0\r\n\r\nGET /plaintext HTTP/1.0\r\n\r\n");
  auto rs = parse_responses(out.bytes);
  REQUIRE(rs.size() == 1);
  CHECK(rs[0].version == "HTTP/1.0");
  CHECK(rs[0].header("Connection") == "close");
  CHECK(out.closes == 1);
  CHECK(out.all_flushed());
  CHECK(s.closing());
  s.feed(gets(1));
  CHECK(parse_responses(out.bytes).size() == 1);
  CHECK_FALSE(out.wrote_after_close);
}

TEST_CASE("http session: HTTP/1.0 with keep-alive stays open") {
  const Router router = make_router();
  FakeOutput out;
  Session s(router, Limits{}, out);
  const std::string req = "GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
  s.feed(req);
  s.feed(req);
  auto rs = parse_responses(out.bytes);
  REQUIRE(rs.size() == 2);
  for (const auto& r : rs) {
    CHECK(r.version == "HTTP/1.0");
    CHECK(r.header("Connection") == "keep-alive");
    CHECK(r.body == "Hello, World!");
  }
  CHECK(out.closes == 0);
}

TEST_CASE("http session: Connection: close ends the connection after that response") {
  const Router router = make_router();
  FakeOutput out;
  Session s(router, Limits{}, out);
  s.feed("GET /path/a HTTP/1.1\r\nHost: x\r\n\r\nGET /path/b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /path/c HTTP/1.1\r\nHost: x\r\n\r\n");
  auto rs = parse_responses(out.bytes);
  REQUIRE(rs.size() == 2);
  CHECK(rs[0].body == "/path/a");
  CHECK_FALSE(rs[0].header("Connection"));
  CHECK(rs[1].body == "/path/b");
  CHECK(rs[1].header("Connection") == "close");
  CHECK(out.closes == 1);
  CHECK(out.flushes.size() == 1);
  CHECK(s.requests() == 2);
}

TEST_CASE("http session: nothing after a deferred Connection: close request is dispatched") {
  DeferredFixture f;
  f.session->feed("GET /later/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /later/2 HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(f.held.size() == 1);
  CHECK(f.session->requests() == 1);
  CHECK(f.session->closing());
  f.held[0](Response::text(200, "one"));
  auto rs = parse_responses(f.out.bytes);
  REQUIRE(rs.size() == 1);
  CHECK(rs[0].header("Connection") == "close");
  CHECK(f.out.closes == 1);
}

TEST_CASE("http session: a handler can ask to close") {
  const Router router = make_router();
  FakeOutput out;
  Session s(router, Limits{}, out);
  s.feed("GET /close HTTP/1.1\r\nHost: x\r\n\r\nGET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n");
  auto rs = parse_responses(out.bytes);
  REQUIRE(rs.size() == 1);
  CHECK(rs[0].header("Connection") == "close");
  CHECK(out.closes == 1);
}

TEST_CASE("http session: POST with a Content-Length body is echoed") {
  const Router router = make_router();
  FakeOutput out;
  Session s(router, Limits{}, out);
  const std::string body = "name=ringshard&kind=framework";
  const std::string in = request_with_body("", body);
  // Body split over feeds.
  const auto cut = in.size() - 7;
  s.feed(std::string_view(in).substr(0, cut));
  CHECK(s.mid_request());
  CHECK(out.bytes.empty());
  s.feed(std::string_view(in).substr(cut));
  auto rs = parse_responses(out.bytes);
  REQUIRE(rs.size() == 1);
  CHECK(rs[0].body == body);
  CHECK(rs[0].header("Content-Type") == "application/octet-stream");
  CHECK(rs[0].header("Content-Length") == std::to_string(body.size()));
}

TEST_CASE("http session: chunked POST body is collected") {
  const Router router = make_router();
  FakeOutput out;
  Session s(router, Limits{}, out);
  const std::string in =
      "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nHello\r\n8\r\n, chunky\r\n1;ext=1\r\n!\r\n0\r\nX-Trailer: t\r\n\r\n"
      "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n";
  // In three pieces, cutting inside a chunk size and inside chunk data.
  s.feed(std::string_view(in).substr(0, 70));
  s.feed(std::string_view(in).substr(70, 10));
  s.feed(std::string_view(in).substr(80));
  auto rs = parse_responses(out.bytes);
  REQUIRE(rs.size() == 2);
  CHECK(rs[0].body == "Hello, chunky!");
  CHECK(rs[1].body == "Hello, World!");
}

TEST_CASE("http session: Expect: 100-continue gets an interim response right after the headers") {
  const Router router = make_router();
  FakeOutput out;
  Session s(router, Limits{}, out);
  s.feed("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
  CHECK(out.bytes == "HTTP/1.1 100 Continue\r\n\r\n");
  CHECK(out.all_flushed());
  CHECK(s.mid_request());
  s.feed("hello");
  auto rs = parse_responses(out.bytes);
  REQUIRE(rs.size() == 2);
  CHECK(rs[0].status == 100);
  CHECK(rs[1].status == 200);
  CHECK(rs[1].body == "hello");
  CHECK(out.all_flushed());
  CHECK(out.closes == 0);
}

TEST_CASE("http session: Expect: 100-continue with a body over the limit gets 413 and no 100") {
  const Router router = make_router();
  FakeOutput out;
  Session s(router, Limits{8192, 1000}, out);
  s.feed("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\nExpect: 100-continue\r\n\r\n");
  auto rs = parse_responses(out.bytes);
  REQUIRE(rs.size() == 1);
  CHECK(rs[0].status == 413);
  CHECK(rs[0].header("Connection") == "close");
  CHECK(out.closes == 1);
}

TEST_CASE("http session: 431 for 9 KiB of headers") {
  const Router router = make_router();
  const std::string big = "GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(9 * 1024, 'a') + "\r\n\r\n";
  SUBCASE("in one feed") {
    FakeOutput out;
    Session s(router, Limits{}, out);
    s.feed(big);
    auto rs = parse_responses(out.bytes);
    REQUIRE(rs.size() == 1);
    CHECK(rs[0].status == 431);
    CHECK(rs[0].header("Connection") == "close");
    CHECK(out.closes == 1);
    CHECK(s.requests() == 0);
  }
  SUBCASE("many small headers over several feeds") {
    FakeOutput out;
    Session s(router, Limits{}, out);
    s.feed("GET /plaintext HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 400 && out.closes == 0; ++i) s.feed("X-Header-" + std::to_string(i) + ": value\r\n");
    auto rs = parse_responses(out.bytes);
    REQUIRE(rs.size() == 1);
    CHECK(rs[0].status == 431);
    CHECK(out.closes == 1);
  }
  SUBCASE("just under the limit is fine") {
    FakeOutput out;
    Session s(router, Limits{}, out);
    const std::string head = "GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Big: ";
    s.feed(head + std::string(8192 - head.size() - 4, 'a') + "\r\n\r\n");
    auto rs = parse_responses(out.bytes);
    REQUIRE(rs.size() == 1);
    CHECK(rs[0].status == 200);
  }
}

TEST_CASE("http session: 414 for a request-target over the header limit") {
  const Router router = make_router();
  FakeOutput out;
  Session s(router, Limits{}, out);
  s.feed("GET /" + std::string(9000, 'u') + " HTTP/1.1\r\nHost: x\r\n\r\n");
  auto rs = parse_responses(out.bytes);
  REQUIRE(rs.size() == 1);
  CHECK(rs[0].status == 414);
  CHECK(out.closes == 1);
}

TEST_CASE("http session: 413 for a declared body over the limit") {
  const Router router = make_router();
  FakeOutput out;
  Session s(router, Limits{8192, 100}, out);
  s.feed("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n");
  auto rs = parse_responses(out.bytes);
  REQUIRE(rs.size() == 1);
  CHECK(rs[0].status == 413);
  CHECK(rs[0].header("Connection") == "close");
  CHECK(out.closes == 1);
  CHECK(s.requests() == 0);
  s.feed(std::string(101, 'b') + gets(1));
  CHECK(parse_responses(out.bytes).size() == 1);
}

TEST_CASE("http session: 413 for a chunked body that grows over the limit") {
  const Router router = make_router();
  FakeOutput out;
  Session s(router, Limits{8192, 100}, out);
  s.feed("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
  CHECK(out.bytes.empty());
  s.feed("40\r\n" + std::string(64, 'c') + "\r\n");
  CHECK(out.bytes.empty());
  s.feed("40\r\n" + std::string(64, 'c') + "\r\n");
  auto rs = parse_responses(out.bytes);
  REQUIRE(rs.size() == 1);
  CHECK(rs[0].status == 413);
  CHECK(out.closes == 1);
}

TEST_CASE("http session: 400 for garbage, then input is ignored") {
  const Router router = make_router();
  FakeOutput out;
  Session s(router, Limits{}, out);
  s.feed("GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n\x01\x02 garbage\r\n\r\n");
  auto rs = parse_responses(out.bytes);
  REQUIRE(rs.size() == 2);
  CHECK(rs[0].status == 200);
  CHECK(rs[1].status == 400);
  CHECK(rs[1].header("Connection") == "close");
  CHECK(out.closes == 1);
  CHECK(out.flushes.size() == 1);
  CHECK(s.closing());
  CHECK_FALSE(s.mid_request());
  s.feed(gets(2));
  CHECK(parse_responses(out.bytes).size() == 2);
  CHECK_FALSE(out.wrote_after_close);
}

TEST_CASE("http session: 400 for both Content-Length and Transfer-Encoding") {
  const Router router = make_router();
  FakeOutput out;
  Session s(router, Limits{}, out);
  s.feed(
      "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
      "0\r\n\r\nGET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n");
  auto rs = parse_responses(out.bytes);
  REQUIRE(rs.size() == 1);
  CHECK(rs[0].status == 400);
  CHECK(out.closes == 1);
  CHECK(s.requests() == 0);
}

TEST_CASE("http session: 404 for an unknown path, the connection stays open") {
  const Router router = make_router();
  FakeOutput out;
  Session s(router, Limits{}, out);
  s.feed("GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n" + gets(1));
  auto rs = parse_responses(out.bytes);
  REQUIRE(rs.size() == 2);
  CHECK(rs[0].status == 404);
  CHECK(rs[0].reason == "Not Found");
  CHECK(rs[1].status == 200);
  CHECK(out.closes == 0);
}

TEST_CASE("http session: 405 with Allow for a known path and another method") {
  const Router router = make_router();
  FakeOutput out;
  Session s(router, Limits{}, out);
  s.feed("DELETE /resource HTTP/1.1\r\nHost: x\r\n\r\nPOST /resource HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  auto rs = parse_responses(out.bytes);
  REQUIRE(rs.size() == 2);
  CHECK(rs[0].status == 405);
  CHECK(rs[0].header("Allow") == "GET, POST, HEAD");
  CHECK(rs[1].status == 201);
  CHECK(rs[1].body == "created");
}

TEST_CASE("http session: a deferred response holds back the ones after it") {
  DeferredFixture f;
  f.session->feed("GET /later/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /now/2 HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(f.out.bytes.empty());
  CHECK(f.out.flushes.empty());
  CHECK(f.session->pending() == 2);
  REQUIRE(f.held.size() == 1);
  CHECK(f.held_paths[0] == "/later/1");
  CHECK(f.held[0]);
  CHECK(f.held[0].session_alive());
  f.held[0](Response::text(200, "one"));
  CHECK_FALSE(f.held[0]);
  auto rs = parse_responses(f.out.bytes);
  REQUIRE(rs.size() == 2);
  CHECK(rs[0].body == "one");
  CHECK(rs[1].body == "/now/2");
  CHECK(f.out.flushes.size() == 1);
  CHECK(f.out.all_flushed());
  CHECK(f.session->pending() == 0);
  // A second answer does nothing.
  f.held[0](Response::text(200, "again"));
  CHECK(parse_responses(f.out.bytes).size() == 2);
}

TEST_CASE("http session: several deferred responses answered out of order go out in order") {
  DeferredFixture f;
  f.session->feed(
      "GET /now/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /later/2 HTTP/1.1\r\nHost: x\r\n\r\nGET /now/3 HTTP/1.1\r\nHost: x\r\n\r\n"
      "GET /later/4 HTTP/1.1\r\nHost: x\r\n\r\nGET /sync HTTP/1.1\r\nHost: x\r\n\r\n");
  REQUIRE(f.held.size() == 2);
  CHECK(parse_responses(f.out.bytes).size() == 1);  // /now/1 went straight out
  CHECK(f.out.flushes.size() == 1);
  f.held[1](Response::text(200, "four"));
  CHECK(parse_responses(f.out.bytes).size() == 1);  // still behind /later/2
  CHECK(f.out.flushes.size() == 1);
  f.held[0](Response::text(200, "two"));
  auto rs = parse_responses(f.out.bytes);
  REQUIRE(rs.size() == 5);
  CHECK(rs[0].body == "/now/1");
  CHECK(rs[1].body == "two");
  CHECK(rs[2].body == "/now/3");
  CHECK(rs[3].body == "four");
  CHECK(rs[4].body == "sync");
  CHECK(f.out.flushes.size() == 2);
  CHECK(f.out.all_flushed());
  // Many more, to make the ring of held responses grow and wrap.
  std::string in;
  for (int i = 0; i < 40; ++i) in += "GET /later/x HTTP/1.1\r\nHost: x\r\n\r\nGET /now/y HTTP/1.1\r\nHost: x\r\n\r\n";
  f.session->feed(in);
  REQUIRE(f.held.size() == 42);
  for (std::size_t i = 42; i-- > 2;) f.held[i](Response::text(200, "l" + std::to_string(i)));
  rs = parse_responses(f.out.bytes);
  REQUIRE(rs.size() == 85);
  for (std::size_t i = 0; i < 40; ++i) {
    CHECK(rs[5 + 2 * i].body == "l" + std::to_string(i + 2));
    CHECK(rs[6 + 2 * i].body == "/now/y");
  }
}

TEST_CASE("http session: a close or an error behind a deferred response waits for it") {
  DeferredFixture f;
  SUBCASE("Connection: close") {
    f.session->feed("GET /later/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /now/2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /now/3 HTTP/1.1\r\nHost: x\r\n\r\n");
  }
  SUBCASE("malformed request") {
    f.session->feed("GET /later/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /now/2 HTTP/1.1\r\nHost: x\r\n\r\nNOT HTTP\r\n\r\n");
  }
  CHECK(f.out.bytes.empty());
  CHECK(f.out.closes == 0);
  CHECK(f.session->closing());
  REQUIRE(f.held.size() == 1);
  f.held[0](Response::text(200, "one"));
  auto rs = parse_responses(f.out.bytes);
  REQUIRE(rs.size() >= 2);
  CHECK(rs[0].body == "one");
  CHECK(rs[1].body == "/now/2");
  CHECK(rs.back().header("Connection") == "close");
  CHECK(rs.size() == (rs[1].header("Connection") ? 2u : 3u));
  if (rs.size() == 3) CHECK(rs[2].status == 400);
  CHECK(f.out.closes == 1);
  CHECK(f.out.all_flushed());
}

TEST_CASE("http session: a Responder answered inside the handler is like an immediate answer") {
  DeferredFixture f;
  f.session->feed("GET /sync HTTP/1.1\r\nHost: x\r\n\r\nGET /now/2 HTTP/1.1\r\nHost: x\r\n\r\n");
  auto rs = parse_responses(f.out.bytes);
  REQUIRE(rs.size() == 2);
  CHECK(rs[0].body == "sync");
  CHECK(rs[1].body == "/now/2");
  CHECK(f.out.flushes.size() == 1);
}

TEST_CASE("http session: a dropped Responder answers 500") {
  DeferredFixture f;
  SUBCASE("dropped in the handler") {
    f.session->feed("GET /drop HTTP/1.1\r\nHost: x\r\n\r\nGET /now/2 HTTP/1.1\r\nHost: x\r\n\r\n");
  }
  SUBCASE("dropped later") {
    f.session->feed("GET /later/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /now/2 HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(f.out.bytes.empty());
    f.held.clear();
  }
  auto rs = parse_responses(f.out.bytes);
  REQUIRE(rs.size() == 2);
  CHECK(rs[0].status == 500);
  CHECK(rs[1].body == "/now/2");
  CHECK(f.out.closes == 0);
  CHECK(f.out.all_flushed());
}

TEST_CASE("http session: answering after the session is gone does nothing") {
  DeferredFixture f;
  f.session->feed("GET /later/1 HTTP/1.1\r\nHost: x\r\n\r\n");
  REQUIRE(f.held.size() == 1);
  f.session.reset();
  CHECK(f.held[0]);
  CHECK_FALSE(f.held[0].session_alive());
  f.held[0](Response::text(200, "too late"));
  CHECK(f.out.bytes.empty());
  CHECK(f.out.flushes.empty());
  // Dropping an unanswered one after the session is gone is silent as well.
  f.session = std::make_unique<Session>(f.router, Limits{}, f.out);
  f.session->feed("GET /later/2 HTTP/1.1\r\nHost: x\r\n\r\n");
  f.session.reset();
  f.held.clear();
  CHECK(f.out.bytes.empty());
}

TEST_CASE("http session: the end of input closes after the responses still owed") {
  DeferredFixture f;
  f.session->feed("GET /later/1 HTTP/1.1\r\nHost: x\r\n\r\n");
  f.session->end_of_input();
  CHECK(f.out.closes == 0);
  f.session->feed(gets(1, "/now/ignored"));
  f.held[0](Response::text(200, "last"));
  auto rs = parse_responses(f.out.bytes);
  REQUIRE(rs.size() == 1);
  CHECK(rs[0].body == "last");
  CHECK(f.out.closes == 1);
  CHECK(f.out.all_flushed());
}

namespace {
std::vector<std::string> bodies(std::string_view bytes) {
  std::vector<std::string> out;
  for (const auto& r : parse_responses(bytes)) out.push_back(r.body);
  return out;
}
using Bodies = std::vector<std::string>;
}  // namespace

TEST_CASE("http session: nothing is dispatched while the output is congested, and resume() answers in order") {
  DeferredFixture f;
  f.out.congestion = true;
  f.session->feed(gets(1, "/now/1") + gets(1, "/now/2"));
  CHECK(f.out.bytes.empty());
  CHECK(f.out.flushes.empty());
  CHECK(f.session->paused());
  CHECK(f.session->requests() == 0);
  CHECK_FALSE(f.session->mid_request());  // the session holds the input back, not the client
  // Input while paused is kept, not parsed: also a request split anywhere.
  const std::string third = gets(1, "/now/3");
  f.session->feed(third.substr(0, 7));
  f.session->feed(third.substr(7) + gets(1, "/now/4"));
  CHECK(f.out.bytes.empty());
  CHECK_FALSE(f.session->mid_request());
  // Still congested: resume() does nothing.
  f.session->resume();
  CHECK(f.out.bytes.empty());
  CHECK(f.out.flushes.empty());
  CHECK(f.session->paused());

  f.out.congestion = false;
  f.session->resume();
  CHECK(bodies(f.out.bytes) == Bodies{"/now/1", "/now/2", "/now/3", "/now/4"});
  CHECK(f.out.flushes.size() == 1);
  CHECK(f.out.all_flushed());
  CHECK_FALSE(f.session->paused());
  CHECK(f.session->requests() == 4);
  // Not paused: resume() is a no-op, and input flows as before.
  f.session->resume();
  CHECK(f.out.flushes.size() == 1);
  f.session->feed(gets(1, "/now/5"));
  CHECK(bodies(f.out.bytes).back() == "/now/5");
  CHECK(f.out.flushes.size() == 2);
}

TEST_CASE("http session: a response that congests the output still goes out whole, and later requests wait") {
  DeferredFixture f;
  f.session->feed(gets(1, "/congest/1") + gets(1, "/now/2") + gets(1, "/congest/3") + gets(1, "/now/4") +
                  "GET /now/5 HTTP/1.1\r\nHo");
  CHECK(bodies(f.out.bytes) == Bodies{"/congest/1"});
  CHECK(f.out.flushes.size() == 1);
  CHECK(f.out.all_flushed());
  CHECK(f.session->paused());
  CHECK(f.session->requests() == 1);

  // Each resume runs until a response congests the output again.
  f.out.congestion = false;
  f.session->resume();
  CHECK(bodies(f.out.bytes) == Bodies{"/congest/1", "/now/2", "/congest/3"});
  CHECK(f.out.flushes.size() == 2);
  CHECK(f.session->paused());
  CHECK_FALSE(f.session->mid_request());

  f.out.congestion = false;
  f.session->resume();
  CHECK(bodies(f.out.bytes) == Bodies{"/congest/1", "/now/2", "/congest/3", "/now/4"});
  CHECK(f.out.flushes.size() == 3);
  CHECK_FALSE(f.session->paused());
  CHECK(f.session->mid_request());  // the rest of /now/5 is the client's to send
  f.session->feed("st: x\r\n\r\n");
  CHECK(bodies(f.out.bytes).back() == "/now/5");
  CHECK(f.out.all_flushed());
  CHECK(f.out.closes == 0);
}

TEST_CASE("http session: deferred answers still go out while paused, in order") {
  DeferredFixture f;
  f.session->feed(gets(1, "/later/1") + gets(1, "/congest/2") + gets(1, "/now/3"));
  REQUIRE(f.held.size() == 1);
  CHECK(f.out.bytes.empty());  // /congest/2 waits behind /later/1, already dispatched
  CHECK(f.session->paused());
  CHECK(f.session->requests() == 2);
  f.held[0](Response::text(200, "/later/1"));
  CHECK(bodies(f.out.bytes) == Bodies{"/later/1", "/congest/2"});
  CHECK(f.out.all_flushed());
  CHECK(f.session->paused());
  f.out.congestion = false;
  f.session->resume();
  CHECK(bodies(f.out.bytes) == Bodies{"/later/1", "/congest/2", "/now/3"});
  CHECK(f.out.all_flushed());
}

TEST_CASE("http session: the end of input while paused answers the requests kept, then closes") {
  DeferredFixture f;
  f.session->feed(gets(1, "/congest/1") + gets(1, "/now/2"));
  f.session->feed(gets(1, "/later/3") + gets(1, "/now/4") + "GET /now/incomplete HTTP/1.1\r\nHost: x\r\n");
  f.session->end_of_input();
  CHECK(bodies(f.out.bytes) == Bodies{"/congest/1"});
  CHECK(f.out.closes == 0);
  f.session->feed(gets(1, "/now/ignored"));  // nothing after the end of input
  f.out.congestion = false;
  f.session->resume();
  CHECK(bodies(f.out.bytes) == Bodies{"/congest/1", "/now/2"});
  CHECK(f.out.closes == 0);  // /later/3 is owed
  REQUIRE(f.held.size() == 1);
  f.held[0](Response::text(200, "/later/3"));
  CHECK(bodies(f.out.bytes) == Bodies{"/congest/1", "/now/2", "/later/3", "/now/4"});
  CHECK(f.out.closes == 1);
  CHECK(f.out.all_flushed());
  CHECK_FALSE(f.out.wrote_after_close);
}

TEST_CASE("http session: a close or an error in the kept input takes effect on resume") {
  DeferredFixture f;
  f.session->feed(gets(1, "/congest/1") + "GET /now/2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + gets(1, "/now/3"));
  CHECK(f.session->paused());
  f.out.congestion = false;
  f.session->resume();
  auto rs = parse_responses(f.out.bytes);
  REQUIRE(rs.size() == 2);
  CHECK(rs[1].body == "/now/2");
  CHECK(rs[1].header("connection") == "close");
  CHECK(f.out.closes == 1);
  CHECK_FALSE(f.session->paused());

  DeferredFixture g;
  g.session->feed(gets(1, "/congest/1") + gets(1, "/now/2") + "BAD\r\n\r\n");
  g.out.congestion = false;
  g.session->resume();
  rs = parse_responses(g.out.bytes);
  REQUIRE(rs.size() == 3);
  CHECK(rs[1].body == "/now/2");
  CHECK(rs[2].status == 400);
  CHECK(g.out.closes == 1);
  CHECK(g.out.all_flushed());
}

TEST_CASE("http session: a handler that throws gets a 500") {
  const Router router = make_router();
  FakeOutput out;
  Session s(router, Limits{}, out);
  s.feed(gets(1, "/throw") + gets(1));
  auto rs = parse_responses(out.bytes);
  REQUIRE(rs.size() == 2);
  CHECK(rs[0].status == 500);
  CHECK(rs[1].status == 200);
}

TEST_CASE("http session: HEAD gets the GET headers and Content-Length without a body") {
  const Router router = make_router();
  FakeOutput out;
  Session s(router, Limits{}, out);
  s.feed("HEAD /plaintext HTTP/1.1\r\nHost: x\r\n\r\nGET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n");
  const std::string expected_tail = "Content-Length: 13\r\nContent-Type: text/plain\r\n\r\nHTTP/1.1 200 OK\r\n";
  CHECK(out.bytes.find(expected_tail) != std::string::npos);  // nothing between the HEAD head and the next response
  auto rs = parse_responses(out.bytes, {0});
  REQUIRE(rs.size() == 2);
  CHECK(rs[0].status == 200);
  CHECK(rs[0].header("Content-Length") == "13");
  CHECK(rs[0].body.empty());
  CHECK(rs[1].body == "Hello, World!");
}

TEST_CASE("http session: Date and Server headers are present and well-formed") {
  const Router router = make_router();
  FakeOutput out;
  Session s(router, Limits{}, out);
  const std::time_t before = std::time(nullptr);
  s.feed(gets(2));
  const std::time_t after = std::time(nullptr);
  auto rs = parse_responses(out.bytes);
  REQUIRE(rs.size() == 2);
  for (const auto& r : rs) {
    CHECK(r.header("Server") == "ringshard");
    CHECK(r.count("Server") == 1);
    CHECK(r.count("Date") == 1);
    CHECK(r.count("Content-Length") == 1);
    const auto date = r.header("Date");
    REQUIRE(date);
    REQUIRE(date->size() == 29);
    std::tm tm{};
    const char* end = ::strptime(date->c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    REQUIRE(end != nullptr);
    CHECK(*end == '\0');
    const std::time_t t = ::timegm(&tm);
    CHECK(t >= before);
    CHECK(t <= after);
  }
  char buf[29];
  format_http_date(784111777, buf);
  CHECK(std::string_view(buf, 29) == "Sun, 06 Nov 1994 08:49:37 GMT");
  format_http_date(0, buf);
  CHECK(std::string_view(buf, 29) == "Thu, 01 Jan 1970 00:00:00 GMT");
}

TEST_CASE("http session: Content-Length matches bodies of several sizes") {
  const Router router = make_router();
  FakeOutput out;
  Session s(router, Limits{}, out);
  const std::size_t sizes[] = {0, 1, 9, 10, 99, 100, 4096, 65535, 1000000};
  std::string in;
  for (std::size_t n : sizes) in += "GET /size?" + std::to_string(n) + " HTTP/1.1\r\nHost: x\r\n\r\n";
  s.feed(in);
  auto rs = parse_responses(out.bytes);
  REQUIRE(rs.size() == std::size(sizes));
  for (std::size_t i = 0; i < std::size(sizes); ++i) {
    CHECK(rs[i].header("Content-Length") == std::to_string(sizes[i]));
    CHECK(rs[i].body == std::string(sizes[i], 'x'));
  }
}

TEST_CASE("http session: 204 carries no Content-Length and no body") {
  Router router;
  router.del("/item", [](Request&) { return Response(204, "ignored"); });
  FakeOutput out;
  Session s(router, Limits{}, out);
  s.feed("DELETE /item HTTP/1.1\r\nHost: x\r\n\r\n");
  auto rs = parse_responses(out.bytes);
  REQUIRE(rs.size() == 1);
  CHECK(rs[0].status == 204);
  CHECK(rs[0].reason == "No Content");
  CHECK_FALSE(rs[0].header("Content-Length"));
  CHECK(rs[0].body.empty());
}

TEST_CASE("http session: request fields and case-insensitive header lookup") {
  Router router;
  Request seen;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string host, accept, missing = "unset", target, path, query, method;
  router.route(Method::options, "/q", [&](Request& req) {
    for (const auto& h : req.headers) headers.emplace_back(h.name, h.value);
    host = std::string(req.header("host").value_or("?"));
    accept = std::string(req.header("ACCEPT").value_or("?"));
    if (!req.header("X-Missing")) missing = "absent";
    target = std::string(req.target);
    path = std::string(req.path);
    query = std::string(req.query);
    method = std::string(req.method_name);
    seen.method = req.method;
    seen.http_minor = req.http_minor;
    seen.keep_alive = req.keep_alive;
    return Response(200);
  });
  router.get("/abs", [](Request& req) { return Response::text(200, std::string(req.path) + "|" + std::string(req.query)); });
  FakeOutput out;
  Session s(router, Limits{}, out);
  s.feed("OPTIONS /q?a=1&b=2#frag HTTP/1.1\r\nHost: example.org\r\naccept: text/html\r\nX-Empty:\r\n\r\n");
  s.feed("GET http://example.org/abs?z HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(host == "example.org");
  CHECK(accept == "text/html");
  CHECK(missing == "absent");
  CHECK(target == "/q?a=1&b=2#frag");
  CHECK(path == "/q");
  CHECK(query == "a=1&b=2");
  CHECK(method == "OPTIONS");
  CHECK(seen.method == Method::options);
  CHECK(seen.http_minor == 1);
  CHECK(seen.keep_alive);
  REQUIRE(headers.size() == 3);
  CHECK(headers[0] == std::pair<std::string, std::string>{"Host", "example.org"});
  CHECK(headers[1] == std::pair<std::string, std::string>{"accept", "text/html"});
  CHECK(headers[2] == std::pair<std::string, std::string>{"X-Empty", ""});
  auto rs = parse_responses(out.bytes);
  REQUIRE(rs.size() == 2);
  CHECK(rs[1].body == "/abs|z");
  CHECK(iequals("Content-Length", "content-LENGTH"));
  CHECK_FALSE(iequals("Content-Length", "Content-Lengt"));
}

TEST_CASE("http session: Expect: 100-continue behind a deferred response comes after it") {
  Router router;
  std::vector<Responder> held;
  router.get("/later", [&](Request&, Responder r) { held.push_back(std::move(r)); });
  router.post("/echo", [](Request& req) { return Response::text(200, std::move(req.body)); });
  FakeOutput out;
  Session s(router, Limits{}, out);
  s.feed("GET /later HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
  CHECK(out.bytes.empty());
  REQUIRE(held.size() == 1);
  held[0](Response::text(200, "first"));
  auto rs = parse_responses(out.bytes);
  REQUIRE(rs.size() == 2);
  CHECK(rs[0].body == "first");
  CHECK(rs[1].status == 100);
  s.feed("ok");
  rs = parse_responses(out.bytes);
  REQUIRE(rs.size() == 3);
  CHECK(rs[2].body == "ok");
}

TEST_CASE("http session: an Upgrade request is answered, then the connection closes") {
  const Router router = make_router();
  FakeOutput out;
  Session s(router, Limits{}, out);
  s.feed("GET /plaintext HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\nPRI * HTTP/2.0\r\n\r\n");
  auto rs = parse_responses(out.bytes);
  REQUIRE(rs.size() == 1);
  CHECK(rs[0].status == 200);
  CHECK(rs[0].header("Connection") == "close");
  CHECK(out.closes == 1);
}

TEST_CASE("http router: exact, prefix and longest-prefix matches") {
  Router r;
  r.get("/a", [](Request&) { return Response(200, "exact"); });
  r.get("/a/*", [](Request&) { return Response(200, "a-prefix"); });
  r.get("/a/b/*", [](Request&) { return Response(200, "ab-prefix"); });
  r.get("*", [](Request&) { return Response(200, "any"); });
  r.get("/a", [](Request&) { return Response(200, "exact-replaced"); });
  auto body = [&](std::string_view path) {
    const Router::Match m = r.find(Method::get, path);
    REQUIRE(m.status == 0);
    REQUIRE(m.handler);
    Request req;
    return (*m.handler)(req).body;
  };
  CHECK(body("/a") == "exact-replaced");
  CHECK(body("/a/") == "a-prefix");
  CHECK(body("/a/x") == "a-prefix");
  CHECK(body("/a/b/c") == "ab-prefix");
  CHECK(body("/zzz") == "any");
  CHECK(r.find(Method::post, "/a").status == 405);
  CHECK(r.find(Method::post, "/a").allow == "GET, HEAD");
  CHECK(r.find(Method::head, "/a").handler != nullptr);
  CHECK_THROWS_AS(r.get("/x", [](Request&) { return Response(200); }).route(Method::other, "/y", Router::Handler{}),
                  std::invalid_argument);
  Router empty;
  CHECK(empty.find(Method::get, "/").status == 404);
}

TEST_CASE("http response: reason phrases and helpers") {
  CHECK(reason_phrase(200) == "OK");
  CHECK(reason_phrase(413) == "Content Too Large");
  CHECK(reason_phrase(431) == "Request Header Fields Too Large");
  CHECK(reason_phrase(599) == "Unknown");
  Response j = Response::json(201, "{}");
  CHECK(j.status == 201);
  CHECK(j.content_type == "application/json");
  Response t = Response::text(200, "x", "text/html").header("X-A", "1").header("Connection", "close");
  CHECK(t.headers.size() == 2);
  // A Connection header given by the handler is not sent; `close` is the way.
  Router router;
  router.get("/", [](Request&) { return Response::text(200, "x").header("X-A", "1").header("Content-Length", "99"); });
  FakeOutput out;
  Session s(router, Limits{}, out);
  s.feed("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  auto rs = parse_responses(out.bytes);
  REQUIRE(rs.size() == 1);
  CHECK(rs[0].header("X-A") == "1");
  CHECK(rs[0].count("Content-Length") == 1);
  CHECK(rs[0].header("Content-Length") == "1");
}
