// One suspend/resume through the reactor: a coroutine awaiting a NOP
// (co_await io(prep_nop)) against the same NOP completed by a Completion
// callback, each iteration one reactor turn (submit, enter, dispatch) on a
// DEFER_TASKRUN ring. The difference is the cost of the coroutine: the
// await's suspend, the resume from the CQE and the frame's bookkeeping.
// Also a Task awaiting a Task that completes at once (no I/O: a pooled
// frame and two symmetric transfers).
#include <benchmark/benchmark.h>

#include <cstdint>

#include "ringshard/framework/reactor.hpp"
#include "ringshard/framework/task.hpp"

namespace {

using namespace ringshard;

// The callback form: the completion submits the next NOP itself.
struct NopLoop final : Completion {
  Reactor* reactor = nullptr;
  std::int64_t res_sum = 0;
  std::uint64_t done = 0;
  void submit() {
    reactor->submit(*this, [](io_uring_sqe* sqe) { uring::prep_nop(sqe); });
  }
  void complete(const io_uring_cqe& cqe) override {
    res_sum += cqe.res;
    ++done;
    submit();
  }
};

void BM_reactor_nop_callback(benchmark::State& state) {
  Reactor reactor;
  NopLoop loop;
  loop.reactor = &reactor;
  loop.submit();
  for (auto _ : state) reactor.run_once(true);
  if (loop.res_sum != 0) state.SkipWithError("a NOP failed");
  state.SetItemsProcessed(static_cast<std::int64_t>(loop.done));
}

struct Counter {
  std::uint64_t done = 0;
  std::int64_t res_sum = 0;
  bool stop = false;
};

Task<> nop_awaits(Counter& c) {
  while (!c.stop) {
    c.res_sum += co_await io([](io_uring_sqe* sqe) { uring::prep_nop(sqe); });
    ++c.done;
  }
}

void BM_coroutine_nop_await(benchmark::State& state) {
  Reactor reactor;
  ReactorScope scope(reactor);
  Counter c;
  TaskHandle h = spawn(nop_awaits(c));
  for (auto _ : state) reactor.run_once(true);
  c.stop = true;
  reactor.run_once(true);  // the last NOP completes, the task ends
  if (c.res_sum != 0 || h.running()) state.SkipWithError("a NOP failed, or the task did not end");
  state.SetItemsProcessed(static_cast<std::int64_t>(c.done));
}

Task<int> leaf(int v) { co_return v + 1; }

Task<> task_awaits(Counter& c, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) c.res_sum += co_await leaf(static_cast<int>(i & 1));
  c.done += static_cast<std::uint64_t>(n);
}

// A Task awaiting a Task that completes at once: a frame from the pool, two
// symmetric transfers, no reactor.
void BM_task_await_task(benchmark::State& state) {
  Counter c;
  for (auto _ : state) {
    spawn(task_awaits(c, 1000));
  }
  benchmark::DoNotOptimize(c.res_sum);
  state.SetItemsProcessed(static_cast<std::int64_t>(c.done));
}

}  // namespace

BENCHMARK(BM_reactor_nop_callback);
BENCHMARK(BM_coroutine_nop_await);
BENCHMARK(BM_task_await_task);
