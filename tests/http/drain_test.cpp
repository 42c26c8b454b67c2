// A graceful stop of the HTTP server (SIGTERM, Runtime::stop): requests
// already received are answered, those waiting for another shard included;
// a request whose answer does not come by the drain's end gets 503 with
// Connection: close; idle keep-alive connections close at once; new
// connections are not taken.
#include <doctest/doctest.h>

#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "http/http_test_util.hpp"
#include "net/net_support.hpp"
#include "ringshard/framework/submit_to.hpp"
#include "ringshard/net/http/http.hpp"

using namespace ringshard;
using namespace std::chrono_literals;
namespace http = ringshard::net::http;
namespace th = ringshard::test::http;
using test::connect_to;
using test::eventually;
using test::opts;

namespace {

std::atomic<int> g_started{0};

Task<int> seven_later() {
  co_await sleep_for(300ms);
  co_return 7;
}

Task<> answer_from_shard_1(http::Responder respond) {
  const int v = co_await submit_to(1, seven_later);
  respond(http::Response::text(200, std::to_string(v)));
}

std::shared_ptr<http::Router> router() {
  auto r = std::make_shared<http::Router>();
  r->get("/plaintext", [](http::Request&) { return http::Response::text(200, "Hello, World!"); });
  r->get("/later", [](http::Request&, http::Responder respond) {
    g_started.fetch_add(1);
    spawn(answer_from_shard_1(std::move(respond)));
  });
  r->get("/never", [](http::Request&, http::Responder respond) {
    static thread_local std::vector<http::Responder> held;
    g_started.fetch_add(1);
    held.push_back(std::move(respond));
  });
  return r;
}

http::ServerOptions no_timeouts() {
  http::ServerOptions o;
  o.header_timeout = o.keepalive_timeout = o.request_timeout = o.send_timeout = 0ms;
  return o;
}

// Everything until the server closes (or `limit`).
std::string read_to_close(int fd, std::chrono::milliseconds limit) {
  std::string out;
  const auto end = Clock::now() + limit;
  char buf[4096];
  while (Clock::now() < end) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 20) <= 0) continue;
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return out;
    out.append(buf, static_cast<std::size_t>(n));
  }
  FAIL("the server did not close within the limit; got: " << out);
  return out;
}

bool not_taken(const net::Address& a) {
  test::Fd s(::socket(a.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(s.get() >= 0);
  if (::connect(s.get(), a.get(), a.length()) != 0) return errno == ECONNREFUSED;
  (void)test::write_all(s.get(), "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n");
  return test::sees_close(s.get(), 1000ms);
}

}  // namespace

TEST_CASE("http drain: a stop answers what was received, 503 for what does not come in time, and takes nothing new") {
  RuntimeOptions ro = opts(2);
  ro.stop_timeout = 2000ms;  // the drain: 1,500 ms at most
  Runtime rt(ro);
  rt.start();
  g_started = 0;
  auto l = http::serve(rt, net::ListenOptions{}, router(), no_timeouts());
  test::Fd later = connect_to(l.address());
  test::Fd pipelined = connect_to(l.address());
  test::Fd never = connect_to(l.address());
  test::Fd idle = connect_to(l.address());
  // Answers from shard 1 in 300 ms, one with a request pipelined behind it.
  REQUIRE(test::write_all(later.get(), "GET /later HTTP/1.1\r\nHost: x\r\n\r\n"));
  REQUIRE(test::write_all(pipelined.get(),
                          "GET /later HTTP/1.1\r\nHost: x\r\n\r\nGET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n"));
  REQUIRE(test::write_all(never.get(), "GET /never HTTP/1.1\r\nHost: x\r\n\r\n"));
  REQUIRE(test::write_all(idle.get(), "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n"));
  REQUIRE(eventually([] { return g_started.load() == 3; }, 5s));
  std::this_thread::sleep_for(50ms);  // the idle connection's answer is out
  const auto t0 = Clock::now();
  rt.stop();

  // The idle keep-alive connection closes at once (its answer came before).
  const std::string idle_bytes = read_to_close(idle.get(), 3000ms);
  const auto idle_closed = Clock::now() - t0;
  const auto idle_replies = th::parse_responses(idle_bytes);
  REQUIRE(idle_replies.size() == 1);
  CHECK(idle_replies[0].status == 200);
  CHECK(idle_closed < 1000ms);
  CHECK(not_taken(l.address()));

  // The requests waiting for shard 1 are answered (the answer, the last one
  // owed, with Connection: close), and the one pipelined behind one.
  const auto later_replies = th::parse_responses(read_to_close(later.get(), 3000ms));
  REQUIRE(later_replies.size() == 1);
  CHECK(later_replies[0].status == 200);
  CHECK(later_replies[0].body == "7");
  CHECK(later_replies[0].header("Connection") == "close");
  const auto pipelined_replies = th::parse_responses(read_to_close(pipelined.get(), 3000ms));
  REQUIRE(pipelined_replies.size() == 2);
  CHECK(pipelined_replies[0].body == "7");
  CHECK(pipelined_replies[1].body == "Hello, World!");

  // The answer that never comes: 503 and Connection: close at the drain's end.
  const auto never_replies = th::parse_responses(read_to_close(never.get(), 3000ms));
  const auto never_closed = Clock::now() - t0;
  REQUIRE(never_replies.size() == 1);
  CHECK(never_replies[0].status == 503);
  CHECK(never_replies[0].header("Connection") == "close");
  CHECK(never_closed >= 1400ms);
  rt.wait();
  const auto took = Clock::now() - t0;
  MESSAGE("idle closed after " << std::chrono::duration_cast<std::chrono::milliseconds>(idle_closed).count()
                               << " ms, 503 after "
                               << std::chrono::duration_cast<std::chrono::milliseconds>(never_closed).count()
                               << " ms, stop took " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                               << " ms (stop_timeout 2000 ms)");
  CHECK(took < 3000ms);
}
