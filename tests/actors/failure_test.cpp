// An exception thrown by a handler stops that actor (through on_failure)
// with one error line naming the actor's type and the exception; the shard
// and every other actor keep running.
#include <spdlog/sinks/ostream_sink.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <unistd.h>

#include "ringshard/actors/actor.hpp"
#include "ringshard/framework/log.hpp"
#include "runtime_support.hpp"
#include "support.hpp"

using namespace ringshard;
using namespace ringshard::actors;
using namespace std::chrono_literals;
using ringshard::test::opts;
using ringshard::test::eventually;

namespace {


/// Collects the project's log lines while alive (install it before a Runtime starts).
class LogCapture {
 public:
  LogCapture() : sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(out_)) {
    sink_->set_pattern("%l %v");
    logger().sinks().push_back(sink_);
  }
  ~LogCapture() {
    auto& sinks = logger().sinks();
    for (auto it = sinks.begin(); it != sinks.end(); ++it) {
      if (*it == sink_) {
        sinks.erase(it);
        break;
      }
    }
  }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;
  /// The lines logged so far (call once the Runtime has stopped).
  std::string text() {
    sink_->flush();
    return out_.str();
  }
  int count(const std::string& needle) {
    const std::string t = text();
    int n = 0;
    for (std::size_t at = t.find(needle); at != std::string::npos; at = t.find(needle, at + 1)) ++n;
    return n;
  }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
};

struct Boom {
  std::string what;
};
struct NotAnException {};
struct Poke {};
struct Question {
  using Response = int;
};

/// Throws from whichever handler it is told to.
struct Fragile : Actor<Fragile> {
  std::atomic<int>* pokes;
  std::atomic<int>* stops;
  bool throw_on_start;
  Fragile(std::atomic<int>* p, std::atomic<int>* s, bool on_start = false)
      : pokes(p), stops(s), throw_on_start(on_start) {}
  void on_start() override {
    if (throw_on_start) throw std::runtime_error("start failed");
  }
  void on_stop() override { stops->fetch_add(1); }
  void on_message(const Boom& b) { throw std::runtime_error(b.what); }
  void on_message(const NotAnException&) { throw 42; }
  void on_message(const Poke&) { pokes->fetch_add(1); }
  int on_message(const Question&) { throw std::logic_error("no answer for you"); }
};

}  // namespace

TEST_CASE("a handler that throws stops its actor with one error line, the shard and other actors go on") {
  LogCapture log;
  {
    Runtime rt(opts(2));
    rt.start();
    std::atomic<int> pokes{0}, stops{0};
    auto victim = spawn<Fragile>(rt, 0, &pokes, &stops);
    auto neighbour = spawn<Fragile>(rt, 0, &pokes, &stops);  // same shard
    send(victim, Poke{});
    REQUIRE(eventually([&] { return pokes.load() == 1; }));
    send(victim, Boom{"disk on fire"});
    REQUIRE(eventually([&] { return stops.load() == 1; }));  // the victim stopped (on_stop ran)
    send(victim, Poke{});                                      // a dead letter now
    send(neighbour, Poke{});
    REQUIRE(eventually([&] { return pokes.load() == 2; }));
    std::this_thread::sleep_for(10ms);
    CHECK(pokes.load() == 2);
    CHECK(ActorTable::of(rt.shard(0)).live() == 1);

    // A thrown object that is no std::exception.
    auto other = spawn<Fragile>(rt, 1, &pokes, &stops);
    send(other, NotAnException{});
    REQUIRE(eventually([&] { return stops.load() == 2; }));
    // on_start throwing.
    spawn<Fragile>(rt, 1, &pokes, &stops, true);
    REQUIRE(eventually([&] { return stops.load() == 3; }));
    send(neighbour, Poke{});
    REQUIRE(eventually([&] { return pokes.load() == 3; }));
    rt.stop();
    rt.wait();
  }
  CHECK(log.count("error ") == 3);  // one line per failure
  CHECK(log.count("Fragile") == 3);
  CHECK(log.count("disk on fire") == 1);
  CHECK(log.count("unknown exception") == 1);
  CHECK(log.count("start failed") == 1);
}

namespace {
/// Records what on_failure saw, then stops as the default does.
struct Careful : Actor<Careful> {
  std::string* seen;
  std::atomic<int>* failures;
  Careful(std::string* s, std::atomic<int>* f) : seen(s), failures(f) {}
  void on_message(const Boom& b) { throw std::runtime_error(b.what); }
  void on_message(const Poke&) {}

 protected:
  void on_failure(std::exception_ptr error) override {
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      *seen = e.what();
    }
    failures->fetch_add(1);
    ActorBase::on_failure(error);
  }
};

/// Keeps going after a failure: on_failure does not stop it.
struct Stubborn : Actor<Stubborn> {
  std::atomic<int>* pokes;
  explicit Stubborn(std::atomic<int>* p) : pokes(p) {}
  void on_message(const Boom& b) { throw std::runtime_error(b.what); }
  void on_message(const Poke&) { pokes->fetch_add(1); }

 protected:
  void on_failure(std::exception_ptr) override {}
};
}  // namespace

TEST_CASE("on_failure sees the exception after it is logged, and by default stops the actor") {
  Runtime rt(opts(1));
  rt.start();
  std::string seen;
  std::atomic<int> failures{0}, pokes{0};
  auto careful = spawn<Careful>(rt, 0, &seen, &failures);
  send(careful, Boom{"bad input"});
  REQUIRE(eventually([&] { return failures.load() == 1; }));
  REQUIRE(eventually([&] { return ActorTable::of(rt.shard(0)).live() == 0; }));
  CHECK(seen == "bad input");
  auto stubborn = spawn<Stubborn>(rt, 0, &pokes);
  send(stubborn, Boom{"shrug"});
  send(stubborn, Poke{});
  REQUIRE(eventually([&] { return pokes.load() == 1; }));
  CHECK(ActorTable::of(rt.shard(0)).live() == 1);
  rt.stop();
  rt.wait();
}

namespace {
struct Ticker : Actor<Ticker> {
  struct Tick {};
  std::atomic<int>* stops;
  explicit Ticker(std::atomic<int>* s) : stops(s) {}
  void on_start() override { after(1ms, Tick{}); }
  void on_message(const Tick&) { throw std::runtime_error("tick failed"); }
  void on_stop() override { stops->fetch_add(1); }
};

struct PipeReader : Actor<PipeReader> {
  int fd;
  std::atomic<int>* stops;
  char buf[8] = {};
  PipeReader(int f, std::atomic<int>* s) : fd(f), stops(s) {}
  void on_start() override {
    io(1, [this](io_uring_sqe* sqe) { uring::prep_read(sqe, fd, uring::MutableBuffer(buf, sizeof buf), 0); });
  }
  void on_message(const IoResult&) { throw std::runtime_error("read failed"); }
  void on_stop() override { stops->fetch_add(1); }
};

/// Asks `to` and throws from the callback (or expects target_gone when `expect_gone`).
struct CallbackThrower : Actor<CallbackThrower> {
  ActorRef<Fragile> to;
  std::atomic<int>* stops;
  std::atomic<int>* gone;
  CallbackThrower(ActorRef<Fragile> t, std::atomic<int>* s, std::atomic<int>* g) : to(t), stops(s), gone(g) {}
  void on_start() override {
    ask(to, Question{}, [this](AskResult<int> r) {
      if (r.status() == AskStatus::target_gone) gone->fetch_add(1);
      (void)r.value();  // throws BadAskAccess: the target failed
    });
  }
  void on_stop() override { stops->fetch_add(1); }
};
}  // namespace

TEST_CASE("failures in timer messages, I/O completions, ask targets and ask callbacks are caught") {
  LogCapture log;
  {
    Runtime rt(opts(2));
    rt.start();
    std::atomic<int> stops{0}, pokes{0}, fragile_stops{0}, gone{0};
    spawn<Ticker>(rt, 0, &stops);
    REQUIRE(eventually([&] { return stops.load() == 1; }));

    int p[2];
    REQUIRE(::pipe(p) == 0);
    test::Fd rd(p[0]), wr(p[1]);
    spawn<PipeReader>(rt, 1, rd.get(), &stops);
    std::this_thread::sleep_for(5ms);
    REQUIRE(::write(wr.get(), "x", 1) == 1);
    REQUIRE(eventually([&] { return stops.load() == 2; }));

    // The target throws from the ask handler: the asker hears target_gone,
    // and its callback throws in turn (value() on no answer): both stop.
    auto target = spawn<Fragile>(rt, 1, &pokes, &fragile_stops);
    spawn<CallbackThrower>(rt, 0, target, &stops, &gone);
    REQUIRE(eventually([&] { return stops.load() == 3 && fragile_stops.load() == 1; }));
    CHECK(gone.load() == 1);

    // A throwing callback of a plain-code ask is logged and swallowed.
    auto target2 = spawn<Fragile>(rt, 0, &pokes, &fragile_stops);
    std::atomic<int> ran{0};
    rt.post(0, [&, target2] {
      ask(target2, Question{}, [&ran](AskResult<int>) {
        ran.fetch_add(1);
        throw std::runtime_error("plain callback failed");
      });
    });
    REQUIRE(eventually([&] { return ran.load() == 1; }));
    auto survivor = spawn<Fragile>(rt, 0, &pokes, &fragile_stops);
    send(survivor, Poke{});
    REQUIRE(eventually([&] { return pokes.load() == 1; }));
    rt.stop();
    rt.wait();
  }
  CHECK(log.count("tick failed") == 1);
  CHECK(log.count("read failed") == 1);
  CHECK(log.count("no answer for you") == 2);  // both targets
  CHECK(log.count("CallbackThrower") == 1);
  CHECK(log.count("target_gone") == 1);  // BadAskAccess's message
  CHECK(log.count("plain callback failed") == 1);
}
