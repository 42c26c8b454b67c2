// Asks allocate nothing in the steady state (same shard): the pending-ask
// table reuses its slots, a deadline is the slot's own timer, and the
// request, the answer and the callback all fit their inline slots. The
// global allocation functions are replaced by counting ones (counting only
// while a test asks for it, on the thread that asks).
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <new>

#include "ringshard/actors/actor.hpp"
#include "counting_alloc.hpp"
#include "support.hpp"

using namespace ringshard;
using namespace ringshard::actors;
using namespace std::chrono_literals;
using ringshard::test::eventually;

namespace {

struct Square {
  using Response = long;
  long n;
};

struct Squarer : Actor<Squarer> {
  long on_message(const Square& q) { return q.n * q.n; }
};

/// Keeps `window` asks in flight until `asks` have completed, counting the
/// allocations made on its shard meanwhile.
struct Looper : Actor<Looper> {
  ActorRef<Squarer> to;
  std::atomic<long>* result;  // allocations of the last run, -1 while running
  long left = 0;
  long issued = 0;
  long total = 0;
  long failures = 0;
  bool deadline = false;
  bool plain = false;
  Looper(ActorRef<Squarer> t, std::atomic<long>* r) : to(t), result(r) {}

  struct Run {
    long asks;
    long window;
    bool deadline;  // each ask with a (generous) deadline: a timer set and cancelled
    bool plain;     // actors::ask, the form for plain shard code
  };
  void on_message(const Run& r) {
    left = total = r.asks;
    issued = 0;
    deadline = r.deadline;
    plain = r.plain;
    allocations = 0;
    counting = true;
    for (long i = 0; i < r.window; ++i) next();
  }
  void next() {
    if (issued == total) return;
    const long n = issued++;
    auto on_result = [this, n](AskResult<long> r) {
      if (!r || *r != n * n) ++failures;
      if (--left == 0) {
        counting = false;
        result->store(failures != 0 ? -2 : static_cast<long>(allocations));
      } else {
        next();
      }
    };
    const std::chrono::nanoseconds timeout = deadline ? std::chrono::nanoseconds(10s) : std::chrono::nanoseconds(0);
    if (plain) {
      actors::ask(to, Square{n}, timeout, on_result);
    } else {
      ask(to, Square{n}, timeout, on_result);
    }
  }
};

long run(ActorRef<Looper> looper, std::atomic<long>& result, Looper::Run r) {
  result.store(-1);
  send(looper, r);
  REQUIRE(eventually([&] { return result.load() != -1; }));
  return result.load();
}

}  // namespace

TEST_CASE("asks on one shard allocate nothing in the steady state (actor and plain asks, with and without deadline)") {
  RuntimeOptions o;
  o.shards = 1;
  Runtime rt(o);
  rt.start();
  std::atomic<long> result{-1};
  auto squarer = spawn<Squarer>(rt, 0);
  auto looper = spawn<Looper>(rt, 0, squarer, &result);
  for (bool plain : {false, true}) {
    for (bool deadline : {false, true}) {
      CAPTURE(plain);
      CAPTURE(deadline);
      // The first run grows the ask table, the run queue and the timer heap;
      // the second must reuse them.
      CHECK(run(looper, result, {20000, 256, deadline, plain}) >= 0);
      CHECK(run(looper, result, {20000, 256, deadline, plain}) == 0);
    }
  }
  rt.stop();
  rt.wait();
}
