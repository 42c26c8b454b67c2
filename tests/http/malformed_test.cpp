// Malformed and hostile requests: each is answered with the status RFC 9112
// asks for, the connection closes (or stays open, for the valid controls),
// and a new connection is served afterwards. Every case runs three ways:
// through a Session fed at once, through a Session fed byte by byte (the
// answer must not depend on how the bytes arrive), and against a real
// server on a socket. Then the requests that used to take the process down:
// a huge Content-Length or chunk size under a huge max_body_bytes.
#include <doctest/doctest.h>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "http/http_test_util.hpp"
#include "net/net_support.hpp"
#include "ringshard/net/http/server.hpp"

using namespace ringshard;
using namespace std::chrono_literals;
using namespace std::string_literals;
using namespace ringshard::net::http;
using test::connect_to;
using test::Fd;
using test::sees_close;
using test::http::FakeOutput;
using test::http::parse_responses;

namespace {

std::atomic<int> smuggled{0};  // requests for /smuggled that reached a handler

std::shared_ptr<Router> make_router() {
  auto r = std::make_shared<Router>();
  r->get("/plaintext", [](Request&) { return Response::text(200, "Hello, World!"); });
  r->get("/version", [](Request& req) {
    return Response::text(200, std::to_string(req.http_major) + "." + std::to_string(req.http_minor));
  });
  r->post("/echo", [](Request& req) { return Response::text(200, std::move(req.body), "application/octet-stream"); });
  r->get("/smuggled", [](Request&) {
    smuggled.fetch_add(1);
    return Response::text(200, "smuggled");
  });
  return r;
}

struct Case {
  const char* name;
  std::string request;  // everything the client sends (it then waits for the answer)
  int status;
  bool closes;
  /// The answer may be 400 instead of `status` when the bytes arrive one at
  /// a time (a method llhttp does not know is judged on a request line seen
  /// whole).
  bool split_may_be_400 = false;
};

const std::string host = "Host: x\r\n";
const std::string chunked_post = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
std::string get(const std::string& extra_headers) { return "GET /plaintext HTTP/1.1\r\n" + extra_headers + "\r\n"; }
std::string post_te(const std::string& te_lines, const std::string& version = "HTTP/1.1") {
  return "POST /echo " + version + "\r\nHost: x\r\n" + te_lines + "\r\n3\r\nabc\r\n0\r\n\r\n";
}
std::string post_cl(const std::string& cl_lines, const std::string& body = "hello") {
  return "POST /echo HTTP/1.1\r\nHost: x\r\n" + cl_lines + "\r\n" + body;
}
std::string many(const std::string& prefix, int n, const std::string& suffix) {
  std::string s;
  for (int i = 0; i < n; ++i) s += prefix + std::to_string(i) + suffix;
  return s;
}

std::vector<Case> cases() {
  return {
      // Valid controls: these must not be refused.
      {"valid GET", get(host), 200, false},
      {"valid chunked POST with an extension and a trailer",
       chunked_post + "3;ext=1\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n", 200, false},
      {"Transfer-Encoding: Chunked (case-insensitive)", post_te("Transfer-Encoding: Chunked\r\n"), 200, false},
      {"leading empty line before the request", "\r\n" + get(host), 200, false},
      {"HTTP/1.0 without Host", "GET /plaintext HTTP/1.0\r\n\r\n", 200, true},
      {"HTTP/1.2 is served as HTTP/1.1", "GET /version HTTP/1.2\r\nHost: x\r\n\r\n", 200, false},
      {"absolute-form target", "GET http://x/plaintext HTTP/1.1\r\nHost: x\r\n\r\n", 200, false},
      {"Connection: close", get(host + "Connection: close\r\n"), 200, true},

      // Request smuggling through chunked framing.
      {"chunk data followed by two bytes that are not CRLF, a request after the body",
       chunked_post + "3\r\nabcXX0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", 400, true},
      {"chunk data followed by two bytes that are not CRLF, a request in their place",
       chunked_post + "3\r\nabcXXGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n0\r\n\r\n", 400, true},
      {"chunk data followed by LF only", chunked_post + "3\r\nabc\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n0\r\n\r\n",
       400, true},
      {"chunk data followed by CR only", chunked_post + "3\r\nabc\r0\r\n\r\n", 400, true},
      {"chunk data longer than its size", chunked_post + "3\r\nabcdef\r\n0\r\n\r\n", 400, true},
      {"chunk size line ended by LF only", chunked_post + "3\nabc\r\n0\r\n\r\n", 400, true},
      {"last chunk followed by a bare LF", chunked_post + "3\r\nabc\r\n0\r\n\n", 400, true},
      {"Content-Length then Transfer-Encoding",
       "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, true},
      {"Transfer-Encoding then Content-Length",
       "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400, true},
      {"Transfer-Encoding gzip with Content-Length",
       "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: gzip\r\n\r\nabc", 400, true},

      // Transfer codings.
      {"Transfer-Encoding: gzip, chunked", post_te("Transfer-Encoding: gzip, chunked\r\n"), 501, true},
      {"Transfer-Encoding: chunked, gzip", post_te("Transfer-Encoding: chunked, gzip\r\n"), 501, true},
      {"Transfer-Encoding: gzip", post_te("Transfer-Encoding: gzip\r\n"), 501, true},
      {"Transfer-Encoding: identity", post_te("Transfer-Encoding: identity\r\n"), 501, true},
      {"Transfer-Encoding: chunked;ext=1", post_te("Transfer-Encoding: chunked;ext=1\r\n"), 501, true},
      {"Transfer-Encoding gzip and chunked in two fields",
       post_te("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"), 501, true},
      {"Transfer-Encoding chunked twice in two fields",
       post_te("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"), 400, true},
      {"Transfer-Encoding: chunked, chunked", post_te("Transfer-Encoding: chunked, chunked\r\n"), 400, true},
      {"Transfer-Encoding empty", post_te("Transfer-Encoding: \r\n"), 400, true},
      {"Transfer-Encoding in HTTP/1.0", post_te("Transfer-Encoding: chunked\r\n", "HTTP/1.0"), 400, true},

      // Host.
      {"HTTP/1.1 without Host", get(""), 400, true},
      {"two Host fields", get("Host: x\r\nHost: y\r\n"), 400, true},
      {"two Host fields, same value", get("Host: x\r\nhost: x\r\n"), 400, true},
      {"Host with a space", get("Host: a b\r\n"), 400, true},
      {"Host with a slash", get("Host: a/b\r\n"), 400, true},
      {"Host with userinfo", get("Host: u@a\r\n"), 400, true},

      // Field names and lines.
      {"space between field name and colon", get("Host : x\r\n"), 400, true},
      {"space inside a field name", get(host + "X Y: z\r\n"), 400, true},
      {"tab between field name and colon", get(host + "X-A\t: z\r\n"), 400, true},
      {"whitespace before the first field", "GET /plaintext HTTP/1.1\r\n Host: x\r\n\r\n", 400, true},
      {"obs-fold with SP", get(host + "X-A: a\r\n b\r\n"), 400, true},
      {"obs-fold with HTAB", get(host + "X-A: a\r\n\tb\r\n"), 400, true},
      {"obs-fold in a trailer", chunked_post + "0\r\nX-T: a\r\n b\r\n\r\n", 400, true},
      {"empty field name", get(host + ": z\r\n"), 400, true},
      {"field line without a colon", get(host + "Bad Header\r\n"), 400, true},
      {"NUL in a field value", get(host + "X-A: a\0b\r\n"s), 400, true},
      {"control character in a field value", get(host + "X-A: a\x01" "b\r\n"), 400, true},
      {"DEL in a field value", get(host + "X-A: a\x7f" "b\r\n"), 400, true},
      {"non-token character in a field name", get(host + "X-{}: z\r\n"), 400, true},
      {"over 100 header fields", get(host + many("X-H", 101, ": v\r\n")), 431, true},
      {"header block over 8 KiB", get(host + "X-Big: " + std::string(9000, 'a') + "\r\n"), 431, true},

      // CR and LF.
      {"bare LF line ends", "GET /plaintext HTTP/1.1\nHost: x\n\n", 400, true},
      {"bare LF after the request line", "GET /plaintext HTTP/1.1\nHost: x\r\n\r\n", 400, true},
      {"bare LF ending the header block", "GET /plaintext HTTP/1.1\r\nHost: x\r\n\n", 400, true},
      {"bare CR inside a field value", get(host + "X-A: a\rb\r\n"), 400, true},
      {"CR CR ending the header block", "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\r", 400, true},
      {"CR CR LF ending a field line", "GET /plaintext HTTP/1.1\r\nHost: x\r\r\n\r\n", 400, true},
      {"bare CR after the request line", "GET /plaintext HTTP/1.1\rHost: x\r\n\r\n", 400, true},
      {"bare CR before the request", "\rGET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n", 400, true},
      {"bare CR in a chunk-size line", chunked_post + "3\rabc\r\n0\r\n\r\n", 400, true},
      {"bare CR after a chunk extension", chunked_post + "3;a=b\rabc\r\n0\r\n\r\n", 400, true},
      {"bare CR ending a trailer", chunked_post + "0\r\nX-T: v\r\r\n\r\n", 400, true},
      {"bare LF ending a trailer", chunked_post + "0\r\nX-T: v\n\r\n", 400, true},
      {"bare LF ending the trailer section", chunked_post + "0\r\nX-T: v\r\n\n", 400, true},
      {"leading bare LF before the request", "\n" + get(host), 400, true},

      // Request line and version.
      {"no version (HTTP/0.9 style)", "GET /plaintext\r\n\r\n", 400, true},
      {"no version, nothing after the line", "GET /plaintext\r\n", 400, true},
      {"two SPs after the method", "GET  /plaintext HTTP/1.1\r\nHost: x\r\n\r\n", 400, true},
      {"SP after the version", "GET /plaintext HTTP/1.1 \r\nHost: x\r\n\r\n", 400, true},
      {"HTTP/2.0", "GET /plaintext HTTP/2.0\r\nHost: x\r\n\r\n", 505, true},
      {"HTTP/3.0", "GET /plaintext HTTP/3.0\r\nHost: x\r\n\r\n", 505, true},
      {"HTTP/0.9 written out", "GET /plaintext HTTP/0.9\r\n\r\n", 505, true},
      {"HTTP/2 connection preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, true},
      {"HTTP/1.10", "GET /plaintext HTTP/1.10\r\nHost: x\r\n\r\n", 400, true},
      {"HTTP/01.1", "GET /plaintext HTTP/01.1\r\nHost: x\r\n\r\n", 400, true},
      {"HTTP/1", "GET /plaintext HTTP/1\r\nHost: x\r\n\r\n", 400, true},
      {"lower-case http/1.1", "GET /plaintext http/1.1\r\nHost: x\r\n\r\n", 400, true},

      // Methods.
      {"invalid method token", "G@T /plaintext HTTP/1.1\r\nHost: x\r\n\r\n", 400, true},
      {"method with a space inside", "G ET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n", 400, true},
      {"whitespace before the method", " GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n", 400, true},
      {"tab after the method", "GET\t/plaintext HTTP/1.1\r\nHost: x\r\n\r\n", 400, true},
      {"control bytes instead of a method", "\x01\x02 garbage\r\n\r\n", 400, true},
      {"unknown method", "FOO /plaintext HTTP/1.1\r\nHost: x\r\n\r\n", 501, true, true},
      {"lower-case method", "get /plaintext HTTP/1.1\r\nHost: x\r\n\r\n", 501, true, true},

      // Request-target.
      {"control character in the target", "GET /a\x01" "b HTTP/1.1\r\nHost: x\r\n\r\n", 400, true},
      {"NUL in the target", "GET /a\0b HTTP/1.1\r\nHost: x\r\n\r\n"s, 400, true},
      {"DEL in the target", "GET /a\x7f" "b HTTP/1.1\r\nHost: x\r\n\r\n", 400, true},
      {"tab in the target", "GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n", 400, true},
      {"form feed in the target", "GET /a\x0c" "b HTTP/1.1\r\nHost: x\r\n\r\n", 400, true},
      {"byte over 0x7f in the target", "GET /a\x80 HTTP/1.1\r\nHost: x\r\n\r\n", 400, true},
      {"CR in the target", "GET /a\rb HTTP/1.1\r\nHost: x\r\n\r\n", 400, true},
      {"target over 8 KiB", "GET /" + std::string(9000, 'u') + " HTTP/1.1\r\nHost: x\r\n\r\n", 414, true},

      // Content-Length.
      {"negative Content-Length", post_cl("Content-Length: -5\r\n"), 400, true},
      {"Content-Length with a plus sign", post_cl("Content-Length: +5\r\n"), 400, true},
      {"Content-Length with junk after the digits", post_cl("Content-Length: 5x\r\n"), 400, true},
      {"Content-Length with two numbers", post_cl("Content-Length: 5 5\r\n"), 400, true},
      {"Content-Length as a list", post_cl("Content-Length: 5, 5\r\n"), 400, true},
      {"Content-Length in hex", post_cl("Content-Length: 0x5\r\n"), 400, true},
      {"empty Content-Length", post_cl("Content-Length: \r\n"), 400, true},
      {"duplicate Content-Length, same value", post_cl("Content-Length: 5\r\nContent-Length: 5\r\n"), 400, true},
      {"conflicting Content-Length", post_cl("Content-Length: 5\r\nContent-Length: 6\r\n"), 400, true},
      {"Content-Length over 2^64-1", post_cl("Content-Length: 99999999999999999999999\r\n"), 413, true},
      {"Content-Length over max_body_bytes", post_cl("Content-Length: 2097152\r\n", ""), 413, true},

      // Chunk sizes, extensions and trailers.
      {"chunk size over max_body_bytes, answered before its data", chunked_post + "200000\r\n", 413, true},
      {"chunk size over 2^64-1", chunked_post + "fffffffffffffffffffff\r\n", 413, true},
      {"chunks adding up over max_body_bytes",
       chunked_post + "80000\r\n" + std::string(0x80000, 'c') + "\r\n80001\r\n", 413, true},
      {"negative chunk size", chunked_post + "-3\r\nabc\r\n0\r\n\r\n", 400, true},
      {"chunk size in 0x form", chunked_post + "0x3\r\nabc\r\n0\r\n\r\n", 400, true},
      {"space after the chunk size", chunked_post + "3 \r\nabc\r\n0\r\n\r\n", 400, true},
      {"chunk size missing", chunked_post + "\r\nabc\r\n0\r\n\r\n", 400, true},
      {"17 chunk extensions", chunked_post + "3" + many(";e", 17, "") + "\r\nabc\r\n0\r\n\r\n", 400, true},
      {"chunk extension over 1 KiB", chunked_post + "3;" + std::string(1100, 'e') + "\r\nabc\r\n0\r\n\r\n", 400,
       true},
      {"chunk extensions over 1 KiB over several chunks",
       chunked_post + "1;" + std::string(600, 'e') + "\r\na\r\n1;" + std::string(600, 'e') + "\r\nb\r\n0\r\n\r\n", 400,
       true},
      {"over 100 trailer fields", chunked_post + "0\r\n" + many("X-T", 101, ": v\r\n") + "\r\n", 431, true},
      {"trailer section over 8 KiB", chunked_post + "0\r\nX-T: " + std::string(9000, 't') + "\r\n\r\n", 431, true},
      {"empty trailer field name", chunked_post + "0\r\n: v\r\n\r\n", 400, true},
  };
}

// ---- a response read from a socket -------------------------------------------

struct Reply {
  bool got = false;
  std::string version;
  int status = 0;
  std::string head;
  std::string body;
};

// Reads one response (framed by Content-Length) within `limit`.
Reply read_reply(int fd, std::chrono::milliseconds limit = 5000ms) {
  Reply r;
  std::string in;
  const auto end = Clock::now() + limit;
  std::size_t need = std::string::npos;
  while (true) {
    const auto head_end = in.find("\r\n\r\n");
    if (head_end != std::string::npos && need == std::string::npos) {
      r.head = in.substr(0, head_end + 2);
      need = head_end + 4;
      const auto cl = r.head.find("Content-Length: ");
      if (cl != std::string::npos) need += std::stoul(r.head.substr(cl + 16));
    }
    if (need != std::string::npos && in.size() >= need) break;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now()).count();
    pollfd p{fd, POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) return r;
    char buf[65536];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return r;
    in.append(buf, static_cast<std::size_t>(n));
  }
  r.got = true;
  r.version = r.head.substr(0, r.head.find(' '));
  r.status = std::atoi(r.head.c_str() + r.version.size() + 1);
  r.body = in.substr(r.head.size() + 2, need - r.head.size() - 2);
  return r;
}

bool send_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// A fresh connection gets GET /plaintext answered.
bool serves(const net::Address& a) {
  Fd c = connect_to(a);
  if (!send_all(c.get(), "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n")) return false;
  const Reply r = read_reply(c.get());
  return r.got && r.status == 200 && r.body == "Hello, World!";
}

// Resident set size of this process, in MiB.
long rss_mib() {
  long pages = 0, resident = 0;
  if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return resident * (::sysconf(_SC_PAGESIZE) / 1024) / 1024;
}

}  // namespace

TEST_CASE("http malformed requests: each gets its status through a Session, fed at once or byte by byte") {
  const auto router = make_router();
  for (const Case& c : cases()) {
    const std::string name = c.name;
    CAPTURE(name);
    for (const bool split : {false, true}) {
      CAPTURE(split);
      smuggled = 0;
      FakeOutput out;
      Session s(*router, Limits{}, out);
      if (split) {
        for (const char ch : c.request) s.feed(std::string_view(&ch, 1));
      } else {
        s.feed(c.request);
      }
      const auto rs = parse_responses(out.bytes);
      CHECK(rs.size() == 1);
      if (rs.size() != 1) continue;
      if (split && c.split_may_be_400) CHECK((rs[0].status == c.status || rs[0].status == 400));
      else CHECK(rs[0].status == c.status);
      CHECK(out.closes == (c.closes ? 1 : 0));
      if (c.closes) CHECK(rs[0].header("Connection") == "close");
      CHECK(smuggled == 0);
      CHECK_FALSE(out.wrote_after_close);
    }
  }
}

TEST_CASE("http malformed requests against a server: status, close, and the next connection is served") {
  Runtime rt(test::opts(1));
  rt.start();
  auto listener = serve(rt, net::ListenOptions{}, make_router());
  const net::Address a = listener.address();
  smuggled = 0;
  for (const Case& c : cases()) {
    const std::string name = c.name;
    CAPTURE(name);
    Fd conn = connect_to(a);
    REQUIRE(send_all(conn.get(), c.request));
    // Within 2 s: well before the 10 s request timeout, so an answer that
    // needs no more bytes comes at once.
    const Reply r = read_reply(conn.get(), 2000ms);
    CHECK(r.got);
    CHECK(r.status == c.status);
    if (!r.got) {
    } else if (c.closes) {
      CHECK(r.head.find("\r\nConnection: close\r\n") != std::string::npos);
      CHECK(sees_close(conn.get()));
    } else {
      CHECK(r.version == "HTTP/1.1");
      REQUIRE(send_all(conn.get(), "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n"));
      const Reply again = read_reply(conn.get());
      CHECK((again.got && again.status == 200));
    }
    CHECK(serves(a));
  }
  CHECK(smuggled == 0);
  // The request hidden after chunk data is answered when sent on its own: the
  // check above did see it refused, not missed.
  CHECK(serves(a));
  {
    Fd conn = connect_to(a);
    REQUIRE(send_all(conn.get(), "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"));
    CHECK(read_reply(conn.get()).status == 200);
  }
  CHECK(smuggled == 1);
  listener.close();
  rt.stop();
}

TEST_CASE("http huge declared lengths under a huge max_body_bytes: nothing reserved, the server serves on") {
  const std::size_t largest = std::numeric_limits<std::size_t>::max();
  struct Huge {
    const char* name;
    std::size_t max_body;
    std::string head;
  };
  const std::vector<Huge> huge = {
      {"Content-Length 10^12, max_body_bytes 2^40", std::size_t{1} << 40,
       "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n"},
      {"Content-Length 2^64-1, largest max_body_bytes", largest,
       "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n"},
      {"chunk size 2^64-1, largest max_body_bytes", largest,
       "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n"},
      {"chunk size 10^12, max_body_bytes 2^40", std::size_t{1} << 40,
       "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\ne8d4a51000\r\n"},
  };
  Runtime rt(test::opts(1));
  rt.start();
  {  // the shard's receive ring and the first connections, before measuring
    auto warm = serve(rt, net::ListenOptions{}, make_router());
    for (int i = 0; i < 4; ++i) CHECK(serves(warm.address()));
    warm.close();
  }
  const long rss_before = rss_mib();
  for (const Huge& h : huge) {
    const std::string name = h.name;
    CAPTURE(name);
    ServerOptions options;
    options.limits.max_body_bytes = h.max_body;
    auto listener = serve(rt, net::ListenOptions{}, make_router(), options);
    const net::Address a = listener.address();
    std::vector<Fd> held;
    for (const std::string_view tail : {"", "abc", "0123456789abcdef"}) {
      Fd c = connect_to(a);
      REQUIRE(send_all(c.get(), h.head));
      if (!tail.empty()) REQUIRE(send_all(c.get(), tail));
      held.push_back(std::move(c));
    }
    // The server waits for the rest of those bodies (no answer, no close) and
    // serves everyone else.
    CHECK(serves(a));
    for (Fd& c : held) {
      pollfd p{c.get(), POLLIN, 0};
      CHECK(::poll(&p, 1, 100) == 0);
    }
    CHECK(serves(a));
    held.clear();
    CHECK(serves(a));
    listener.close();
  }
  // Nothing was sized from the declared lengths.
  CHECK(rss_mib() - rss_before < 64);
  rt.stop();
}

TEST_CASE("http a body grows with the bytes that arrive, up to max_body_bytes") {
  auto router = make_router();
  Limits limits;
  limits.max_body_bytes = std::size_t{1} << 40;
  FakeOutput out;
  Session s(*router, limits, out);
  const std::string body(300000, 'b');
  s.feed("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n");
  for (std::size_t i = 0; i < body.size(); i += 1000) s.feed(std::string_view(body).substr(i, 1000));
  auto rs = parse_responses(out.bytes);
  REQUIRE(rs.size() == 1);
  CHECK(rs[0].status == 200);
  CHECK(rs[0].body == body);
  CHECK(out.closes == 0);
}

TEST_CASE("http a malformed request after valid pipelined ones: those are answered, then the error, then close") {
  const auto router = make_router();
  const std::string valid = "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n" + chunked_post +
                            "3;e=1\r\nabc\r\n0\r\nX-T: v\r\n\r\n\r\n" +  // an empty line between requests is allowed
                            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi";
  for (const std::string bad : {"\nGET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n", "GET /plaintext HTTP/1.1\r\n\r\n",
                                "GET /plaintext HTTP/1.1\r\nHost: x\r\nX: a\r\n\tb\r\n\r\n"}) {
    CAPTURE(bad);
    for (const bool split : {false, true}) {
      FakeOutput out;
      Session s(*router, Limits{}, out);
      const std::string in = valid + bad + "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
      if (split) {
        for (const char ch : in) s.feed(std::string_view(&ch, 1));
      } else {
        s.feed(in);
      }
      const auto rs = parse_responses(out.bytes);
      REQUIRE(rs.size() == 4);
      CHECK(rs[0].status == 200);
      CHECK(rs[1].body == "abc");
      CHECK(rs[2].body == "hi");
      CHECK(rs[3].status == 400);
      CHECK(out.closes == 1);
    }
  }
}

TEST_CASE("http valid pipelined requests split at any point get the same answers") {
  const auto router = make_router();
  const std::string in = "\r\nGET /plaintext HTTP/1.1\r\nHost: x\r\nX-A: a b\r\n\r\n" + chunked_post +
                         "3;e=1\r\nabc\r\n2;f;g=\"q\"\r\nde\r\n0\r\nX-T: v\r\nX-U: w\r\n\r\n" +
                         "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n\r\n \t\n" +
                         "GET /version HTTP/1.2\r\nHost: x\r\n\r\n" +
                         "GET /version HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
  std::vector<std::string> want;
  {
    FakeOutput out;
    Session s(*router, Limits{}, out);
    s.feed(in);
    for (const auto& r : parse_responses(out.bytes)) want.push_back(std::to_string(r.status) + " " + r.body);
    CHECK(out.closes == 0);
  }
  REQUIRE(want == std::vector<std::string>{"200 Hello, World!", "200 abcde", "200 \r\n \t\n", "200 1.1", "200 1.0"});
  for (std::size_t cut = 1; cut < in.size(); ++cut) {
    for (std::size_t cut2 : {cut, std::min(in.size(), cut + 1), std::min(in.size(), cut + 7)}) {
      FakeOutput out;
      Session s(*router, Limits{}, out);
      s.feed(std::string_view(in).substr(0, cut));
      s.feed(std::string_view(in).substr(cut, cut2 - cut));
      s.feed(std::string_view(in).substr(cut2));
      std::vector<std::string> got;
      for (const auto& r : parse_responses(out.bytes)) got.push_back(std::to_string(r.status) + " " + r.body);
      CAPTURE(cut);
      CAPTURE(cut2);
      CHECK(got == want);
      CHECK(out.closes == 0);
    }
  }
}
