// A graceful stop at the connection layer: listeners stop accepting as soon
// as the stop is asked for, while connections already open are served on
// until the drain is over.
#include <doctest/doctest.h>

#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <string>

#include "net/net_support.hpp"
#include "ringshard/net/connection.hpp"

using namespace ringshard;
using namespace std::chrono_literals;
using test::connect_to;
using test::eventually;
using test::opts;

namespace {

struct Echo : net::Connection<Echo> {
  void on_data(std::span<const std::byte>) override { send(keep_received()); }
};

// True when a connect to `a` is refused, or closed without a byte.
bool not_taken(const net::Address& a) {
  test::Fd s(::socket(a.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(s.get() >= 0);
  if (::connect(s.get(), a.get(), a.length()) != 0) return errno == ECONNREFUSED;
  (void)test::write_all(s.get(), "x");
  return test::sees_close(s.get(), 1000ms);
}

}  // namespace

TEST_CASE("drain: a stop closes the listeners at once and serves the open connections until the drain is over") {
  RuntimeOptions o = opts(2);
  o.stop_timeout = 4000ms;
  Runtime rt(o);
  rt.start();
  net::ListenOptions lo;
  lo.policy = net::Policy::reuse_port;
  auto l = net::listen<Echo>(rt, lo);
  test::Fd open[2] = {connect_to(l.address()), connect_to(l.address())};
  for (auto& c : open) {
    REQUIRE(test::write_all(c.get(), "before"));
    CHECK(test::read_exactly(c.get(), 6) == "before");
  }
  // Shard 1 holds the stop: the drain lasts until it lets go.
  test::on_shard(rt, 1, [] { Shard::current()->hold_stop(); });
  const auto t0 = Clock::now();
  rt.stop();
  // Once each shard has begun its drain, its listener takes nothing new
  // (both shards listen: several tries). A probe that connected before then
  // would be served for the whole drain (it was accepted), so the probes wait
  // for the drain: under load a shard may take a while to see the stop.
  for (unsigned i = 0; i < 2; ++i) {
    REQUIRE(eventually(
        [&] {
          bool draining = false;
          test::on_shard(rt, i, [&] { draining = Shard::current()->draining(); });
          return draining;
        },
        3s));
  }
  for (int i = 0; i < 6; ++i) CHECK(not_taken(l.address()));
  // The open ones are served, before the drain's deadline (stop_timeout
  // minus a quarter: 3 s).
  for (auto& c : open) {
    REQUIRE(test::write_all(c.get(), "during"));
    CHECK(test::read_exactly(c.get(), 6) == "during");
  }
  CHECK(Clock::now() - t0 < 3s);
  rt.post(1, [] { Shard::current()->release_stop(); });
  rt.wait();
  for (auto& c : open) CHECK(test::sees_close(c.get(), 1000ms));
}
