// The routing API over real sockets: path templates and their parameters,
// 404/405 from the templates, percent-decoding (an encoded slash stays in its
// segment, invalid escapes are 400), query parameters, the error hook,
// middleware, the response deadline (504), JSON and redirects.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "http/http_test_util.hpp"
#include "net/net_support.hpp"
#include "ringshard/net/http/http.hpp"
#include "ringshard/net/http/json.hpp"

using namespace ringshard;
using namespace std::chrono_literals;
namespace http = ringshard::net::http;
using test::Fd;
using test::http::ParsedResponse;

namespace {

struct Server {
  Runtime rt;
  net::ListenerHandle listener;
  explicit Server(std::shared_ptr<http::Router> router, http::ServerOptions o = {}) : rt(test::opts(1)) {
    rt.start();
    listener = http::serve(rt, net::ListenOptions{}, std::move(router), o);
  }
  http::HttpStats& stats() { return http::stats_of(rt.shard(0)); }
};

// Where the response starting at `at` ends in `s`, or npos while incomplete
// (framed by Content-Length; none for a HEAD).
std::size_t response_end(std::string_view s, std::size_t at, bool head) {
  const std::size_t end = s.find("\r\n\r\n", at);
  if (end == std::string_view::npos) return end;
  const std::string_view h = s.substr(at, end - at);
  std::size_t length = 0;
  if (const std::size_t cl = h.find("\r\nContent-Length: "); cl != std::string_view::npos && !head)
    length = std::stoul(std::string(h.substr(cl + 18, h.find("\r\n", cl + 2) - cl - 18)));
  return end + 4 + length <= s.size() ? end + 4 + length : std::string_view::npos;
}

struct Client {
  Fd fd;
  std::string buf;
  explicit Client(const Server& s) : fd(test::connect_to(s.listener.address())) {}

  void send(std::string_view bytes) { REQUIRE(test::write_all(fd.get(), bytes)); }

  /// The next `n` responses (those at `head_at` answer HEAD requests).
  std::vector<ParsedResponse> read(std::size_t n, std::vector<std::size_t> head_at = {},
                                   std::chrono::milliseconds limit = 3000ms) {
    const auto deadline = Clock::now() + limit;
    for (;;) {
      std::size_t at = 0, got = 0;
      while (got < n) {
        bool head = false;
        for (std::size_t i : head_at) head |= i == got;
        const std::size_t end = response_end(buf, at, head);
        if (end == std::string::npos) break;
        at = end;
        ++got;
      }
      if (got == n) {
        auto rs = test::http::parse_responses(std::string_view(buf).substr(0, at), head_at);
        buf.erase(0, at);
        return rs;
      }
      pollfd p{fd.get(), POLLIN, 0};
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      REQUIRE_MESSAGE(left > 0, "no complete response in time; got: " << buf);
      REQUIRE(::poll(&p, 1, static_cast<int>(left)) >= 0);
      char chunk[16384];
      const ssize_t r = ::recv(fd.get(), chunk, sizeof chunk, MSG_DONTWAIT);
      if (r == 0) FAIL("the server closed the connection; got: " << buf);
      if (r > 0) buf.append(chunk, static_cast<std::size_t>(r));
    }
  }
  ParsedResponse get(std::string_view target, std::string_view extra = {}) {
    send("GET " + std::string(target) + " HTTP/1.1\r\nHost: x\r\n" + std::string(extra) + "\r\n");
    return read(1).at(0);
  }
};

std::string req(std::string_view method, std::string_view target, std::string_view extra = {},
                std::string_view body = {}) {
  std::string s = std::string(method) + " " + std::string(target) + " HTTP/1.1\r\nHost: x\r\n";
  if (!body.empty()) s += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  s += extra;
  s += "\r\n";
  s += body;
  return s;
}

std::shared_ptr<http::Router> link_routes() {
  auto r = std::make_shared<http::Router>();
  r->get("/links/{id}", [](http::Request& q) { return http::Response::text(200, "link " + std::string(q.param("id"))); });
  r->del("/links/{id}", [](http::Request& q) { return http::Response::text(200, "deleted " + std::string(q.param("id"))); });
  r->get("/links/{id}/stats",
         [](http::Request& q) { return http::Response::text(200, "stats " + std::string(q.param("id"))); });
  r->get("/links/new", [](http::Request&) { return http::Response::text(200, "the literal segment"); });
  r->get("/links/exact/stats", [](http::Request&) { return http::Response::text(200, "the exact route"); });
  r->get("/users/{user}/links/{id}", [](http::Request& q) {
    return http::Response::text(200, std::string(q.param("user")) + "," + std::string(q.param("id")) + "," +
                                         std::to_string(q.params().size()) + "," + std::string(q.param("nope")));
  });
  r->get("/files/*", [](http::Request& q) { return http::Response::text(200, "file " + std::string(q.path)); });
  r->get("/search", [](http::Request& q) {
    std::string out;
    for (const char* name : {"q", "n", "flag", "missing", "a b"}) {
      const auto v = q.query_param(name);
      out += v ? std::string(*v) : std::string("<absent>");
      out += '|';
    }
    return http::Response::text(200, std::move(out));
  });
  r->get("/raw/{x}", [](http::Request& q) {
    return http::Response::text(200, std::string(q.path) + " " + std::string(q.raw_path));
  });
  return r;
}

}  // namespace

TEST_CASE("http api: template routes give their parameters, and literal segments and exact routes win") {
  Server s(link_routes());
  Client c(s);
  CHECK(c.get("/links/abc").body == "link abc");
  CHECK(c.get("/links/abc/stats").body == "stats abc");
  CHECK(c.get("/links/new").body == "the literal segment");
  CHECK(c.get("/links/new/stats").body == "stats new");  // no literal route there: the template
  CHECK(c.get("/links/exact/stats").body == "the exact route");
  CHECK(c.get("/users/u1/links/l2").body == "u1,l2,2,");
  CHECK(c.get("/links/abc?x=1").body == "link abc");
  CHECK(c.get("/files/a/b").body == "file /files/a/b");
  // A parameter takes one non-empty segment.
  CHECK(c.get("/links/").status == 404);
  CHECK(c.get("/links//stats").status == 404);
  CHECK(c.get("/links/a/b").status == 404);
  CHECK(c.get("/links/a/stats/more").status == 404);
  CHECK(c.get("/links").status == 404);
}

TEST_CASE("http api: 404 and 405 with an Allow header come from the templates") {
  Server s(link_routes());
  Client c(s);
  c.send(req("PUT", "/links/abc", {}, "x") + req("POST", "/links/abc/stats", {}, "x") + req("GET", "/nowhere/x") +
         req("HEAD", "/links/abc") + req("DELETE", "/links/abc"));
  const auto rs = c.read(5, {3});
  CHECK(rs[0].status == 405);
  CHECK(rs[0].header("Allow") == "GET, DELETE, HEAD");
  CHECK(rs[1].status == 405);
  CHECK(rs[1].header("Allow") == "GET, HEAD");
  CHECK(rs[2].status == 404);
  CHECK(rs[3].status == 200);
  CHECK(rs[3].header("Content-Length") == "8");
  CHECK(rs[4].body == "deleted abc");
}

TEST_CASE("http router: several templates matching a path allow the union of their methods") {
  http::Router r;
  r.get("/a/{x}", [](http::Request&) { return http::Response(200); });
  r.put("/a/{x}", [](http::Request&) { return http::Response(200); });
  r.post("/a/lit", [](http::Request&) { return http::Response(200); });
  http::Request q;
  REQUIRE(q.set_path("/a/lit"));
  CHECK(r.find(http::Method::post, q).status == 0);
  CHECK(r.find(http::Method::get, q).status == 0);  // the literal lacks GET: the template has it
  const auto m = r.find(http::Method::del, q);
  CHECK(m.status == 405);
  CHECK(m.allow == "GET, HEAD, POST, PUT");
  CHECK(r.find(http::Method::del, "/a/other").allow == "GET, PUT, HEAD");
  CHECK_THROWS_AS(r.get("/b/{x", [](http::Request&) { return http::Response(200); }), std::invalid_argument);
  CHECK_THROWS_AS(r.get("/b/x{y}", [](http::Request&) { return http::Response(200); }), std::invalid_argument);
  CHECK_THROWS_AS(r.get("/b/{y}/{y}", [](http::Request&) { return http::Response(200); }), std::invalid_argument);
  CHECK_THROWS_AS(r.get("/b/{y}/*", [](http::Request&) { return http::Response(200); }), std::invalid_argument);
  CHECK_THROWS_AS(r.get("/a/{y}", [](http::Request&) { return http::Response(200); }), std::invalid_argument);
  CHECK_THROWS_AS(r.get("/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}", [](http::Request&) { return http::Response(200); }),
                  std::invalid_argument);
}

TEST_CASE("http api: the path is decoded once, and an encoded slash stays inside its segment") {
  Server s(link_routes());
  Client c(s);
  CHECK(c.get("/links/a%20b").body == "link a b");
  CHECK(c.get("/links/a%2Fb").body == "link a/b");            // one segment, not /links/a/b
  CHECK(c.get("/links/a%2fb/stats").body == "stats a/b");
  CHECK(c.get("/links/x%2Fstats").body == "link x/stats");    // not /links/{id}/stats
  CHECK(c.get("/links%2Fabc").status == 404);                 // not /links/abc
  CHECK(c.get("/links/%2561").body == "link %61");           // decoded once only
  CHECK(c.get("/%6Cinks/%41").body == "link A");             // literal segments are matched decoded
  CHECK(c.get("/links/exact%2Fstats").body == "link exact/stats");  // an exact route is not matched either
  CHECK(c.get("/raw/a%2Bb+c").body == "/raw/a+b+c /raw/a%2Bb+c");  // '+' is no space in a path
  CHECK(c.get("/files/a%2Fb").body == "file /files/a/b");     // a prefix route sees the decoded path
}

TEST_CASE("http api: invalid escapes are answered 400, and the connection carries on") {
  Server s(link_routes());
  Client c(s);
  for (const char* target : {"/links/%zz", "/links/%4", "/links/a%", "/links/%00", "/search?q=%4g", "/search?q=%"}) {
    CAPTURE(target);
    CHECK(c.get(target).status == 400);
  }
  CHECK(c.get("/links/ok").body == "link ok");
}

TEST_CASE("http api: query parameters are percent-decoded with + as a space") {
  Server s(link_routes());
  Client c(s);
  CHECK(c.get("/search?q=a+b%26c%3D&n=10&flag&a+b=sp").body == "a b&c=|10||<absent>|sp|");
  CHECK(c.get("/search?%71=first&q=second").body == "first|<absent>|<absent>|<absent>|<absent>|");
  CHECK(c.get("/search").body == "<absent>|<absent>|<absent>|<absent>|<absent>|");
  CHECK(c.get("/search?&&n=&q=%E2%82%AC").body == "\xE2\x82\xAC||<absent>|<absent>|<absent>|");
}

TEST_CASE("http request: a decoded query value stays valid across lookups, and the decoding helpers") {
  http::Request q;
  q.query = "a=x%20y&b=1+2&a=z";
  const auto a = q.query_param("a");
  const auto b = q.query_param("b");
  const auto a2 = q.query_param("a");
  REQUIRE(a);
  REQUIRE(b);
  CHECK(*a == "x y");
  CHECK(*b == "1 2");
  CHECK(a2 == a);
  CHECK(*a == "x y");
  std::string out;
  CHECK(http::percent_decode("a%2Fb+c%7e", out));
  CHECK(out == "a/b+c~");
  out.clear();
  CHECK(http::percent_decode("a+b", out, true));
  CHECK(out == "a b");
  out.clear();
  CHECK_FALSE(http::percent_decode("ok%g1", out));
  CHECK(out == "ok");
  CHECK(http::valid_escapes("%41%2f-100"));
  CHECK_FALSE(http::valid_escapes("100%"));
  CHECK_FALSE(http::valid_escapes("%4"));
  CHECK_FALSE(http::valid_escapes("%zz"));
}

TEST_CASE("http api: the error hook makes the bodies of 404, 405, 413 and 500") {
  auto r = link_routes();
  r->get("/throws", [](http::Request&) -> http::Response { throw std::runtime_error("boom"); });
  r->get("/dropped", [](http::Request&, http::Responder) {});
  r->post("/upload", [](http::Request& q) { return http::Response::text(200, std::to_string(q.body.size())); });
  std::atomic<int> hook_saw_upload{0};
  r->on_error([&](int status, const http::Request& q) {
    if (status == 413 && q.path == "/upload") ++hook_saw_upload;
    http::Response e = http::json_response(status, {{"error", http::reason_phrase(status)}, {"path", q.path}});
    e.status = 200;  // ignored: the status stays the server's
    return e.header("X-Error", std::to_string(status));
  });
  http::ServerOptions o;
  o.limits.max_body_bytes = 16;
  Server s(r, o);
  Client c(s);
  c.send(req("GET", "/nowhere") + req("PUT", "/links/x", {}, "b") + req("GET", "/throws") + req("GET", "/dropped") +
         req("GET", "/links/%zz") + req("GET", "/links/fine"));
  const auto rs = c.read(6);
  CHECK(rs[0].status == 404);
  CHECK(rs[0].header("Content-Type") == "application/json");
  CHECK(rs[0].body == R"({"error":"Not Found","path":"/nowhere"})");
  CHECK(rs[1].status == 405);
  CHECK(rs[1].header("Allow") == "GET, DELETE, HEAD");
  CHECK(rs[1].header("X-Error") == "405");
  CHECK(rs[2].status == 500);
  CHECK(rs[2].body == R"({"error":"Internal Server Error","path":"/throws"})");
  CHECK(rs[3].status == 500);
  CHECK(rs[3].body == R"({"error":"Internal Server Error","path":"/dropped"})");
  CHECK(rs[4].status == 400);
  CHECK(rs[4].header("X-Error") == "400");
  CHECK(rs[5].body == "link fine");
  // 413: refused while the body comes, then the connection closes.
  c.send(req("POST", "/upload", {}, std::string(100, 'x')));
  const auto big = c.read(1).at(0);
  CHECK(big.status == 413);
  CHECK(big.header("Connection") == "close");
  CHECK(big.body == R"({"error":"Content Too Large","path":"/upload"})");
  CHECK(hook_saw_upload.load() == 1);
  CHECK(test::sees_close(c.fd.get(), 3000ms));
}

TEST_CASE("http api: an error hook that throws or returns a bad response gives the plain default") {
  auto r = link_routes();
  r->on_error([](int status, const http::Request&) -> http::Response {
    if (status == 404) throw std::runtime_error("hook failed");
    return http::Response::text(status, "x").header("Bad\nName", "v");
  });
  Server s(r);
  Client c(s);
  const auto a = c.get("/nowhere");
  CHECK(a.status == 404);
  CHECK(a.body == "Not Found\n");
  const auto b = c.get("/links/%zz");
  CHECK(b.status == 400);
  CHECK(b.body == "Bad Request\n");
  CHECK(c.get("/links/x").body == "link x");
}

TEST_CASE("http api: before hooks answer early, after hooks add headers, global and per route") {
  auto r = std::make_shared<http::Router>();
  std::atomic<int> handled{0};
  std::atomic<int> next_id{0};
  std::vector<std::string> log;  // written on the shard only, read after the client is done
  http::Router::Middleware auth{
      .before = [](http::Request& q) -> std::optional<http::Response> {
        if (q.header("Authorization") == "Bearer secret") return std::nullopt;
        return http::Response::text(401, "token required\n").header("WWW-Authenticate", "Bearer");
      },
      .after = [](const http::Request&, http::Response& resp) { resp.header("X-Route", "admin"); }};
  r->use({.after = [&](const http::Request& q, http::Response& resp) {
            resp.header("X-Request-Id", std::to_string(++next_id));
            log.push_back(std::string(q.method_name) + " " + std::string(q.target) + " " + std::to_string(resp.status));
          }});
  r->use({.before = [](http::Request& q) -> std::optional<http::Response> {
            if (q.query_param("block")) return http::Response::text(403, "blocked\n");
            return std::nullopt;
          }});
  r->del("/links/{id}", [&](http::Request& q) {
    ++handled;
    return http::Response::text(200, "deleted " + std::string(q.param("id")));
  }, auth);
  // Answered by a later request: the after hooks run at the answer, on
  // what the session kept of the request.
  struct Held {
    std::string id;
    http::Responder respond;
  };
  std::vector<Held> held;  // used on the shard only, empty once /release ran
  r->get("/hold/{id}", [&held](http::Request& q, http::Responder respond) {
    held.push_back(Held{std::string(q.param("id")), std::move(respond)});
  });
  r->get("/release", [&held](http::Request&) {
    for (Held& h : held) h.respond(http::Response::text(200, "later " + h.id));
    held.clear();
    return http::Response::text(200, "released");
  });
  Server s(r);
  Client c(s);
  c.send(req("DELETE", "/links/a") + req("DELETE", "/links/b", "Authorization: Bearer secret\r\n") +
         req("DELETE", "/links/c?block=1", "Authorization: Bearer secret\r\n") + req("GET", "/nowhere") +
         req("GET", "/hold/7?x=%41") + req("GET", "/release"));
  const auto rs = c.read(6);
  CHECK(rs[0].status == 401);
  CHECK(rs[0].header("WWW-Authenticate") == "Bearer");
  CHECK(rs[0].header("X-Route") == "admin");  // a route's after hook runs on its before hook's answer
  CHECK(rs[1].body == "deleted b");
  CHECK(rs[1].header("X-Route") == "admin");
  CHECK(rs[2].status == 403);                 // a global before hook ends the way before the route's
  CHECK_FALSE(rs[2].header("X-Route"));
  CHECK(rs[3].status == 404);
  CHECK(rs[4].body == "later 7");
  CHECK(rs[5].body == "released");
  for (int i = 0; i < 6; ++i) {
    CAPTURE(i);
    CHECK(rs[static_cast<std::size_t>(i)].header("X-Request-Id") == std::to_string(i + 1));
  }
  CHECK(handled.load() == 1);
  c.fd = Fd();
  s.rt.stop();
  s.rt.wait();  // the shard wrote `log`: read it once its thread is done
  CHECK(log == std::vector<std::string>{"DELETE /links/a 401", "DELETE /links/b 200", "DELETE /links/c?block=1 403",
                                        "GET /nowhere 404", "GET /hold/7?x=%41 200", "GET /release 200"});
}

TEST_CASE("http api: a deferred answer held past the response timeout gets 504, and the requests behind it go on") {
  auto r = link_routes();
  std::vector<http::Responder> stuck;  // used on the shard only, empty once /late-answer ran
  r->get("/stuck", [&stuck](http::Request&, http::Responder respond) { stuck.push_back(std::move(respond)); });
  r->get("/late-answer", [&stuck](http::Request&) {
    // The stuck Responder answers now: dropped, its request had its 504.
    const bool alive = !stuck.empty() && stuck.front().session_alive();
    for (auto& h : stuck) h(http::Response::text(200, "too late"));
    stuck.clear();
    return http::Response::text(200, alive ? "alive" : "not alive");
  });
  r->on_error([](int status, const http::Request& q) {
    return http::Response::text(status, "gave up on " + std::string(q.path) + "\n");
  });
  http::ServerOptions o;
  o.response_timeout = 300ms;
  Server s(r, o);
  Client c(s);
  const auto t0 = Clock::now();
  c.send(req("GET", "/stuck") + req("GET", "/links/behind"));
  const auto rs = c.read(2, {}, 3000ms);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
  MESSAGE("504 after " << took.count() << " ms (response timeout 300 ms)");
  CHECK(took >= 290ms);
  CHECK(took < 1500ms);
  CHECK(rs[0].status == 504);
  CHECK(rs[0].body == "gave up on /stuck\n");
  CHECK(rs[1].body == "link behind");
  CHECK(s.stats().response_timeouts.get() == 1);
  // The late answer goes nowhere; the connection carries on in order.
  c.send(req("GET", "/late-answer") + req("GET", "/links/after"));
  const auto more = c.read(2);
  CHECK(more[0].body == "not alive");
  CHECK(more[1].body == "link after");
  // An answer within the timeout is not touched.
  CHECK(c.get("/links/quick").body == "link quick");
  CHECK(s.stats().response_timeouts.get() == 1);
}

TEST_CASE("http api: JSON responses and request bodies, a parse error answered 400") {
  auto r = std::make_shared<http::Router>();
  r->post("/links", [](http::Request& q) {
    auto body = http::parse_json(q);
    if (!body) return std::move(body.error);
    if (!body.value.is_object() || !body.value.contains("url") || !body.value["url"].is_string())
      return http::json_response(422, {{"error", "url (a string) is required"}});
    return http::json_response(201, {{"url", body.value["url"]}, {"id", "abc"}});
  });
  r->get("/bad-utf8", [](http::Request&) { return http::json_response(200, {{"s", "a\xff"}}); });
  Server s(r);
  Client c(s);
  c.send(req("POST", "/links", "Content-Type: application/json\r\n", R"({"url":"https://example.org/a?b=c"})") +
         req("POST", "/links", {}, R"({"url": 1)") + req("POST", "/links", {}, R"({"nourl":1})") +
         req("GET", "/bad-utf8"));
  const auto rs = c.read(4);
  CHECK(rs[0].status == 201);
  CHECK(rs[0].header("Content-Type") == "application/json");
  CHECK(nlohmann::json::parse(rs[0].body) == nlohmann::json{{"url", "https://example.org/a?b=c"}, {"id", "abc"}});
  CHECK(rs[1].status == 400);
  CHECK(rs[1].header("Content-Type") == "application/json");
  CHECK(nlohmann::json::parse(rs[1].body)["error"].get<std::string>().find("invalid JSON") == 0);
  CHECK(rs[2].status == 422);
  CHECK(rs[3].status == 200);
  CHECK(rs[3].body == "{\"s\":\"a\xEF\xBF\xBD\"}");
}

TEST_CASE("http api: redirects carry a Location that cannot split the response") {
  auto r = std::make_shared<http::Router>();
  r->get("/go/{where}", [](http::Request& q) { return http::Response::redirect(302, q.param("where")); });
  r->get("/moved", [](http::Request&) { return http::Response::redirect(301, "https://example.org/new"); });
  Server s(r);
  Client c(s);
  const auto moved = c.get("/moved");
  CHECK(moved.status == 301);
  CHECK(moved.reason == "Moved Permanently");
  CHECK(moved.header("Location") == "https://example.org/new");
  CHECK(moved.header("Content-Length") == "0");
  CHECK(c.get("/go/%2Fhome").header("Location") == "/home");
  // CR LF decoded from the path into the Location: refused, a 500 instead.
  const auto split = c.get("/go/x%0D%0ASet-Cookie:%20a=b");
  CHECK(split.status == 500);
  CHECK_FALSE(split.header("Set-Cookie"));
  CHECK_FALSE(split.header("Location"));
  for (const int status : {301, 302, 303, 307, 308}) CHECK(http::Response::redirect(status, "/").status == status);
  for (const int status : {200, 300, 304, 305, 404}) {
    CAPTURE(status);
    CHECK_THROWS_AS((void)http::Response::redirect(status, "/"), std::invalid_argument);
  }
}

TEST_CASE("http session: after hooks of a deferred answer see the kept request, absolute-form targets included") {
  http::Router router;
  std::vector<http::Responder> held;
  std::vector<std::string> seen;
  router.use({.after = [&](const http::Request& q, http::Response&) {
    seen.push_back(std::string(q.method_name) + "|" + std::string(q.target) + "|" + std::string(q.raw_path) + "|" +
                   std::string(q.path) + "|" + std::string(q.query));
  }});
  router.get("/", [&](http::Request&, http::Responder r) { held.push_back(std::move(r)); });
  router.get("/x/{id}", [&](http::Request&, http::Responder r) { held.push_back(std::move(r)); });
  test::http::FakeOutput out;
  http::Session s(router, http::Limits{}, out);
  s.feed("GET http://example.org HTTP/1.1\r\nHost: example.org\r\n\r\n"
         "GET http://example.org/x/a%20b?q=1 HTTP/1.1\r\nHost: example.org\r\n\r\n"
         "GET /x/c HTTP/1.1\r\nHost: x\r\n\r\n");
  REQUIRE(held.size() == 3);
  for (auto& r : held) r(http::Response::text(200, "ok"));
  CHECK(test::http::parse_responses(out.bytes).size() == 3);
  CHECK(seen == std::vector<std::string>{"GET|http://example.org|/|/|", "GET|http://example.org/x/a%20b?q=1|/x/a%20b|/x/a b|q=1",
                                         "GET|/x/c|/x/c|/x/c|"});
}
