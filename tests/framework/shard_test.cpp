// Shards and the runtime: per-pair ordering, bursts across every pair of
// shards, sleeping shards woken without loss, graceful stop.
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "ringshard/framework/shard.hpp"
#include "runtime_support.hpp"
#include "support.hpp"

using namespace ringshard;
using namespace std::chrono_literals;
using ringshard::test::opts;
using ringshard::test::eventually;

namespace {


}  // namespace

TEST_CASE("runtime starts one shard per requested count, each on its own thread and ring") {
  Runtime rt(opts(3));
  rt.start();
  CHECK(rt.shard_count() == 3);
  std::atomic<int> seen{0};
  std::vector<std::thread::id> ids(3);
  for (unsigned i = 0; i < 3; ++i) {
    rt.post(i, [&, i] {
      CHECK(Shard::current() == &rt.shard(i));
      ids[i] = std::this_thread::get_id();
      seen.fetch_add(1);
    });
  }
  REQUIRE(eventually([&] { return seen.load() == 3; }));
  CHECK(ids[0] != ids[1]);
  CHECK(ids[1] != ids[2]);
  CHECK(rt.shard(0).reactor().ring().fd() != rt.shard(1).reactor().ring().fd());
  rt.stop();
  rt.wait();
}

TEST_CASE("tasks from one shard to another arrive in the order they were sent") {
  constexpr int kCount = 200000;
  std::vector<int> received;
  received.reserve(kCount);
  std::atomic<bool> done{false};
  Runtime rt(opts(2));
  rt.start();
  rt.post(0, [&] {
    for (int i = 0; i < kCount; ++i) {
      rt.post(1, [&, i] {
        received.push_back(i);
        if (i == kCount - 1) done.store(true);
      });
    }
  });
  REQUIRE(eventually([&] { return done.load(); }));
  REQUIRE(received.size() == kCount);
  bool ordered = true;
  for (int i = 0; i < kCount; ++i) ordered = ordered && received[static_cast<std::size_t>(i)] == i;
  CHECK(ordered);
  rt.stop();
  rt.wait();
}

TEST_CASE("a burst of 1,000,000 tasks from every shard to every other shard loses and duplicates none") {
  const unsigned kShards = 3;
  // Six million tasks take minutes under ThreadSanitizer on two cores.
  const int kPerPair = test::under_sanitizer() ? 100000 : 1000000;
  // State the shards touch is declared before the runtime, so a failed
  // REQUIRE joins the shards before this state is destroyed.
  // counts[receiver][sender] and the last sequence number seen per pair
  std::vector<std::vector<long>> counts(kShards, std::vector<long>(kShards, 0));
  std::vector<std::vector<long>> last(kShards, std::vector<long>(kShards, -1));
  std::atomic<long> out_of_order{0};
  std::atomic<long> total{0};
  Runtime rt(opts(kShards));
  rt.start();
  for (unsigned s = 0; s < kShards; ++s) {
    rt.post(s, [&, s] {
      for (int i = 0; i < kPerPair; ++i) {
        for (unsigned t = 0; t < kShards; ++t) {
          if (t == s) continue;
          rt.post(t, [&, s, t, i] {
            ++counts[t][s];
            if (last[t][s] + 1 != i) out_of_order.fetch_add(1, std::memory_order_relaxed);
            last[t][s] = i;
            total.fetch_add(1, std::memory_order_relaxed);
          });
        }
      }
    });
  }
  const long expected = static_cast<long>(kShards) * (kShards - 1) * kPerPair;
  REQUIRE(eventually([&] { return total.load() == expected; }, 120s));
  rt.stop();
  rt.wait();
  CHECK(total.load() == expected);
  CHECK(out_of_order.load() == 0);
  for (unsigned r = 0; r < kShards; ++r)
    for (unsigned s = 0; s < kShards; ++s) CHECK(counts[r][s] == (r == s ? 0 : kPerPair));
}

TEST_CASE("sleeping shards are woken without loss over 200,000 cross-shard hops") {
  Runtime rt(opts(2));
  rt.start();
  const int kRounds = test::under_sanitizer() ? 50000 : 200000;
  std::atomic<int> finished{0};
  // Each hop posts the next one: between hops the receiving shard has nothing
  // to do and goes to sleep, so every hop needs a wake-up that must not be lost.
  struct Hop {
    Runtime* rt;
    std::atomic<int>* finished;
    int left;
    void operator()() {
      if (left == 0) {
        finished->store(1);
        return;
      }
      const unsigned next = Shard::current()->id() ^ 1u;
      rt->post(next, Hop{rt, finished, left - 1});
    }
  };
  rt.post(0, Hop{&rt, &finished, kRounds});
  REQUIRE(eventually([&] { return finished.load() == 1; }, 240s));
  rt.stop();
  rt.wait();  // the stats are read once the shard threads are gone
  const auto sleeps = rt.shard(0).stats().sleeps + rt.shard(1).stats().sleeps;
  const auto wakeups = rt.shard(0).stats().wakeups_msg_ring + rt.shard(1).stats().wakeups_msg_ring;
  MESSAGE("sleeps: " << sleeps << ", MSG_RING wake-ups sent: " << wakeups);
  CHECK(sleeps > 0);
  CHECK(wakeups > 0);
}

TEST_CASE("the eventfd wake-up fallback loses no wake-up either") {
  RuntimeOptions o = opts(2);
  o.eventfd_wakeups = true;
  Runtime rt(o);
  rt.start();
  const int kHops = test::under_sanitizer() ? 20000 : 50000;
  std::atomic<int> finished{0};
  struct Hop {
    Runtime* rt;
    std::atomic<int>* finished;
    int left;
    void operator()() {
      if (left == 0) {
        finished->store(1);
        return;
      }
      rt->post(Shard::current()->id() ^ 1u, Hop{rt, finished, left - 1});
    }
  };
  rt.post(0, Hop{&rt, &finished, kHops});
  REQUIRE(eventually([&] { return finished.load() == 1; }, 240s));
  rt.stop();
  rt.wait();
  CHECK(rt.shard(0).stats().sleeps + rt.shard(1).stats().sleeps > 0);
}

TEST_CASE("busy-polling shards never sleep and still complete cross-shard work and I/O") {
  RuntimeOptions o = opts(2);
  o.busy_poll = true;
  Runtime rt(o);
  rt.start();
  std::atomic<int> hops{0};
  struct Hop {
    Runtime* rt;
    std::atomic<int>* hops;
    int left;
    void operator()() {
      hops->fetch_add(1);
      if (left > 0) rt->post(Shard::current()->id() ^ 1u, Hop{rt, hops, left - 1});
    }
  };
  rt.post(0, Hop{&rt, &hops, 10000});
  REQUIRE(eventually([&] { return hops.load() == 10001; }));
  struct Nop final : Completion {
    std::atomic<int> res{1};
    void complete(const io_uring_cqe& cqe) override { res.store(cqe.res); }
  } nop;
  rt.post(1, [&] { Shard::current()->reactor().submit(nop, [](io_uring_sqe* sqe) { uring::prep_nop_result(sqe, 7); }); });
  REQUIRE(eventually([&] { return nop.res.load() == 7; }));
  rt.stop();
  rt.wait();
  CHECK(rt.shard(0).stats().sleeps + rt.shard(1).stats().sleeps == 0);
}

TEST_CASE("threads that are not shards can post and wake a sleeping shard") {
  Runtime rt(opts(2));
  rt.start();
  std::atomic<int> got{0};
  for (int i = 0; i < 2000; ++i) {
    rt.post(static_cast<unsigned>(i % 2), [&] { got.fetch_add(1); });
    if (i % 100 == 0) std::this_thread::sleep_for(1ms);  // let the shards fall asleep
  }
  REQUIRE(eventually([&] { return got.load() == 2000; }));
  rt.stop();
  rt.wait();
}

TEST_CASE("stop is graceful: tasks already posted run, in-flight I/O is cancelled, threads join") {
  Runtime rt(opts(2));
  rt.start();
  auto pair = test::tcp_pair();
  struct Pending final : Completion {
    std::atomic<int> res{1};
    void complete(const io_uring_cqe& cqe) override { res.store(cqe.res); }
  } pending;
  char buf[8];
  std::atomic<int> ran{0};
  rt.post(1, [&] {
    Shard::current()->reactor().submit(pending, [&](io_uring_sqe* sqe) {
      uring::prep_recv(sqe, pair.server.get(), uring::MutableBuffer(buf, sizeof buf), 0);
    });
  });
  std::atomic<bool> submitted{false};
  rt.post(1, [&] { submitted.store(true); });
  REQUIRE(eventually([&] { return submitted.load(); }));
  for (int i = 0; i < 1000; ++i) rt.post(0, [&] { ran.fetch_add(1); });
  const auto start = Clock::now();
  rt.stop();
  rt.wait();
  CHECK(Clock::now() - start < 2s);
  CHECK(ran.load() == 1000);
  CHECK(pending.res.load() == -ECANCELED);
}

TEST_CASE("run() returns after SIGTERM and stops every shard") {
  Runtime rt(opts(2));
  // The signal is process-directed: keep it away from this helper thread, as
  // a real program calling run() from main has no other threads to catch it.
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  ::pthread_sigmask(SIG_BLOCK, &set, &old);
  std::thread killer([] {
    std::this_thread::sleep_for(100ms);
    ::kill(::getpid(), SIGTERM);
  });
  const auto start = Clock::now();
  rt.run();
  killer.join();
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  CHECK(Clock::now() - start < 10s);
  CHECK_FALSE(rt.running());
}
