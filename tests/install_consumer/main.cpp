// Uses the installed headers and libraries the way an outside project would:
// one NOP through a Ring, then an actor on a two-shard Runtime.

// Nothing but this project's own build may define SPDLOG_ACTIVE_LEVEL, and it
// does not: ringshard must not push its logging level onto its users.
#ifdef SPDLOG_ACTIVE_LEVEL
#error "SPDLOG_ACTIVE_LEVEL is defined on the command line: ringshard's exported targets impose it"
#endif

#include <atomic>
#include <chrono>
#include <cstdio>
#include <system_error>
#include <thread>

#include "ringshard/actors/actor.hpp"
#include "ringshard/framework/log.hpp"
#include "ringshard/framework/uring.hpp"

// The public headers leave spdlog's default level alone too.
static_assert(SPDLOG_ACTIVE_LEVEL == SPDLOG_LEVEL_INFO,
              "a ringshard header changed SPDLOG_ACTIVE_LEVEL for this project");

namespace {
struct Hello {
  int value;
};
struct Greeter : ringshard::actors::Actor<Greeter> {
  std::atomic<int>* got;
  explicit Greeter(std::atomic<int>* g) : got(g) {}
  void on_message(const Hello& h) { got->store(h.value); }
};
}  // namespace

int main() {
  try {
    ringshard::uring::Ring ring(4);
    io_uring_sqe* sqe = ring.get_sqe();
    ringshard::uring::prep_nop(sqe);
    ringshard::uring::sqe_set_data64(sqe, 42);
    if (ring.submit() != 1) return 1;
    io_uring_cqe* cqe = nullptr;
    if (ring.wait_cqe(&cqe) != 0) return 1;
    const bool ok = cqe->res == 0 && cqe->user_data == 42;
    ring.cqe_seen(cqe);
    std::printf("installed ringshard: NOP %s\n", ok ? "completed" : "failed");
    if (!ok) return 1;

    // ringshard's own debug lines stay available, whatever this project's level.
    RINGSHARD_LOG_DEBUG("installed ringshard: debug logging compiled in");

    ringshard::RuntimeOptions options;
    options.shards = 2;
    ringshard::Runtime runtime(options);
    runtime.start();
    std::atomic<int> got{0};
    auto greeter = ringshard::actors::spawn<Greeter>(runtime, 1, &got);
    ringshard::actors::send(greeter, Hello{7});
    for (int i = 0; i < 5000 && got.load() != 7; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    runtime.stop();
    runtime.wait();
    std::printf("installed ringshard: actor message %s\n", got.load() == 7 ? "delivered" : "lost");
    return got.load() == 7 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
