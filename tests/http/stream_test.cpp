// Streamed response bodies (Responder::stream, BodyStream) on the session
// alone: framing (Content-Length, chunked, HTTP/1.0 until close, HEAD),
// order with the responses around them, the producer paced by congestion,
// and streams that cannot be completed.
#include <doctest/doctest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "http/http_test_util.hpp"

using namespace ringshard::net::http;
using ringshard::net::SharedBuffer;
using ringshard::test::http::FakeOutput;
using ringshard::test::http::gets;
using ringshard::test::http::parse_responses;

namespace {

// Decodes a chunked body at the start of `s`; returns the body and removes
// the chunks (and the last chunk) from `s`. Fails the test on bad framing.
std::string dechunk(std::string_view& s) {
  std::string body;
  for (;;) {
    const auto eol = s.find("\r\n");
    REQUIRE(eol != std::string_view::npos);
    const std::size_t size = std::stoul(std::string(s.substr(0, eol)), nullptr, 16);
    s.remove_prefix(eol + 2);
    if (size == 0) {
      REQUIRE(s.substr(0, 2) == "\r\n");
      s.remove_prefix(2);
      return body;
    }
    REQUIRE(s.size() >= size + 2);
    body.append(s.substr(0, size));
    REQUIRE(s.substr(size, 2) == "\r\n");
    s.remove_prefix(size + 2);
  }
}

// The head of the response at the start of `s` (removed from `s`).
std::string take_head(std::string_view& s) {
  const auto end = s.find("\r\n\r\n");
  REQUIRE(end != std::string_view::npos);
  std::string head(s.substr(0, end + 4));
  s.remove_prefix(end + 4);
  return head;
}

bool has(const std::string& head, std::string_view line) { return head.find(line) != std::string::npos; }

/// Routes: /n/* answers at once with its path; /stream?N writes N bytes in
/// pieces of 1000 while ready(), with Content-Length; /chunked writes three
/// pieces and ends; /later parks its Responder.
struct Fixture {
  Router router;
  FakeOutput out;
  std::vector<Responder> held;
  std::vector<BodyStream> streams;
  int producer_calls = 0;
  std::unique_ptr<Session> session;

  Fixture() {
    router.get("/n/*", [](Request& req) { return Response::text(200, std::string(req.path)); });
    router.get("/later", [this](Request&, Responder r) { held.push_back(std::move(r)); });
    router.get("/stream", [this](Request& req, Responder r) {
      const std::size_t n = std::stoul(std::string(req.query));
      r.stream(Response::text(200, {}), n, [this, n](BodyStream& body) {
        ++producer_calls;
        while (body.ready() && body.written() < n) {
          const std::size_t k = std::min<std::size_t>(1000, n - body.written());
          CHECK(body.write(std::string(k, static_cast<char>('a' + body.written() / 1000 % 26))));
        }
      });
    });
    router.get("/chunked", [this](Request&, Responder r) {
      r.stream(Response::text(200, {}, "text/csv"), std::nullopt, [this](BodyStream& body) {
        ++producer_calls;
        body.write("one,");
        body.write(SharedBuffer::copy_of(std::string_view("two,")));
        body.write("three");
        body.end();
      });
    });
    session = std::make_unique<Session>(router, Limits{}, out);
  }
};

std::string expected_stream_body(std::size_t n) {
  std::string s;
  while (s.size() < n) s += std::string(std::min<std::size_t>(1000, n - s.size()), static_cast<char>('a' + s.size() / 1000 % 26));
  return s;
}

}  // namespace

TEST_CASE("http stream: a body with a known length goes out with Content-Length, and the next request after it") {
  Fixture f;
  f.session->feed(gets(1, "/stream?2500") + gets(1, "/n/after"));
  const auto rs = parse_responses(f.out.bytes);
  REQUIRE(rs.size() == 2);
  CHECK(rs[0].status == 200);
  CHECK(rs[0].header("Content-Length") == "2500");
  CHECK_FALSE(rs[0].header("Transfer-Encoding"));
  CHECK(rs[0].body == expected_stream_body(2500));
  CHECK(rs[1].body == "/n/after");
  CHECK(f.producer_calls == 1);
  CHECK(f.out.all_flushed());
  CHECK(f.out.closes == 0);
  CHECK(f.session->pending() == 0);
}

TEST_CASE("http stream: without a length the body is chunked and end() writes the last chunk") {
  Fixture f;
  f.session->feed(gets(1, "/chunked") + gets(1, "/n/after"));
  std::string_view s = f.out.bytes;
  const std::string head = take_head(s);
  CHECK(has(head, "HTTP/1.1 200 OK\r\n"));
  CHECK(has(head, "Transfer-Encoding: chunked\r\n"));
  CHECK(has(head, "Content-Type: text/csv\r\n"));
  CHECK_FALSE(has(head, "Content-Length"));
  CHECK(dechunk(s) == "one,two,three");
  CHECK(f.out.shared_writes == 1);
  const auto rest = parse_responses(s);
  REQUIRE(rest.size() == 1);
  CHECK(rest[0].body == "/n/after");
  CHECK(f.out.closes == 0);
}

TEST_CASE("http stream: the producer writes while the output takes more, and resumes when it drained") {
  Fixture f;
  f.out.window = 4000;  // congested past 4000 bytes not yet drained
  f.session->feed(gets(1, "/stream?20000") + gets(1, "/n/after"));
  CHECK(f.producer_calls == 1);
  CHECK(f.out.bytes.size() < 6000);  // stopped at the window, not 20,000
  CHECK(f.out.congested());
  CHECK(f.out.all_flushed());
  CHECK(f.session->requests() == 1);  // /n/after waits: not dispatched while a stream is in progress
  CHECK(f.session->paused());
  REQUIRE_FALSE(f.out.input_pauses.empty());
  CHECK(f.out.input_pauses.back() == true);  // the connection is asked to stop reading meanwhile
  int rounds = 0;
  while (f.session->pending() > 0 && rounds < 100) {
    f.out.drain_all();
    f.session->resume();
    CHECK(f.out.all_flushed());
    ++rounds;
  }
  CHECK(rounds >= 4);
  CHECK(f.producer_calls == rounds + 1);
  const auto rs = parse_responses(f.out.bytes);
  REQUIRE(rs.size() == 2);
  CHECK(rs[0].body == expected_stream_body(20000));
  CHECK(rs[1].body == "/n/after");
  CHECK(f.session->requests() == 2);
  CHECK(f.out.input_pauses.back() == false);
}

TEST_CASE("http stream: behind a response still owed, writes are kept until its turn, then go out in order") {
  Fixture f;
  f.session->feed(gets(1, "/later") + gets(1, "/later"));
  REQUIRE(f.held.size() == 2);
  // The second request streams; its turn has not come.
  BodyStream body = f.held[1].stream(Response::text(200, {}), 10);
  CHECK(body.alive());
  CHECK_FALSE(body.ready());
  CHECK(body.write("01234"));
  CHECK(f.out.bytes.empty());
  f.held[0](Response::text(200, "first"));
  CHECK(body.ready());  // its turn came: head and the kept bytes went out
  CHECK(body.write("56789"));  // the declared length: the stream has ended
  CHECK_FALSE(body.alive());
  CHECK_FALSE(body.write("x"));
  const auto rs = parse_responses(f.out.bytes);
  REQUIRE(rs.size() == 2);
  CHECK(rs[0].body == "first");
  CHECK(rs[1].body == "0123456789");
  CHECK(f.out.all_flushed());
  CHECK(f.out.closes == 0);
}

TEST_CASE("http stream: a HEAD request gets the head only and the producer never runs") {
  Fixture f;
  f.session->feed("HEAD /stream?5000 HTTP/1.1\r\nHost: x\r\n\r\n" + gets(1, "/n/after"));
  const auto rs = parse_responses(f.out.bytes, {0});
  REQUIRE(rs.size() == 2);
  CHECK(rs[0].header("Content-Length") == "5000");
  CHECK(rs[0].body.empty());
  CHECK(rs[1].body == "/n/after");
  CHECK(f.producer_calls == 0);
}

TEST_CASE("http stream: to an HTTP/1.0 client a body without a length ends with the connection") {
  Fixture f;
  f.session->feed("GET /chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  std::string_view s = f.out.bytes;
  const std::string head = take_head(s);
  CHECK(has(head, "HTTP/1.0 200 OK\r\n"));
  CHECK(has(head, "Connection: close\r\n"));
  CHECK_FALSE(has(head, "Transfer-Encoding"));
  CHECK_FALSE(has(head, "Content-Length"));
  CHECK(s == "one,two,three");
  CHECK(f.out.closes == 1);
}

TEST_CASE("http stream: a stream that cannot be completed closes the connection after what was written") {
  SUBCASE("end() short of the declared length") {
    Fixture f;
    f.session->feed(gets(1, "/later") + gets(1, "/n/never"));
    BodyStream body = f.held[0].stream(Response::text(200, {}), 100);
    CHECK(body.write("short"));
    body.end();
    std::string_view s = f.out.bytes;
    CHECK(has(take_head(s), "Content-Length: 100\r\n"));
    CHECK(s == "short");
    CHECK(f.out.closes == 1);
  }
  SUBCASE("every handle dropped, no producer, not ended") {
    Fixture f;
    f.session->feed(gets(1, "/later"));
    {
      BodyStream body = f.held[0].stream(Response::text(200, {}));
      BodyStream copy = body;
      CHECK(body.write("part"));
    }
    std::string_view s = f.out.bytes;
    CHECK(has(take_head(s), "Transfer-Encoding: chunked\r\n"));
    CHECK(s == "4\r\npart\r\n");  // no last chunk: the client sees the body cut short
    CHECK(f.out.closes == 1);
  }
  SUBCASE("a producer that writes nothing while no handle is kept") {
    Fixture f;
    f.session->feed(gets(1, "/later"));
    int calls = 0;
    (void)f.held[0].stream(Response::text(200, {}), std::nullopt, [&calls](BodyStream&) { ++calls; });
    // Once while stream()'s result was alive, once more when it was dropped
    // (no drain would ever call it again): no progress, nobody else to write.
    CHECK(calls == 2);
    CHECK(f.out.closes == 1);
  }
  SUBCASE("a producer that throws") {
    Fixture f;
    f.session->feed(gets(1, "/later"));
    (void)f.held[0].stream(Response::text(200, {}), 10, [](BodyStream& b) {
      b.write("abc");
      throw std::runtime_error("producer failed");
    });
    CHECK(f.out.closes == 1);
  }
}

TEST_CASE("http stream: a producer waiting for data elsewhere keeps a handle and writes when it comes") {
  Fixture f;
  f.out.window = 1000;
  f.session->feed(gets(1, "/later") + gets(1, "/n/after"));
  std::optional<BodyStream> kept;
  int calls = 0;
  (void)f.held[0].stream(Response::text(200, {}), std::nullopt, [&](BodyStream& b) {
    ++calls;
    if (!kept) kept = b;  // nothing to write yet
  });
  CHECK(calls == 1);
  CHECK(f.out.closes == 0);
  REQUIRE(kept);
  CHECK(kept->ready());
  CHECK(kept->write("data from elsewhere"));
  CHECK(f.out.all_flushed());  // a write from outside goes out at once
  CHECK(calls == 2);            // it wrote and the output takes more: asked again
  CHECK(kept->write(std::string(2000, 'z')));  // past the window
  CHECK_FALSE(kept->ready());
  const int before = calls;
  f.out.drain_all();
  f.session->resume();
  CHECK(calls == before + 1);  // drained: asked for more
  kept->end();
  std::string_view s = f.out.bytes;
  take_head(s);
  CHECK(dechunk(s) == "data from elsewhere" + std::string(2000, 'z'));
  const auto rest = parse_responses(s);
  REQUIRE(rest.size() == 1);
  CHECK(rest[0].body == "/n/after");
  CHECK(f.out.closes == 0);
}

TEST_CASE("http stream: once the session is gone, a stream writes nothing and its producer never runs") {
  Fixture f;
  f.session->feed(gets(1, "/later"));
  Responder r = std::move(f.held[0]);
  f.session.reset();
  int calls = 0;
  BodyStream body = r.stream(Response::text(200, {}), 10, [&calls](BodyStream&) { ++calls; });
  CHECK_FALSE(body.alive());
  CHECK_FALSE(body.ready());
  CHECK_FALSE(body.write("x"));
  body.end();
  CHECK(calls == 0);
}
