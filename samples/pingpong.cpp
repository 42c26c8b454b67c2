// ringshard-pingpong: pairs of actors bounce a message between shards.
//
//   ringshard-pingpong [--shards N] [--actors M] [--messages K] [--busy-poll]
//
// M pairs of actors; pair i has one actor on shard i % N and its partner on
// shard (i + 1) % N, so with more than one shard every hop crosses shards.
// Each pair bounces one ball K times (K messages handled per pair, M * K in
// all). When every pair is done it prints, for each shard, the messages its
// actors handled divided by the elapsed time, then the total, stops the
// runtime and exits 0.
//
// With one ball per pair the numbers are mostly latency: a shard that has
// nothing to do sleeps until a ball comes back, and waking a sleeping thread
// costs far more than a hop. More pairs put more balls in flight; --busy-poll
// keeps the shards from sleeping at all (RuntimeOptions::busy_poll).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "common/cli.hpp"
#include "ringshard/actors/actor.hpp"

namespace {

using namespace ringshard;
using namespace ringshard::actors;

struct Options {
  unsigned shards = 0;  // 0: one per CPU
  unsigned pairs = 4;
  std::uint64_t messages = 100000;
  bool busy_poll = false;
};

Options parse_options(int argc, char** argv) {
  samples::CommandLine app(
      "ringshard-pingpong: pairs of actors on different shards bounce messages; prints messages/s per shard",
      "ringshard-pingpong");
  Options o;
  app.option("--shards", o.shards, "shards (threads, one per core); 0: one per CPU").range(0u, 1024u).show_default();
  app.option("--actors", o.pairs, "pairs of actors, each bouncing its own ball").range(1u, 1'000'000u).show_default();
  app.option("--messages", o.messages, "messages each pair bounces")
      .range(std::uint64_t{1}, std::uint64_t{1} << 40)
      .show_default();
  app.flag("--busy-poll", o.busy_poll, "shards poll instead of sleeping when idle");
  app.parse_or_exit(argc, argv);
  return o;
}

// Messages handled on one shard. Only that shard's thread writes it (no
// read-modify-write needed); main reads it after every pair has finished.
struct alignas(64) ShardCount {
  std::atomic<std::uint64_t> handled{0};
  void add_one() noexcept { handled.store(handled.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed); }
};

struct Finish {
  std::atomic<unsigned> pairs_done{0};
  unsigned pairs = 0;
  void pair_done() noexcept {
    if (pairs_done.fetch_add(1, std::memory_order_acq_rel) + 1 == pairs) pairs_done.notify_all();
  }
  void wait() noexcept {
    for (unsigned seen = pairs_done.load(std::memory_order_acquire); seen < pairs;
         seen = pairs_done.load(std::memory_order_acquire)) {
      pairs_done.wait(seen, std::memory_order_acquire);
    }
  }
};

struct Ball {
  std::uint64_t left;  // messages still to handle in this pair, this one included
};
struct Serve {
  std::uint64_t messages;
};

struct Player;
struct Partner {
  ActorRef<Player> ref;
};

struct Player : Actor<Player> {
  ShardCount* count;  // this shard's counter
  Finish* finish;
  ActorRef<Player> peer;
  Player(ShardCount* c, Finish* f, ActorRef<Player> p) : count(c), finish(f), peer(p) {}

  void on_message(const Partner& p) { peer = p.ref; }
  void on_message(const Serve& s) { send(peer, Ball{s.messages}); }
  void on_message(const Ball& b) {
    count->add_one();
    if (b.left == 1) {
      finish->pair_done();
    } else {
      send(peer, Ball{b.left - 1});
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  const Options opt = parse_options(argc, argv);
  try {
    RuntimeOptions ro;
    ro.shards = opt.shards;
    ro.busy_poll = opt.busy_poll;
    Runtime rt(ro);
    rt.start();
    const unsigned n = rt.shard_count();
    std::vector<ShardCount> counts(n);
    Finish finish;
    finish.pairs = opt.pairs;

    std::vector<ActorRef<Player>> servers;
    servers.reserve(opt.pairs);
    for (unsigned i = 0; i < opt.pairs; ++i) {
      const unsigned a = i % n;
      const unsigned b = (i + 1) % n;
      auto first = spawn<Player>(rt, a, &counts[a], &finish, ActorRef<Player>{});
      auto second = spawn<Player>(rt, b, &counts[b], &finish, first);
      send(first, Partner{second});
      servers.push_back(first);
    }
    std::printf("ringshard-pingpong: %u shard%s, %u pair%s, %llu messages per pair\n", n, n == 1 ? "" : "s",
                opt.pairs, opt.pairs == 1 ? "" : "s", static_cast<unsigned long long>(opt.messages));

    const auto begin = std::chrono::steady_clock::now();
    for (const auto& s : servers) send(s, Serve{opt.messages});
    finish.wait();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();

    std::uint64_t total = 0;
    for (unsigned s = 0; s < n; ++s) {
      const std::uint64_t handled = counts[s].handled.load(std::memory_order_relaxed);
      total += handled;
      std::printf("shard %u: %llu messages, %.0f messages/s\n", s, static_cast<unsigned long long>(handled),
                  static_cast<double>(handled) / seconds);
    }
    std::printf("total: %llu messages in %.3f s, %.0f messages/s\n", static_cast<unsigned long long>(total), seconds,
                static_cast<double>(total) / seconds);
    std::fflush(stdout);
    rt.stop();
    rt.wait();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ringshard-pingpong: %s\n", e.what());
    return 1;
  }
  return 0;
}
