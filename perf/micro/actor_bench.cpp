// Actor engine micro-benchmarks: what a message, a cross-shard hop and a
// spawn cost when the framework is the only thing running.
//
// Every benchmark builds a Runtime once (outside the timed loop), spawns its
// actors, and then, per iteration, sends one start message from the benchmark
// thread and sleeps on an atomic until the actors report that the whole
// burst is done. The work itself (millions of messages) is driven by actors
// on the shards, in chunks that re-post themselves so the shard's loop keeps
// turning (inbox, outboxes and the reactor all get their look in, as in a
// real program). Times are wall-clock (UseRealTime): the benchmark thread
// sleeps while the shards work.
//
//   BM_actor_local_send        one shard, sender -> receiver, items/s = messages
//   BM_actor_cross_shard_send  shard 0 -> shard 1, windowed by acks, items/s = messages
//   BM_actor_ping_pong/busy    shard 0 <-> shard 1, shards never sleep (busy_poll)
//   BM_actor_ping_pong/sleep   shard 0 <-> shard 1, shards sleep between messages
//                              (woken by MSG_RING); ns_per_round_trip
//   BM_thread_ping_pong/spin   the machine's floor for the two above: plain threads
//   BM_thread_ping_pong/futex  on the same CPUs, spinning on / sleeping on one atomic
//   BM_actor_spawn_stop        one shard, spawn + stop a child, items/s = actors
//   BM_actor_ask/same_shard    ask round trips, asker and target on one shard, with
//   BM_actor_ask/cross_shard   N asks outstanding (the target holds N - 1 Replies and
//                              answers the oldest at each new ask); ns_per_ask
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <optional>
#include <thread>
#include <vector>

#include "ringshard/actors/actor.hpp"
#include "ringshard/framework/log.hpp"

namespace {

using namespace ringshard;
using namespace ringshard::actors;

// Set by an actor when a burst is complete; the benchmark thread sleeps on it.
class Finished {
 public:
  void signal() noexcept {
    count_.fetch_add(1, std::memory_order_release);
    count_.notify_one();
  }
  /// Waits until signal() has been called `n` times in all.
  void wait_for(std::uint32_t n) noexcept {
    for (std::uint32_t seen = count_.load(std::memory_order_acquire); seen < n;
         seen = count_.load(std::memory_order_acquire)) {
      count_.wait(seen, std::memory_order_acquire);
    }
  }

 private:
  std::atomic<std::uint32_t> count_{0};
};

void quiet_logs() {
  // The runtime logs its start at info; keep benchmark output clean unless asked.
  if (std::getenv("RINGSHARD_LOG") == nullptr) logger().set_level(spdlog::level::warn);
}

RuntimeOptions options(unsigned shards, bool busy_poll = false) {
  RuntimeOptions o;
  o.shards = shards;
  o.busy_poll = busy_poll;
  return o;
}

// ---- messages ------------------------------------------------------------------

struct Go {
  std::uint64_t n;
};
struct Chunk {};
struct Msg {
  bool last;
};
struct Ack {
  std::uint64_t n;
};
struct Ping {};
struct Pong {};

// ---- 1 and 2: a sender streams messages to a receiver ----------------------------

constexpr std::uint64_t kLocalChunk = 1024;   // messages per sender turn, one shard
constexpr std::uint64_t kRemoteChunk = 1024;  // messages per sender turn, cross shard
constexpr std::uint64_t kAckEvery = 4096;     // receiver acks after this many
constexpr std::uint64_t kWindow = 16 * kAckEvery;  // unacknowledged messages allowed in flight

struct Sender;

struct Receiver : Actor<Receiver> {
  Finished* finished;
  ActorRef<Sender> ack_to;  // invalid: no acks (same shard)
  std::uint64_t received = 0;
  std::uint64_t unacked = 0;
  Receiver(Finished* f, ActorRef<Sender> a) : finished(f), ack_to(a) {}
  void on_message(const Msg& m);
};

struct Sender : Actor<Sender> {
  ActorRef<Receiver> to;
  std::uint64_t chunk;
  std::uint64_t left = 0;
  std::uint64_t in_flight = 0;  // sent and not yet acknowledged (cross shard only)
  bool windowed;
  bool stalled = false;
  Sender(std::uint64_t c, bool w) : chunk(c), windowed(w) {}

  void on_message(const ActorRef<Receiver>& r) { to = r; }
  void on_message(const Go& g) {
    left = g.n;
    send(self(), Chunk{});
  }
  void on_message(const Chunk&) {
    if (windowed && in_flight >= kWindow) {
      stalled = true;  // an Ack resumes
      return;
    }
    const std::uint64_t k = std::min(left, chunk);
    left -= k;
    in_flight += k;
    for (std::uint64_t i = 1; i < k; ++i) send(to, Msg{false});
    send(to, Msg{left == 0});
    if (left != 0) send(self(), Chunk{});
  }
  void on_message(const Ack& a) {
    in_flight -= a.n;
    if (stalled && in_flight < kWindow) {
      stalled = false;
      send(self(), Chunk{});
    }
  }
};

void Receiver::on_message(const Msg& m) {
  ++received;
  if (ack_to.valid() && (++unacked == kAckEvery || m.last)) {
    send(ack_to, Ack{unacked});
    unacked = 0;
  }
  if (m.last) finished->signal();
}

void stream(benchmark::State& state, unsigned shards, unsigned receiver_shard, std::uint64_t chunk) {
  quiet_logs();
  const auto n = static_cast<std::uint64_t>(state.range(0));
  Finished finished;
  try {
    Runtime rt(options(shards));
    rt.start();
    const bool cross = receiver_shard != 0;
    auto sender = spawn<Sender>(rt, 0, chunk, cross);
    auto receiver = spawn<Receiver>(rt, receiver_shard, &finished, cross ? sender : ActorRef<Sender>{});
    send(sender, receiver);
    std::uint32_t bursts = 0;
    for (auto _ : state) {
      send(sender, Go{n});
      finished.wait_for(++bursts);
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(n));
    rt.stop();
    rt.wait();
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void BM_actor_local_send(benchmark::State& state) { stream(state, 1, 0, kLocalChunk); }
void BM_actor_cross_shard_send(benchmark::State& state) { stream(state, 2, 1, kRemoteChunk); }

// ---- 3: ping-pong between two shards ---------------------------------------------

struct Ponger;

struct Pinger : Actor<Pinger> {
  Finished* finished;
  ActorRef<Ponger> peer;
  std::uint64_t left = 0;
  explicit Pinger(Finished* f) : finished(f) {}
  void on_message(const ActorRef<Ponger>& p) { peer = p; }
  void on_message(const Go& g) {
    left = g.n;
    send(peer, Ping{});
  }
  void on_message(const Pong&) {
    if (--left != 0) {
      send(peer, Ping{});
    } else {
      finished->signal();
    }
  }
};

struct Ponger : Actor<Ponger> {
  ActorRef<Pinger> peer;
  explicit Ponger(ActorRef<Pinger> p) : peer(p) {}
  void on_message(const Ping&) { send(peer, Pong{}); }
};

void BM_actor_ping_pong(benchmark::State& state, bool busy_poll) {
  quiet_logs();
  const auto n = static_cast<std::uint64_t>(state.range(0));
  Finished finished;
  try {
    Runtime rt(options(2, busy_poll));
    rt.start();
    auto pinger = spawn<Pinger>(rt, 0, &finished);
    auto ponger = spawn<Ponger>(rt, 1, pinger);
    send(pinger, ponger);
    std::uint32_t bursts = 0;
    std::chrono::nanoseconds spent{0};
    for (auto _ : state) {
      const auto begin = std::chrono::steady_clock::now();
      send(pinger, Go{n});
      finished.wait_for(++bursts);
      spent += std::chrono::steady_clock::now() - begin;
    }
    const double round_trips = static_cast<double>(state.iterations()) * static_cast<double>(n);
    state.counters["ns_per_round_trip"] = static_cast<double>(spent.count()) / round_trips;
    state.SetItemsProcessed(static_cast<std::int64_t>(round_trips));
    rt.stop();
    rt.wait();
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// The floor the machine sets for the two ping-pongs above: two plain threads
// on the same two CPUs as the shards, bouncing a counter through one atomic,
// either spinning on it or sleeping on it (futex wait/notify).
void pin_to(unsigned cpu_index) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (::sched_getaffinity(0, sizeof allowed, &allowed) != 0) return;
  unsigned seen = 0;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (!CPU_ISSET(c, &allowed)) continue;
    if (seen++ == cpu_index) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(c, &one);
      ::pthread_setaffinity_np(::pthread_self(), sizeof one, &one);
      return;
    }
  }
}

// std::atomic::wait spins before it sleeps; these always go to the kernel.
void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t old) {
  ::syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, old, nullptr, nullptr, 0);
}
void futex_wake(std::atomic<std::uint32_t>& word) {
  ::syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
}

void BM_thread_ping_pong(benchmark::State& state, bool spin) {
  const auto n = static_cast<std::uint64_t>(state.range(0));
  // Odd values are pings (thread 0 -> thread 1), even values pongs; 0 ends.
  std::atomic<std::uint32_t> ball{0};
  std::atomic<bool> quit{false};
  auto await_change = [&](std::uint32_t old) {
    std::uint32_t v = ball.load(std::memory_order_acquire);
    while (v == old) {
      if (!spin) futex_wait(ball, old);
      v = ball.load(std::memory_order_acquire);
    }
    return v;
  };
  auto hit = [&](std::uint32_t v) {
    ball.store(v, std::memory_order_release);
    if (!spin) futex_wake(ball);
  };
  std::uint32_t value = 0;
  std::thread partner([&] {
    pin_to(1);
    std::uint32_t seen = 0;
    for (;;) {
      seen = await_change(seen);
      if (quit.load(std::memory_order_acquire)) return;
      hit(++seen);
    }
  });
  std::chrono::nanoseconds spent{0};
  for (auto _ : state) {
    // The measuring loop runs on a thread pinned to CPU 0, like shard 0.
    std::thread([&] {
      pin_to(0);
      const auto begin = std::chrono::steady_clock::now();
      for (std::uint64_t i = 0; i < n; ++i) {
        hit(++value);
        value = await_change(value);
      }
      spent += std::chrono::steady_clock::now() - begin;
    }).join();
  }
  quit.store(true, std::memory_order_release);
  hit(++value);
  partner.join();
  const double round_trips = static_cast<double>(state.iterations()) * static_cast<double>(n);
  state.counters["ns_per_round_trip"] = static_cast<double>(spent.count()) / round_trips;
  state.SetItemsProcessed(static_cast<std::int64_t>(round_trips));
}

// ---- 4: spawn + stop ---------------------------------------------------------------

constexpr std::uint64_t kSpawnChunk = 256;

struct SpawnCount {
  Finished* finished = nullptr;
  std::uint64_t stopped = 0;
  std::uint64_t target = 0;
};

struct Child : Actor<Child> {
  SpawnCount* count;
  explicit Child(SpawnCount* c) : count(c) {}
  void on_stop() override {
    if (++count->stopped == count->target) count->finished->signal();
  }
};

struct Spawner : Actor<Spawner> {
  SpawnCount* count;
  std::uint64_t left = 0;
  explicit Spawner(SpawnCount* c) : count(c) {}
  void on_message(const Go& g) {
    left = g.n;
    count->target += g.n;
    send(self(), Chunk{});
  }
  void on_message(const Chunk&) {
    const std::uint64_t k = std::min(left, kSpawnChunk);
    left -= k;
    for (std::uint64_t i = 0; i < k; ++i) actors::stop(spawn<Child>(shard().runtime(), shard().id(), count));
    if (left != 0) send(self(), Chunk{});
  }
};

void BM_actor_spawn_stop(benchmark::State& state) {
  quiet_logs();
  const auto n = static_cast<std::uint64_t>(state.range(0));
  Finished finished;
  SpawnCount count;
  count.finished = &finished;
  try {
    Runtime rt(options(1));
    rt.start();
    auto spawner = spawn<Spawner>(rt, 0, &count);
    std::uint32_t bursts = 0;
    for (auto _ : state) {
      send(spawner, Go{n});
      finished.wait_for(++bursts);
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(n));
    rt.stop();
    rt.wait();
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// ---- 5: ask round trips with N asks outstanding ------------------------------------
//
// The asker keeps one ask travelling at a time (the next one goes out from the
// callback of the previous), and the target holds the Replies of the last
// N - 1 asks, answering the oldest whenever a new one comes in: the asker
// always has N asks pending, and each completion finds and retires the oldest.
// What a completion costs should not depend on N.

struct Question {
  using Response = std::uint64_t;
  std::uint64_t n;
};

struct Holder : Actor<Holder> {
  std::vector<std::optional<Reply<std::uint64_t>>> held;  // a ring of N - 1 Replies
  std::size_t next = 0;
  explicit Holder(std::size_t hold) : held(hold) {}
  void on_message(const Question& q, Reply<std::uint64_t> reply) {
    if (held.empty()) {
      reply(q.n);
      return;
    }
    std::optional<Reply<std::uint64_t>>& slot = held[next];
    next = next + 1 == held.size() ? 0 : next + 1;
    if (slot) (*slot)(q.n);  // answers the oldest held ask
    slot.emplace(std::move(reply));
  }
};

struct Questioner : Actor<Questioner> {
  Finished* finished;
  ActorRef<Holder> target;
  std::uint64_t left = 0;
  std::uint64_t failed = 0;
  Questioner(Finished* f, ActorRef<Holder> t) : finished(f), target(t) {}
  struct Fill {
    std::uint64_t n;
  };
  // Puts N - 1 asks in the holder's hands. Every answer, to these or to
  // later asks, sends the next ask while a burst is running.
  void on_message(const Fill& f) {
    for (std::uint64_t i = 0; i < f.n; ++i) next();
    finished->signal();
  }
  void on_message(const Go& g) {
    left = g.n;
    next();
  }
  void next() {
    ask(target, Question{left}, [this](AskResult<std::uint64_t> r) { answered(r); });
  }
  void answered(const AskResult<std::uint64_t>& r) {
    if (left == 0) return;  // the held asks, let go when the run ends
    if (!r.ok()) ++failed;
    if (--left != 0) {
      next();
    } else {
      finished->signal();
    }
  }
};

void BM_actor_ask(benchmark::State& state, bool cross_shard) {
  quiet_logs();
  const auto outstanding = static_cast<std::uint64_t>(state.range(0));
  const auto n = static_cast<std::uint64_t>(state.range(1));
  Finished finished;
  try {
    // Busy-polling shards: a cross-shard round trip is then the message
    // hops, not the sleeps and wake-ups (measured by BM_actor_ping_pong/sleep).
    Runtime rt(options(cross_shard ? 2 : 1, true));
    rt.start();
    auto holder = spawn<Holder>(rt, cross_shard ? 1 : 0, static_cast<std::size_t>(outstanding - 1));
    auto questioner = spawn<Questioner>(rt, 0, &finished, holder);
    std::uint32_t bursts = 0;
    send(questioner, Questioner::Fill{outstanding - 1});
    finished.wait_for(++bursts);
    std::chrono::nanoseconds spent{0};
    for (auto _ : state) {
      const auto begin = std::chrono::steady_clock::now();
      send(questioner, Go{n});
      finished.wait_for(++bursts);
      spent += std::chrono::steady_clock::now() - begin;
    }
    const double asks = static_cast<double>(state.iterations()) * static_cast<double>(n);
    state.counters["ns_per_ask"] = static_cast<double>(spent.count()) / asks;
    state.SetItemsProcessed(static_cast<std::int64_t>(asks));
    rt.stop();
    rt.wait();
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

}  // namespace

BENCHMARK(BM_actor_local_send)->Arg(10'000'000)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_actor_cross_shard_send)->Arg(10'000'000)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_actor_ping_pong, busy, true)->Arg(100'000)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_actor_ping_pong, sleep, false)->Arg(20'000)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_thread_ping_pong, spin, true)->Arg(100'000)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_thread_ping_pong, futex, false)->Arg(20'000)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_actor_spawn_stop)->Arg(1'000'000)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_actor_ask, same_shard, false)
    ->Args({1, 100'000})
    ->Args({1'000, 100'000})
    ->Args({100'000, 100'000})
    ->ArgNames({"outstanding", "asks"})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_actor_ask, cross_shard, true)
    ->Args({1, 100'000})
    ->Args({1'000, 100'000})
    ->Args({100'000, 100'000})
    ->ArgNames({"outstanding", "asks"})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
