// A graceful stop at the connection layer: listeners stop accepting as soon
// as the stop is asked for, while connections already open are served on
// until the drain is over.
#include <doctest/doctest.h>

#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>

#include "net/net_support.hpp"
#include "ringshard/net/connection.hpp"

using namespace ringshard;
using namespace std::chrono_literals;
using test::connect_to;
using test::eventually;
using test::opts;

namespace {

// Connections this test's servers took (every Echo is one).
std::atomic<int> g_taken{0};

struct Echo : net::Connection<Echo> {
  Echo() { g_taken.fetch_add(1, std::memory_order_relaxed); }
  void on_data(std::span<const std::byte>) override { send(keep_received()); }
};

// Tries a connection to `a`: refused, or closed without a byte, once the
// stop's drain has begun. What counts is whether this test's server took it
// (g_taken). The probe itself may meet something else: in a parallel ctest
// run two probes connected and stayed open although both shards were
// draining, which 30 runs of this test alone (under TSan, with the CPUs
// loaded) never did.
void probe(const net::Address& a) {
  test::Fd s(::socket(a.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(s.get() >= 0);
  if (::connect(s.get(), a.get(), a.length()) != 0) {
    const int e = errno;
    if (e != ECONNREFUSED) MESSAGE("probe connect: " << std::strerror(e));
    return;
  }
  (void)test::write_all(s.get(), "x");
  if (!test::sees_close(s.get(), 200ms)) MESSAGE("a probe connected and stayed open 200 ms");
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
  const int taken_before = g_taken.load(std::memory_order_relaxed);
  for (int i = 0; i < 6; ++i) probe(l.address());
  CHECK(g_taken.load(std::memory_order_relaxed) == taken_before);
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
