// Asks: every callback runs once and says what happened (answered,
// target_gone, dropped, timed_out); deadlines; late answers are dropped and
// never reach a newer ask that reuses the slot; an asker that stops discards
// its pending asks.
#include <atomic>
#include <chrono>
#include <optional>
#include <string>
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


std::uint64_t late_answers(Runtime& rt) {
  std::uint64_t n = 0;
  for (unsigned i = 0; i < rt.shard_count(); ++i) n += ActorTable::of(rt.shard(i)).late_answers();
  return n;
}

/// Runs `f` on shard `i` and waits until it has run.
template <class F>
void on_shard(Runtime& rt, unsigned i, F f) {
  std::atomic<bool> done{false};
  rt.post(i, [&] {
    f();
    done.store(true);
  });
  REQUIRE(eventually([&] { return done.load(); }));
}

std::size_t pending_asks(Runtime& rt, unsigned i) {
  std::size_t n = 0;
  on_shard(rt, i, [&] { n = ActorTable::of(rt.shard(i)).pending_asks(); });
  return n;
}

struct Question {
  using Response = int;
  int n;
};

/// Answers n % 4 == 0 at once, drops the Reply for n % 4 == 1, keeps it
/// otherwise (answered by Release, or lost when the holder stops).
struct Holder : Actor<Holder> {
  std::vector<Reply<int>> held;
  std::atomic<std::size_t>* held_count = nullptr;  // optional: how many it holds
  Holder() = default;
  explicit Holder(std::atomic<std::size_t>* c) : held_count(c) {}
  struct Release {
    std::size_t index;
    int value;
  };
  struct ReleaseAll {
    int value;
  };
  void on_message(const Question& q, Reply<int> reply) {
    if (q.n % 4 == 0) {
      reply(q.n);
    } else if (q.n % 4 != 1) {
      held.push_back(std::move(reply));
      if (held_count != nullptr) held_count->store(held.size());
    }  // n % 4 == 1: the Reply goes out of scope unanswered
  }
  void on_message(const Release& r) { held.at(r.index)(r.value); }
  void on_message(const ReleaseAll& r) {
    for (auto& reply : held) reply(r.value);
  }
};

/// What the callbacks saw, by status, plus the answers' values.
struct Outcomes {
  std::atomic<int> answered{0}, target_gone{0}, dropped{0}, timed_out{0}, wrong_shard{0};
  std::atomic<long> sum{0};
  void record(const AskResult<int>& r, unsigned expected_shard) {
    if (Shard::current() == nullptr || Shard::current()->id() != expected_shard) wrong_shard.fetch_add(1);
    switch (r.status()) {
      case AskStatus::answered:
        answered.fetch_add(1);
        sum.fetch_add(r.value());
        break;
      case AskStatus::target_gone: target_gone.fetch_add(1); break;
      case AskStatus::dropped: dropped.fetch_add(1); break;
      case AskStatus::timed_out: timed_out.fetch_add(1); break;
      case AskStatus::canceled: break;  // only for a coroutine's co_await ask: not counted, so totals catch it
    }
  }
  [[nodiscard]] int total() const { return answered + target_gone + dropped + timed_out; }
};

struct Asking : Actor<Asking> {
  Outcomes* out;
  explicit Asking(Outcomes* o) : out(o) {}
  struct AskIt {
    ActorRef<Holder> to;
    int n;
    std::chrono::nanoseconds timeout{0};
  };
  void on_message(const AskIt& a) {
    ask(a.to, Question{a.n}, a.timeout, [this](AskResult<int> r) { out->record(r, shard().id()); });
  }
};

}  // namespace

TEST_CASE("AskResult: status, value, value_or, to_string") {
  AskResult<std::string> yes(std::string("hi"));
  CHECK(yes.ok());
  CHECK(static_cast<bool>(yes));
  CHECK(yes.status() == AskStatus::answered);
  CHECK(*yes == "hi");
  CHECK(yes->size() == 2);
  CHECK(yes.value() == "hi");
  AskResult<std::string> no(AskStatus::timed_out);
  CHECK(!no.ok());
  CHECK(no.value_or("fallback") == "fallback");
  CHECK_THROWS_AS((void)no.value(), BadAskAccess);
  CHECK(to_string(AskStatus::answered) == "answered");
  CHECK(to_string(AskStatus::target_gone) == "target_gone");
  CHECK(to_string(AskStatus::dropped) == "dropped");
  CHECK(to_string(AskStatus::timed_out) == "timed_out");
}

TEST_CASE("an ask's callback says what happened: answered, dropped, target_gone (from an actor and from plain code)") {
  Runtime rt(opts(2));
  rt.start();
  for (unsigned asker_shard : {0u, 1u}) {  // same shard as the holder, and across shards
    CAPTURE(asker_shard);
    Outcomes actor_out, plain_out;
    auto holder = spawn<Holder>(rt, 1);
    auto asking = spawn<Asking>(rt, asker_shard, &actor_out);
    send(asking, Asking::AskIt{holder, 4});  // answered at once
    send(asking, Asking::AskIt{holder, 5});  // Reply dropped unanswered
    send(asking, Asking::AskIt{holder, 6});  // held, then the holder stops
    rt.post(asker_shard, [&, holder, asker_shard] {
      for (int n : {8, 9, 10})
        ask(holder, Question{n}, [&plain_out, asker_shard](AskResult<int> r) { plain_out.record(r, asker_shard); });
    });
    REQUIRE(eventually([&] { return actor_out.total() == 2 && plain_out.total() == 2; }));
    stop(holder);  // the Replies it holds go with it
    REQUIRE(eventually([&] { return actor_out.total() == 3 && plain_out.total() == 3; }));
    // An ask to an actor that is gone.
    send(asking, Asking::AskIt{holder, 12});
    rt.post(asker_shard, [&, holder, asker_shard] {
      ask(holder, Question{12}, [&plain_out, asker_shard](AskResult<int> r) { plain_out.record(r, asker_shard); });
    });
    REQUIRE(eventually([&] { return actor_out.total() == 4 && plain_out.total() == 4; }));
    for (Outcomes* o : {&actor_out, &plain_out}) {
      CHECK(o->answered.load() == 1);
      CHECK(o->dropped.load() == 1);
      CHECK(o->target_gone.load() == 2);
      CHECK(o->timed_out.load() == 0);
      CHECK(o->wrong_shard.load() == 0);
    }
    CHECK(actor_out.sum.load() == 4);
    CHECK(plain_out.sum.load() == 8);
    stop(asking);
  }
  std::this_thread::sleep_for(20ms);
  CHECK(pending_asks(rt, 0) == 0);
  CHECK(pending_asks(rt, 1) == 0);
  rt.stop();
  rt.wait();
}

TEST_CASE("an ask with a deadline times out once on the asker's shard, and the late answer is dropped and counted") {
  Runtime rt(opts(2));
  rt.start();
  for (unsigned asker_shard : {0u, 1u}) {
    CAPTURE(asker_shard);
    Outcomes actor_out, plain_out;
    auto holder = spawn<Holder>(rt, 1);
    auto asking = spawn<Asking>(rt, asker_shard, &actor_out);
    const auto late_before = late_answers(rt);
    const auto start = Clock::now();
    send(asking, Asking::AskIt{holder, 2, 20ms});  // held: no answer in time
    rt.post(asker_shard, [&, holder, asker_shard] {
      ask(holder, Question{3}, 20ms, [&plain_out, asker_shard](AskResult<int> r) { plain_out.record(r, asker_shard); });
    });
    REQUIRE(eventually([&] { return actor_out.total() == 1 && plain_out.total() == 1; }));
    CHECK(Clock::now() - start >= 20ms);
    CHECK(actor_out.timed_out.load() == 1);
    CHECK(plain_out.timed_out.load() == 1);
    send(holder, Holder::ReleaseAll{7});  // too late
    REQUIRE(eventually([&] { return late_answers(rt) == late_before + 2; }));
    std::this_thread::sleep_for(20ms);
    CHECK(actor_out.total() == 1);  // exactly once
    CHECK(plain_out.total() == 1);
    CHECK(actor_out.wrong_shard.load() == 0);
    CHECK(plain_out.wrong_shard.load() == 0);

    // Answered before the deadline: the answer wins and the timer is gone.
    send(asking, Asking::AskIt{holder, 4, 10s});
    REQUIRE(eventually([&] { return actor_out.answered.load() == 1; }));
    std::size_t timers = 99;
    on_shard(rt, asker_shard, [&] { timers = Shard::current()->reactor().timers(); });
    CHECK(timers == 0);
    stop(asking);
    stop(holder);
  }
  rt.stop();
  rt.wait();
}

TEST_CASE("a late answer never reaches the newer ask that reuses its slot") {
  Runtime rt(opts(1));
  rt.start();
  Outcomes out;
  auto holder = spawn<Holder>(rt, 0);
  auto asking = spawn<Asking>(rt, 0, &out);
  send(asking, Asking::AskIt{holder, 2, 5ms});  // held as held[0], times out
  REQUIRE(eventually([&] { return out.timed_out.load() == 1; }));
  send(asking, Asking::AskIt{holder, 3});  // held as held[1]; takes the slot the first one freed
  std::this_thread::sleep_for(10ms);
  send(holder, Holder::Release{0, 100});  // the first ask's late answer
  REQUIRE(eventually([&] { return late_answers(rt) == 1; }));
  std::this_thread::sleep_for(10ms);
  CHECK(out.answered.load() == 0);  // not delivered to the second ask
  send(holder, Holder::Release{1, 7});
  REQUIRE(eventually([&] { return out.answered.load() == 1; }));
  CHECK(out.sum.load() == 7);
  CHECK(out.total() == 2);
  rt.stop();
  rt.wait();
}

namespace {
struct ManyAsker : Actor<ManyAsker> {
  ActorRef<Holder> holder;
  int count;
  std::atomic<int>* callbacks;
  ManyAsker(ActorRef<Holder> h, int c, std::atomic<int>* cb) : holder(h), count(c), callbacks(cb) {}
  void on_start() override {
    for (int i = 0; i < count; ++i) {
      ask(holder, Question{4 * i + 2}, i % 2 ? 10s : 0s, [this](AskResult<int>) { callbacks->fetch_add(1); });
    }
  }
};
}  // namespace

TEST_CASE("an asker that stops discards its pending asks: no callback runs, no slot or timer is left behind") {
  Runtime rt(opts(2));
  rt.start();
  std::atomic<int> callbacks{0};
  constexpr int kAsks = 10000;
  for (unsigned asker_shard : {0u, 1u}) {
    CAPTURE(asker_shard);
    std::atomic<std::size_t> held{0};
    auto holder = spawn<Holder>(rt, 1, &held);
    auto asker = spawn<ManyAsker>(rt, asker_shard, holder, kAsks, &callbacks);
    REQUIRE(eventually([&] { return held.load() == kAsks; }));  // every ask reached the holder
    REQUIRE(pending_asks(rt, asker_shard) == kAsks);
    const auto late_before = late_answers(rt);
    stop(asker);
    REQUIRE(eventually([&] { return pending_asks(rt, asker_shard) == 0; }));
    std::size_t timers = 99;
    on_shard(rt, asker_shard, [&] { timers = Shard::current()->reactor().timers(); });
    CHECK(timers == 0);
    send(holder, Holder::ReleaseAll{1});
    REQUIRE(eventually([&] { return late_answers(rt) == late_before + kAsks; }));
    stop(holder);
  }
  std::this_thread::sleep_for(20ms);
  CHECK(callbacks.load() == 0);
  rt.stop();
  rt.wait();
}

namespace {
/// Asks `count` questions, one per message, cycling through every outcome.
struct Mixer : Actor<Mixer> {
  ActorRef<Holder> holder;
  Outcomes* out;
  int left;
  Mixer(ActorRef<Holder> h, Outcomes* o, int n) : holder(h), out(o), left(n) {}
  struct More {};
  void on_start() override { send(self(), More{}); }
  void on_message(const More&) {
    for (int k = 0; k < 256 && left > 0; ++k, --left) {
      // 4k: answered, 4k+1: dropped, 4k+2 and 4k+3: held, then timed out.
      // The ones answered at once get a deadline no loaded machine reaches.
      const auto deadline = left % 4 >= 2 ? std::chrono::milliseconds(200) : std::chrono::milliseconds(120000);
      ask(holder, Question{left}, deadline, [this](AskResult<int> r) { out->record(r, shard().id()); });
    }
    if (left > 0) send(self(), More{});
  }
};
}  // namespace

TEST_CASE("many asks across shards with every outcome: each callback runs exactly once") {
  Runtime rt(opts(3));
  rt.start();
  constexpr int kPerAsker = 20000;
  Outcomes out[3];
  std::vector<ActorRef<Holder>> holders;
  for (unsigned s = 0; s < 3; ++s) holders.push_back(spawn<Holder>(rt, s));
  for (unsigned s = 0; s < 3; ++s) spawn<Mixer>(rt, s, holders[(s + 1) % 3], &out[s], kPerAsker);
  REQUIRE(eventually([&] { return out[0].total() + out[1].total() + out[2].total() == 3 * kPerAsker; }, 60s));
  std::this_thread::sleep_for(20ms);
  for (auto& o : out) {
    CHECK(o.total() == kPerAsker);
    CHECK(o.answered.load() == kPerAsker / 4);
    CHECK(o.dropped.load() == kPerAsker / 4);
    CHECK(o.timed_out.load() == kPerAsker / 2);
    CHECK(o.wrong_shard.load() == 0);
  }
  for (unsigned s = 0; s < 3; ++s) CHECK(pending_asks(rt, s) == 0);
  rt.stop();
  rt.wait();
}
