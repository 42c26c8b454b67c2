// Actors: spawn, typed send, ordering, dead letters, ask/reply, timers, I/O
// as messages, stop with messages in flight.
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ringshard/actors/actor.hpp"
#include "runtime_support.hpp"
#include "support.hpp"

using namespace ringshard;
using namespace ringshard::actors;
using namespace std::chrono_literals;
using ringshard::test::opts;
using ringshard::test::eventually;

namespace {


std::uint64_t dead_letters(Runtime& rt) {
  std::uint64_t n = 0;
  for (unsigned i = 0; i < rt.shard_count(); ++i) n += ActorTable::of(rt.shard(i)).dead_letters();
  return n;
}

std::uint64_t late_answers(Runtime& rt) {
  std::uint64_t n = 0;
  for (unsigned i = 0; i < rt.shard_count(); ++i) n += ActorTable::of(rt.shard(i)).late_answers();
  return n;
}

struct Add {
  int by;
};
struct Text {
  std::string s;
};
struct GetCount {
  using Response = int;
};
struct Seq {
  unsigned from;
  long n;
};

struct Counter : Actor<Counter> {
  std::atomic<long>* total;
  std::atomic<int>* started;
  std::atomic<int>* stopped;
  long n = 0;
  Counter(std::atomic<long>* t, std::atomic<int>* st, std::atomic<int>* sp) : total(t), started(st), stopped(sp) {}
  void on_start() override {
    CHECK(Shard::current() == &shard());
    started->fetch_add(1);
  }
  void on_stop() override { stopped->fetch_add(1); }
  void on_message(const Add& m) {
    n += m.by;
    total->fetch_add(m.by);
  }
  void on_message(Text&& t) { total->fetch_add(static_cast<long>(t.s.size())); }
  int on_message(const GetCount&) { return static_cast<int>(n); }
};

}  // namespace

TEST_CASE("spawned actors start on their shard and receive typed messages") {
  Runtime rt(opts(2));
  rt.start();
  std::atomic<long> total{0};
  std::atomic<int> started{0}, stopped{0};
  auto a = spawn<Counter>(rt, 0, &total, &started, &stopped);
  auto b = spawn<Counter>(rt, 1, &total, &started, &stopped);
  CHECK(a.shard() == 0);
  CHECK(b.shard() == 1);
  send(a, Add{2});
  send(b, Add{3});
  send(b, Text{std::string(1000, 'x')});  // larger than a task slot: boxed, still delivered
  REQUIRE(eventually([&] { return total.load() == 1005; }));
  CHECK(started.load() == 2);
  rt.stop();
  rt.wait();
  CHECK(stopped.load() == 2);  // on_stop ran for both at shutdown
}

namespace {
struct OrderCheck : Actor<OrderCheck> {
  std::map<unsigned, long> last;
  std::atomic<long>* received;
  std::atomic<long>* disorder;
  OrderCheck(std::atomic<long>* r, std::atomic<long>* d) : received(r), disorder(d) {}
  void on_message(const Seq& s) {
    auto it = last.find(s.from);
    const long prev = it == last.end() ? -1 : it->second;
    if (s.n != prev + 1) disorder->fetch_add(1);
    last[s.from] = s.n;
    received->fetch_add(1, std::memory_order_relaxed);
  }
};

struct Blaster : Actor<Blaster> {
  ActorRef<OrderCheck> target;
  long count;
  Blaster(ActorRef<OrderCheck> t, long c) : target(t), count(c) {}
  void on_start() override {
    for (long i = 0; i < count; ++i) send(target, Seq{shard().id(), i});
  }
};
}  // namespace

TEST_CASE("messages from one actor to another arrive in order, locally and across shards") {
  Runtime rt(opts(3));
  rt.start();
  std::atomic<long> received{0}, disorder{0};
  auto sink = spawn<OrderCheck>(rt, 0, &received, &disorder);
  constexpr long kEach = 100000;
  for (unsigned s = 0; s < 3; ++s) spawn<Blaster>(rt, s, sink, kEach);  // shard 0's is local
  REQUIRE(eventually([&] { return received.load() == 3 * kEach; }));
  CHECK(disorder.load() == 0);
  rt.stop();
  rt.wait();
}

namespace {
struct Tally : Actor<Tally> {
  std::atomic<long>* got;
  explicit Tally(std::atomic<long>* g) : got(g) {}
  void on_message(const Seq&) { got->fetch_add(1, std::memory_order_relaxed); }
};
struct Burst : Actor<Burst> {
  std::vector<ActorRef<Tally>> targets;
  long per_target;
  Burst(std::vector<ActorRef<Tally>> t, long n) : targets(std::move(t)), per_target(n) {}
  void on_start() override {
    for (long i = 0; i < per_target; ++i)
      for (auto& t : targets)
        if (t.shard() != shard().id()) send(t, Seq{shard().id(), i});
  }
};
}  // namespace

TEST_CASE("1,000,000 actor messages from every shard to every other shard: none lost") {
  const unsigned kShards = 3;
  const long kPerPair = test::under_sanitizer() ? 100000 : 1000000;
  std::atomic<long> got{0};
  Runtime rt(opts(kShards));
  rt.start();
  std::vector<ActorRef<Tally>> tallies;
  for (unsigned s = 0; s < kShards; ++s) tallies.push_back(spawn<Tally>(rt, s, &got));
  for (unsigned s = 0; s < kShards; ++s) spawn<Burst>(rt, s, tallies, kPerPair);
  const long expected = static_cast<long>(kShards) * (kShards - 1) * kPerPair;
  REQUIRE(eventually([&] { return got.load() == expected; }, 120s));
  std::this_thread::sleep_for(50ms);
  CHECK(got.load() == expected);  // and no duplicates afterwards
  CHECK(dead_letters(rt) == 0);
  rt.stop();
  rt.wait();
}

TEST_CASE("a message to a stopped actor is a dead letter, even when its slot is reused") {
  Runtime rt(opts(2));
  rt.start();
  std::atomic<long> total{0};
  std::atomic<int> started{0}, stopped{0};
  auto first = spawn<Counter>(rt, 1, &total, &started, &stopped);
  send(first, Add{1});
  REQUIRE(eventually([&] { return total.load() == 1; }));
  stop(first);
  REQUIRE(eventually([&] { return stopped.load() == 1; }));
  // on_stop runs before the slot is freed: wait until the table let it go.
  REQUIRE(eventually([&] { return ActorTable::of(rt.shard(1)).live() == 0; }));
  // A spawn on the shard itself takes the most recently freed slot.
  std::atomic<bool> spawned{false};
  ActorRef<Counter> second;
  rt.post(1, [&] {
    second = spawn<Counter>(rt, 1, &total, &started, &stopped);
    spawned.store(true);
  });
  REQUIRE(eventually([&] { return spawned.load(); }));
  CHECK(second.raw().slot == first.raw().slot);  // the slot is reused ...
  CHECK(second.raw().gen != first.raw().gen);    // ... under a new generation
  REQUIRE(eventually([&] { return started.load() == 2; }));
  send(first, Add{100});  // must not reach `second`
  send(second, Add{10});
  REQUIRE(eventually([&] { return total.load() == 11; }));
  REQUIRE(eventually([&] { return dead_letters(rt) == 1; }));
  std::this_thread::sleep_for(20ms);
  CHECK(total.load() == 11);
  rt.stop();
  rt.wait();
}

namespace {
struct Asker : Actor<Asker> {
  ActorRef<Counter> counter;
  std::atomic<int>* answer;
  Asker(ActorRef<Counter> c, std::atomic<int>* a) : counter(c), answer(a) {}
  void on_start() override {
    send(counter, Add{41});  // same sender -> same order: the add lands before the ask
    ask(counter, GetCount{}, [this](AskResult<int> n) {
      CHECK(Shard::current() == &shard());  // the reply runs on the asker's shard
      CHECK(n.ok());
      answer->store(n.value());
    });
  }
};

struct Later {
  using Response = std::string;
};
// Answers later: keeps the Reply and fulfils it from a timer.
struct SlowServer : Actor<SlowServer> {
  std::vector<Reply<std::string>> waiting;
  struct Tick {};
  void on_message(Later&&, Reply<std::string> reply) {
    waiting.push_back(std::move(reply));
    after(10ms, Tick{});
  }
  void on_message(const Tick&) {
    for (auto& r : waiting) r("done later");
    waiting.clear();
  }
};
struct LaterAsker : Actor<LaterAsker> {
  ActorRef<SlowServer> server;
  std::atomic<int>* replies;
  LaterAsker(ActorRef<SlowServer> s, std::atomic<int>* r) : server(s), replies(r) {}
  void on_start() override {
    ask(server, Later{}, [this](AskResult<std::string> s) {
      if (s && *s == "done later") replies->fetch_add(1);
    });
  }
};
struct DyingAsker : Actor<DyingAsker> {
  ActorRef<SlowServer> server;
  std::atomic<int>* replies;
  DyingAsker(ActorRef<SlowServer> s, std::atomic<int>* r) : server(s), replies(r) {}
  void on_start() override {
    ask(server, Later{}, [this](AskResult<std::string>) { replies->fetch_add(100); });
    stop();  // gone before the answer comes: the answer is dropped, counted as late
  }
};
}  // namespace

TEST_CASE("ask gets its reply across shards, immediately or later, and a dead asker gets none") {
  Runtime rt(opts(2));
  rt.start();
  std::atomic<long> total{0};
  std::atomic<int> started{0}, stopped{0}, answer{-1}, replies{0};
  auto counter = spawn<Counter>(rt, 1, &total, &started, &stopped);
  spawn<Asker>(rt, 0, counter, &answer);
  REQUIRE(eventually([&] { return answer.load() == 41; }));
  auto server = spawn<SlowServer>(rt, 1);
  spawn<LaterAsker>(rt, 0, server, &replies);
  spawn<LaterAsker>(rt, 1, server, &replies);
  REQUIRE(eventually([&] { return replies.load() == 2; }));
  const auto before = late_answers(rt);
  spawn<DyingAsker>(rt, 0, server, &replies);
  REQUIRE(eventually([&] { return late_answers(rt) == before + 1; }));
  CHECK(replies.load() == 2);
  rt.stop();
  rt.wait();
}

namespace {
struct Ping {
  Clock::time_point due;
};
struct TimerActor : Actor<TimerActor> {
  std::atomic<int>* fired;
  std::atomic<int>* early;
  std::atomic<int>* cancelled_fired;
  TimerActor(std::atomic<int>* f, std::atomic<int>* e, std::atomic<int>* c)
      : fired(f), early(e), cancelled_fired(c) {}
  struct Never {};
  void on_start() override {
    for (int i = 0; i < 2000; ++i) {
      const auto d = std::chrono::microseconds((i * 37) % 20000);
      after(d, Ping{Clock::now() + d});
    }
    auto id = after(5ms, Never{});
    cancel_timer(id);
  }
  void on_message(const Ping& p) {
    if (Clock::now() < p.due) early->fetch_add(1);
    fired->fetch_add(1);
  }
  void on_message(const Never&) { cancelled_fired->fetch_add(1); }
};
struct LongTimer : Actor<LongTimer> {
  std::atomic<int>* fired;
  explicit LongTimer(std::atomic<int>* f) : fired(f) {}
  struct Boom {};
  void on_start() override { after(50ms, Boom{}); }
  void on_message(const Boom&) { fired->fetch_add(1); }
};
}  // namespace

TEST_CASE("actor timers fire no earlier than asked and are cancelled by cancel_timer and by stop") {
  Runtime rt(opts(2));
  rt.start();
  std::atomic<int> fired{0}, early{0}, cancelled{0}, long_fired{0};
  spawn<TimerActor>(rt, 1, &fired, &early, &cancelled);
  REQUIRE(eventually([&] { return fired.load() == 2000; }));
  CHECK(early.load() == 0);
  auto lt = spawn<LongTimer>(rt, 0, &long_fired);
  std::this_thread::sleep_for(5ms);
  stop(lt);
  std::this_thread::sleep_for(100ms);
  CHECK(long_fired.load() == 0);
  CHECK(cancelled.load() == 0);
  std::atomic<long> timers{-1};
  rt.post(0, [&] { timers.store(static_cast<long>(Shard::current()->reactor().timers())); });
  REQUIRE(eventually([&] { return timers.load() != -1; }));
  CHECK(timers.load() == 0);
  rt.stop();
  rt.wait();
}

namespace {
// Reads a pipe through the ring; the completion comes back as a message.
struct Reader : Actor<Reader> {
  int fd;
  std::string* out;
  std::atomic<int>* done;
  char buf[64] = {};
  Reader(int f, std::string* o, std::atomic<int>* d) : fd(f), out(o), done(d) {}
  void on_start() override {
    io(7, [this](io_uring_sqe* sqe) { uring::prep_read(sqe, fd, uring::MutableBuffer(buf, sizeof buf), 0); });
  }
  void on_message(const IoResult& r) {
    CHECK(r.tag == 7);
    if (r.res > 0) out->assign(buf, static_cast<std::size_t>(r.res));
    done->store(r.res > 0 ? 1 : -1);
  }
};
struct Waiter : Actor<Waiter> {
  int fd;
  std::atomic<int>* result;
  char buf[8] = {};
  Waiter(int f, std::atomic<int>* r) : fd(f), result(r) {}
  void on_start() override {
    io(1, [this](io_uring_sqe* sqe) { uring::prep_read(sqe, fd, uring::MutableBuffer(buf, sizeof buf), 0); }, 20ms);
  }
  void on_message(const IoResult& r) { result->store(r.res); }
};
}  // namespace

TEST_CASE("an actor's I/O completes as a message, with an optional deadline") {
  Runtime rt(opts(2));
  rt.start();
  int p[2];
  REQUIRE(::pipe(p) == 0);
  test::Fd rd(p[0]), wr(p[1]);
  std::string got;
  std::atomic<int> done{0};
  spawn<Reader>(rt, 1, rd.get(), &got, &done);
  std::this_thread::sleep_for(5ms);
  REQUIRE(::write(wr.get(), "hello actor", 11) == 11);
  REQUIRE(eventually([&] { return done.load() != 0; }));
  CHECK(done.load() == 1);
  CHECK(got == "hello actor");

  int q[2];
  REQUIRE(::pipe(q) == 0);
  test::Fd rd2(q[0]), wr2(q[1]);
  std::atomic<int> res{1};
  spawn<Waiter>(rt, 0, rd2.get(), &res);
  REQUIRE(eventually([&] { return res.load() != 1; }));
  CHECK(res.load() == -ECANCELED);
  rt.stop();
  rt.wait();
}

namespace {
// A multishot timeout the kernel ends after every third tick: io_multishot
// re-arms it until cancel_io.
struct Ticker : Actor<Ticker> {
  uring::Timespec interval{1ms};  // read by the kernel at each arm: lives with the actor
  IoId id{};
  std::atomic<int>* ticks;
  std::atomic<int>* ended;
  std::atomic<int>* cancelled;
  Ticker(std::atomic<int>* t, std::atomic<int>* e, std::atomic<int>* c) : ticks(t), ended(e), cancelled(c) {}
  void on_start() override {
    id = io_multishot(3, [this](io_uring_sqe* sqe) { uring::prep_timeout(sqe, &interval, 3, IORING_TIMEOUT_MULTISHOT); });
  }
  void on_message(const IoResult& r) {
    if (r.res == -ECANCELED) {
      cancelled->fetch_add(1);
      return;
    }
    CHECK(r.res == -ETIME);
    ticks->fetch_add(1);
    if (!r.more()) ended->fetch_add(1);
    if (ticks->load() == 9) cancel_io(id);
  }
};
}  // namespace

TEST_CASE("a multishot operation the kernel ends is re-armed until cancel_io") {
  Runtime rt(opts(1));
  rt.start();
  std::atomic<int> ticks{0}, ended{0}, cancelled{0};
  spawn<Ticker>(rt, 0, &ticks, &ended, &cancelled);
  REQUIRE(eventually([&] { return cancelled.load() == 1; }, 5s));
  CHECK(ticks.load() == 9);
  CHECK(ended.load() == 3);  // ended three times, armed four
  std::this_thread::sleep_for(20ms);
  CHECK(ticks.load() == 9);  // nothing after the cancellation
  rt.stop();
  rt.wait();
}

namespace {
struct Lingering : Actor<Lingering> {
  int fd;
  std::atomic<int>* stops;
  char buf[8] = {};
  Lingering(int f, std::atomic<int>* s) : fd(f), stops(s) {}
  void on_start() override {
    io(1, [this](io_uring_sqe* sqe) { uring::prep_read(sqe, fd, uring::MutableBuffer(buf, sizeof buf), 0); });
  }
  void on_stop() override { stops->fetch_add(1); }
  void on_message(const IoResult&) {}
  void on_message(const Add&) {}
};
}  // namespace

TEST_CASE("graceful stop with messages and I/O in flight: every actor's on_stop runs, threads join") {
  Runtime rt(opts(2));
  rt.start();
  int p[2];
  REQUIRE(::pipe(p) == 0);
  test::Fd rd(p[0]), wr(p[1]);
  std::atomic<int> stops{0};
  std::vector<ActorRef<Lingering>> refs;
  for (int i = 0; i < 200; ++i) refs.push_back(spawn<Lingering>(rt, static_cast<unsigned>(i % 2), rd.get(), &stops));
  for (int k = 0; k < 50; ++k)
    for (auto& r : refs) send(r, Add{1});
  const auto start = Clock::now();
  rt.stop();
  rt.wait();
  CHECK(Clock::now() - start < 3s);
  CHECK(stops.load() == 200);
}

TEST_CASE("spawn and stop from other shards, many times") {
  Runtime rt(opts(2));
  rt.start();
  std::atomic<long> total{0};
  std::atomic<int> started{0}, stopped{0};
  struct Spawner : Actor<Spawner> {
    std::atomic<long>* total;
    std::atomic<int>* started;
    std::atomic<int>* stopped;
    Spawner(std::atomic<long>* t, std::atomic<int>* s, std::atomic<int>* p) : total(t), started(s), stopped(p) {}
    void on_start() override {
      const unsigned other = shard().id() ^ 1u;
      for (int i = 0; i < 1000; ++i) {
        auto c = spawn<Counter>(other, total, started, stopped);
        send(c, Add{1});
        ringshard::actors::stop(c);
      }
    }
  };
  spawn<Spawner>(rt, 0, &total, &started, &stopped);
  spawn<Spawner>(rt, 1, &total, &started, &stopped);
  REQUIRE(eventually([&] { return stopped.load() == 2000; }));
  CHECK(started.load() == 2000);
  CHECK(total.load() == 2000);
  CHECK(ActorTable::of(rt.shard(0)).live() == 1);  // just the spawner
  CHECK(ActorTable::of(rt.shard(1)).live() == 1);
  rt.stop();
  rt.wait();
}

TEST_CASE("ask from plain shard code gets its answer as a callback on the asking shard") {
  Runtime rt(opts(2));
  rt.start();
  std::atomic<long> total{0};
  std::atomic<int> started{0}, stopped{0}, answer{-1}, right_shard{0};
  auto counter = spawn<Counter>(rt, 1, &total, &started, &stopped);
  send(counter, Add{5});
  REQUIRE(eventually([&] { return total.load() == 5; }));
  rt.post(0, [&] {
    ringshard::actors::ask(counter, GetCount{}, [&](AskResult<int> n) {
      right_shard.store(Shard::current() == &rt.shard(0) ? 1 : 2);
      answer.store(n.value());
    });
  });
  REQUIRE(eventually([&] { return answer.load() == 5; }));
  CHECK(right_shard.load() == 1);
  rt.stop();
  rt.wait();
}
