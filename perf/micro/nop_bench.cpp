// NOP round trips: the cost of the ring itself, without any I/O.
//
// Each iteration takes `batch` SQEs, prepares NOPs, submits them with one
// io_uring_enter that also waits for `batch` completions, then reaps every
// CQE and publishes the CQ head once. The same loop runs on
// ringshard::uring::Ring and on liburing's struct io_uring (same ring size,
// same setup flags), so the two rows of each batch size are directly
// comparable; items/s counts NOPs.
#include <liburing.h>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <exception>
#include <string>

#include "ringshard/framework/uring.hpp"

namespace {

constexpr unsigned kRingEntries = 256;
constexpr unsigned kPlain = 0;
constexpr unsigned kDeferTaskrun = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;

template <unsigned SetupFlags>
void BM_nop_ringshard(benchmark::State& state) {
  using namespace ringshard::uring;
  const auto batch = static_cast<unsigned>(state.range(0));
  SetupOptions options;
  options.flags = SetupFlags;
  try {
    Ring ring(kRingEntries, options);
    std::int64_t res_sum = 0;
    for (auto _ : state) {
      for (unsigned i = 0; i < batch; ++i) {
        io_uring_sqe* sqe = ring.get_sqe();
        if (sqe == nullptr) {
          state.SkipWithError("get_sqe returned nullptr");
          return;
        }
        prep_nop(sqe);
        sqe_set_data64(sqe, i);
      }
      if (ring.submit_and_wait(batch) < 0) {
        state.SkipWithError("submit_and_wait failed");
        return;
      }
      unsigned reaped = ring.for_each_cqe([&](const io_uring_cqe& cqe) { res_sum += cqe.res; });
      while (reaped < batch) {  // not taken for NOPs, which complete inline
        io_uring_cqe* cqe = nullptr;
        if (ring.wait_cqe_nr(&cqe, batch - reaped) < 0) {
          state.SkipWithError("wait_cqe_nr failed");
          return;
        }
        reaped += ring.for_each_cqe([&](const io_uring_cqe& c) { res_sum += c.res; });
      }
    }
    benchmark::DoNotOptimize(res_sum);
    if (res_sum != 0) state.SkipWithError("a NOP completed with an error");
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(batch));
}

template <unsigned SetupFlags>
void BM_nop_liburing(benchmark::State& state) {
  const auto batch = static_cast<unsigned>(state.range(0));
  io_uring ring;
  io_uring_params params{};
  params.flags = SetupFlags;
  if (const int ret = io_uring_queue_init_params(kRingEntries, &ring, &params); ret < 0) {
    state.SkipWithError(("io_uring_queue_init_params failed: " + std::to_string(ret)).c_str());
    return;
  }
  std::int64_t res_sum = 0;
  bool failed = false;
  for (auto _ : state) {
    for (unsigned i = 0; i < batch; ++i) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring);
      if (sqe == nullptr) {
        state.SkipWithError("io_uring_get_sqe returned NULL");
        failed = true;
        break;
      }
      io_uring_prep_nop(sqe);
      io_uring_sqe_set_data64(sqe, i);
    }
    if (failed) break;
    if (io_uring_submit_and_wait(&ring, batch) < 0) {
      state.SkipWithError("io_uring_submit_and_wait failed");
      failed = true;
      break;
    }
    unsigned reaped = 0;
    while (true) {
      unsigned head = 0;
      unsigned seen = 0;
      io_uring_cqe* cqe = nullptr;
      io_uring_for_each_cqe(&ring, head, cqe) {
        res_sum += cqe->res;
        ++seen;
      }
      io_uring_cq_advance(&ring, seen);
      reaped += seen;
      if (reaped >= batch) break;
      if (io_uring_wait_cqe_nr(&ring, &cqe, batch - reaped) < 0) {  // not taken for NOPs
        state.SkipWithError("io_uring_wait_cqe_nr failed");
        failed = true;
        break;
      }
    }
    if (failed) break;
  }
  io_uring_queue_exit(&ring);
  if (failed) return;
  benchmark::DoNotOptimize(res_sum);
  if (res_sum != 0) state.SkipWithError("a NOP completed with an error");
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(batch));
}

void batch_sizes(benchmark::internal::Benchmark* b) {
  b->Arg(1)->Arg(8)->Arg(32)->Arg(128);
}

}  // namespace

BENCHMARK(BM_nop_ringshard<kPlain>)->Name("BM_nop_ringshard")->Apply(batch_sizes);
BENCHMARK(BM_nop_liburing<kPlain>)->Name("BM_nop_liburing")->Apply(batch_sizes);
BENCHMARK(BM_nop_ringshard<kDeferTaskrun>)->Name("BM_nop_ringshard_defer_taskrun")->Apply(batch_sizes);
BENCHMARK(BM_nop_liburing<kDeferTaskrun>)->Name("BM_nop_liburing_defer_taskrun")->Apply(batch_sizes);
