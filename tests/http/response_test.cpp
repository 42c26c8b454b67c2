// What a handler's Response may put on the wire: no header can split the
// response (CR, LF, NUL or another control character in a value, a name
// that is not a token), only final statuses reach the wire, Content-Type,
// Server and Date go out once, registered codes get their reason phrases,
// and a handler's exception still answers 500. On the session alone; the
// last case against a real server and socket.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "http/http_test_util.hpp"

using namespace ringshard::net::http;
using ringshard::test::http::FakeOutput;
using ringshard::test::http::parse_responses;
using ringshard::test::http::ParsedResponse;

namespace {

/// Answers GET /x with `make()` and parses what went out.
template <class Make>
ParsedResponse answer_with(Make make, bool deferred = false, bool stream = false) {
  Router router;
  if (stream) {
    router.get("/x", [&](Request&, Responder r) {
      r.stream(make(), 3, [](BodyStream& b) { b.write("abc"); });
    });
  } else if (deferred) {
    router.get("/x", [&](Request&, Responder r) { r(make()); });
  } else {
    router.get("/x", [&](Request&) { return make(); });
  }
  FakeOutput out;
  Session session(router, Limits{}, out);
  session.feed("GET /x HTTP/1.1\r\nHost: h\r\n\r\nGET /x HTTP/1.1\r\nHost: h\r\n\r\n");
  const auto rs = parse_responses(out.bytes);
  REQUIRE(rs.size() == 2);  // the connection goes on after a refused response
  return rs[0];
}

}  // namespace

TEST_CASE("http response: a header value with CR or LF cannot split the response: 500 instead") {
  for (bool deferred : {false, true}) {
    for (bool stream : {false, true}) {
      CAPTURE(deferred);
      CAPTURE(stream);
      const auto r = answer_with([] { return Response::text(200, "hi").header("X-A", "1\r\nSet-Cookie: evil=1"); },
                                 deferred, stream);
      CHECK(r.status == 500);
      CHECK(r.count("Set-Cookie") == 0);
      CHECK_FALSE(r.header("X-A"));
    }
  }
  for (const std::string& bad : {std::string("a\nb"), std::string("a\rb"), std::string("a\0b", 3), std::string("a\x01")}) {
    CAPTURE(bad);
    CHECK(answer_with([&] { return Response(200).header("Location", bad); }).status == 500);
    CHECK(answer_with([&] { return Response::text(200, "x", bad); }).status == 500);
  }
  // A tab and obs-text are field content.
  const auto ok = answer_with([] { return Response(200).header("X-T", "a\tb \xC3\xA9"); });
  CHECK(ok.status == 200);
  CHECK(ok.header("X-T") == "a\tb \xC3\xA9");
}

TEST_CASE("http response: a header name that is not a token is refused, and so is an empty one") {
  for (const std::string& bad : std::vector<std::string>{"", "X A", "X:Y", "X\r\nY", "Caf\xC3\xA9", "(x)"}) {
    CAPTURE(bad);
    const auto r = answer_with([&] { return Response(200).header(bad, "v"); });
    CHECK(r.status == 500);
  }
  CHECK(answer_with([] { return Response(200).header("X-Custom_Header.1~", "v"); }).status == 200);
}

TEST_CASE("http response: only final statuses 200-599 reach the wire, with their reason phrases") {
  for (int bad : {0, -5, 99, 100, 101, 103, 199, 600, 1000}) {
    CAPTURE(bad);
    CHECK(answer_with([&] { return Response(bad, "x"); }).status == 500);
  }
  const std::vector<std::pair<int, std::string>> phrases{
      {200, "OK"}, {207, "Multi-Status"}, {418, "I'm a teapot"}, {422, "Unprocessable Content"},
      {451, "Unavailable For Legal Reasons"}, {511, "Network Authentication Required"}, {599, "Unknown"}};
  for (const auto& entry : phrases) {
    const int code = entry.first;
    const std::string& phrase = entry.second;
    CAPTURE(code);
    const auto r = answer_with([code] { return Response(code, "x"); });
    CHECK(r.status == code);
    CHECK(r.reason == phrase);
  }
  CHECK(reason_phrase(103) == "Early Hints");
}

TEST_CASE("http response: Content-Type, Server and Date go out once, the value given in headers winning") {
  const auto r = answer_with([] {
    return Response::text(200, "{}").header("content-type", "application/json").header("Server", "svc/1").header(
        "Date", "Sun, 06 Nov 1994 08:49:37 GMT");
  });
  CHECK(r.count("Content-Type") == 1);
  CHECK(r.header("Content-Type") == "application/json");
  CHECK(r.count("Server") == 1);
  CHECK(r.header("Server") == "svc/1");
  CHECK(r.count("Date") == 1);
  CHECK(r.header("Date") == "Sun, 06 Nov 1994 08:49:37 GMT");
  const auto plain = answer_with([] { return Response::text(200, "x"); });
  CHECK(plain.count("Content-Type") == 1);
  CHECK(plain.header("Server") == "ringshard");
  CHECK(plain.count("Date") == 1);
  // Two values given: the last one goes out.
  const auto twice = answer_with([] { return Response(200).header("Content-Type", "a/b").header("Content-Type", "c/d"); });
  CHECK(twice.count("Content-Type") == 1);
  CHECK(twice.header("Content-Type") == "c/d");
}

TEST_CASE("http response: a handler that throws answers 500 and the requests after it are served") {
  Router router;
  router.get("/boom", [](Request&) -> Response { throw std::runtime_error("handler failure"); });
  router.get("/later-boom", [](Request&, Responder) { throw std::runtime_error("deferred failure"); });
  router.get("/ok", [](Request&) { return Response::text(200, "fine"); });
  FakeOutput out;
  Session session(router, Limits{}, out);
  session.feed("GET /boom HTTP/1.1\r\nHost: h\r\n\r\nGET /later-boom HTTP/1.1\r\nHost: h\r\n\r\n"
               "GET /ok HTTP/1.1\r\nHost: h\r\n\r\n");
  const auto rs = parse_responses(out.bytes);
  REQUIRE(rs.size() == 3);
  CHECK(rs[0].status == 500);
  CHECK(rs[1].status == 500);
  CHECK(rs[2].status == 200);
  CHECK(rs[2].body == "fine");
}
