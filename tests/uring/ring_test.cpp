// Ring mechanics: setup, SQ full, CQ overflow, batch reaping, links, drain,
// CQE_SKIP_SUCCESS, cancellation, link timeouts, SQPOLL, DEFER_TASKRUN, big SQEs/CQEs.
#include <poll.h>
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <set>
#include <span>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace ringshard;
using namespace ringshard::uring;
using namespace std::chrono_literals;
using ringshard::test::Fd;

namespace {

void queue_nops(Ring& ring, unsigned n, std::uint64_t first_data = 0) {
  for (unsigned i = 0; i < n; ++i) {
    io_uring_sqe* sqe = ring.get_sqe();
    REQUIRE(sqe != nullptr);
    prep_nop(sqe);
    sqe_set_data64(sqe, first_data + i);
  }
}

}  // namespace

TEST_CASE("ring setup reports entries, features and flags") {
  Ring ring(8);
  CHECK(ring.fd() >= 0);
  CHECK(ring.sq_entries() == 8);
  CHECK(ring.cq_entries() == 16);
  CHECK(ring.has_feature(IORING_FEAT_NODROP));
  CHECK(ring.has_feature(IORING_FEAT_EXT_ARG));
  CHECK(ring.flags() == 0);
}

TEST_CASE("ring setup with CQSIZE and CLAMP gives the requested sizes") {
  SetupOptions opt;
  opt.cq_entries = 64;
  Ring ring(4, opt);
  CHECK(ring.cq_entries() == 64);
  CHECK((ring.flags() & IORING_SETUP_CQSIZE) != 0);

  SetupOptions clamp;
  clamp.flags = IORING_SETUP_CLAMP;
  Ring big(1u << 20, clamp);  // larger than the kernel maximum: clamped, not refused
  CHECK(big.sq_entries() <= 32768);
}

TEST_CASE("ring setup failure names the refused flag") {
  SetupOptions opt;
  opt.flags = IORING_SETUP_DEFER_TASKRUN;  // requires SINGLE_ISSUER
  try {
    Ring ring(8, opt);
    FAIL("DEFER_TASKRUN without SINGLE_ISSUER was accepted");
  } catch (const std::system_error& e) {
    const std::string what = e.what();
    INFO(what);
    CHECK(what.find("DEFER_TASKRUN") != std::string::npos);
    CHECK(e.code().value() == EINVAL);
  }
  CHECK(setup_flags_name(IORING_SETUP_SQPOLL | IORING_SETUP_CQSIZE) == "SQPOLL|CQSIZE");
}

TEST_CASE("get_sqe returns nullptr when the SQ is full, and works again after submit") {
  Ring ring(4);
  for (int i = 0; i < 4; ++i) {
    io_uring_sqe* sqe = ring.get_sqe();
    REQUIRE(sqe != nullptr);
    prep_nop(sqe);
  }
  CHECK(ring.sq_ready() == 4);
  CHECK(ring.sq_space_left() == 0);
  CHECK(ring.get_sqe() == nullptr);
  CHECK(ring.get_sqe() == nullptr);
  CHECK(ring.submit() == 4);
  CHECK(ring.sq_space_left() == 4);
  CHECK(ring.get_sqe() != nullptr);
}

TEST_CASE("submit of nothing enters no syscall and returns 0") {
  Ring ring(4);
  CHECK(ring.submit() == 0);
  io_uring_cqe* cqe = nullptr;
  CHECK(ring.peek_cqe(&cqe) == -EAGAIN);
}

TEST_CASE("CQ overflow with NODROP loses nothing") {
  Ring ring(8);  // CQ of 16
  REQUIRE(ring.has_feature(IORING_FEAT_NODROP));
  constexpr unsigned kTotal = 64;
  unsigned queued = 0;
  while (queued < kTotal) {
    const unsigned n = std::min(8u, kTotal - queued);
    queue_nops(ring, n, queued);
    REQUIRE(ring.submit() == static_cast<int>(n));
    queued += n;
  }
  CHECK(ring.cq_ready() == 16);
  CHECK(ring.cq_has_overflow());
  std::set<std::uint64_t> seen;
  for (unsigned i = 0; i < kTotal; ++i) {
    io_uring_cqe* cqe = nullptr;
    REQUIRE(ring.peek_cqe(&cqe) == 0);
    CHECK(cqe->res == 0);
    seen.insert(cqe->user_data);
    ring.cqe_seen(cqe);
  }
  CHECK(seen.size() == kTotal);
  CHECK(*seen.begin() == 0);
  CHECK(*seen.rbegin() == kTotal - 1);
  CHECK_FALSE(ring.cq_has_overflow());
}

TEST_CASE("peek_batch_cqe and for_each_cqe reap a batch with one head update") {
  Ring ring(32);
  queue_nops(ring, 20, 100);
  REQUIRE(ring.submit_and_wait(20) == 20);
  CHECK(ring.cq_ready() == 20);
  std::array<io_uring_cqe*, 8> batch{};
  const unsigned n = ring.peek_batch_cqe(batch);
  REQUIRE(n == 8);
  for (unsigned i = 0; i < n; ++i) CHECK(batch[i]->user_data == 100 + i);
  ring.cq_advance(n);
  CHECK(ring.cq_ready() == 12);
  std::uint64_t expect = 108;
  const unsigned rest = ring.for_each_cqe([&](const io_uring_cqe& cqe) { CHECK(cqe.user_data == expect++); });
  CHECK(rest == 12);
  CHECK(ring.cq_ready() == 0);
}

TEST_CASE("linked chain runs in order and a failed link cancels the rest") {
  Ring ring(8);
  int pipefd[2];
  REQUIRE(::pipe(pipefd) == 0);
  Fd rd(pipefd[0]), wr(pipefd[1]);
  char out[] = "abc";
  char in[4] = {};
  io_uring_sqe* sqe = ring.get_sqe();
  prep_write(sqe, wr.get(), ConstBuffer(out, 3), 0);
  sqe_set_flags(sqe, IOSQE_IO_LINK);
  sqe_set_data64(sqe, 1);
  sqe = ring.get_sqe();
  prep_read(sqe, rd.get(), MutableBuffer(in, 3), 0);
  sqe_set_data64(sqe, 2);
  REQUIRE(ring.submit_and_wait(2) == 2);
  auto a = test::reap(ring);
  auto b = test::reap(ring);
  CHECK(a.user_data == 1);
  CHECK(a.res == 3);
  CHECK(b.user_data == 2);
  CHECK(b.res == 3);
  CHECK(std::string(in, 3) == "abc");

  // A failing head (read on a bad fd) cancels the linked NOP.
  sqe = ring.get_sqe();
  prep_read(sqe, -1, MutableBuffer(in, 1), 0);
  sqe_set_flags(sqe, IOSQE_IO_LINK);
  sqe_set_data64(sqe, 3);
  sqe = ring.get_sqe();
  prep_nop(sqe);
  sqe_set_data64(sqe, 4);
  REQUIRE(ring.submit_and_wait(2) == 2);
  auto c = test::reap(ring);
  auto d = test::reap(ring);
  CHECK(c.user_data == 3);
  CHECK(c.res == -EBADF);
  CHECK(d.user_data == 4);
  CHECK(d.res == -ECANCELED);
}

TEST_CASE("hardlink keeps the chain going after a failure") {
  Ring ring(8);
  char buf[1];
  io_uring_sqe* sqe = ring.get_sqe();
  prep_read(sqe, -1, MutableBuffer(buf, 1), 0);
  sqe_set_flags(sqe, IOSQE_IO_HARDLINK);
  sqe_set_data64(sqe, 1);
  sqe = ring.get_sqe();
  prep_nop(sqe);
  sqe_set_data64(sqe, 2);
  REQUIRE(ring.submit_and_wait(2) == 2);
  auto a = test::reap(ring);
  auto b = test::reap(ring);
  CHECK(a.res == -EBADF);
  CHECK(b.user_data == 2);
  CHECK(b.res == 0);
}

TEST_CASE("drain waits for everything submitted before it") {
  Ring ring(8);
  Timespec ts(20ms);
  io_uring_sqe* sqe = ring.get_sqe();
  prep_timeout(sqe, &ts, 0, 0);
  sqe_set_data64(sqe, 1);
  sqe = ring.get_sqe();
  prep_nop(sqe);
  sqe_set_flags(sqe, IOSQE_IO_DRAIN);
  sqe_set_data64(sqe, 2);
  sqe = ring.get_sqe();
  prep_nop(sqe);
  sqe_set_data64(sqe, 3);
  REQUIRE(ring.submit() == 3);
  std::vector<std::uint64_t> order;
  for (int i = 0; i < 3; ++i) order.push_back(test::reap(ring).user_data);
  // The drained NOP (2) comes after the timeout (1); the NOP after it (3) is held too.
  REQUIRE(order.size() == 3);
  CHECK(order[0] == 1);
  CHECK(order[1] == 2);
  CHECK(order[2] == 3);
}

TEST_CASE("CQE_SKIP_SUCCESS posts no CQE for a success but does for a failure") {
  Ring ring(8);
  REQUIRE(ring.has_feature(IORING_FEAT_CQE_SKIP));
  io_uring_sqe* sqe = ring.get_sqe();
  prep_nop(sqe);
  sqe_set_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
  sqe_set_data64(sqe, 1);
  char buf[1];
  sqe = ring.get_sqe();
  prep_read(sqe, -1, MutableBuffer(buf, 1), 0);
  sqe_set_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
  sqe_set_data64(sqe, 2);
  sqe = ring.get_sqe();
  prep_nop(sqe);
  sqe_set_data64(sqe, 3);
  REQUIRE(ring.submit() == 3);
  io_uring_cqe* cqe = nullptr;
  REQUIRE(ring.wait_cqe_nr(&cqe, 2) == 0);
  std::set<std::uint64_t> seen;
  ring.for_each_cqe([&](const io_uring_cqe& c) { seen.insert(c.user_data); });
  CHECK(seen == std::set<std::uint64_t>{2, 3});
}

TEST_CASE("a pending recv is cancelled by user data") {
  Ring ring(8);
  auto pair = test::tcp_pair();
  char buf[16];
  io_uring_sqe* sqe = ring.get_sqe();
  prep_recv(sqe, pair.server.get(), MutableBuffer(buf, sizeof buf), 0);
  sqe_set_data64(sqe, 42);
  REQUIRE(ring.submit() == 1);
  io_uring_cqe* cqe = nullptr;
  CHECK(ring.wait_cqe_timeout(&cqe, 10ms) == -ETIME);
  sqe = ring.get_sqe();
  prep_cancel64(sqe, 42, 0);
  sqe_set_data64(sqe, 43);
  REQUIRE(ring.submit_and_wait(2) >= 1);
  io_uring_cqe a = test::reap(ring);
  io_uring_cqe b = test::reap(ring);
  if (a.user_data != 42) std::swap(a, b);
  CHECK(a.user_data == 42);
  CHECK(a.res == -ECANCELED);
  CHECK(b.user_data == 43);
  CHECK(b.res == 0);
}

TEST_CASE("link_timeout fires on a recv that never completes") {
  Ring ring(8);
  auto pair = test::tcp_pair();
  char buf[16];
  Timespec ts(15ms);
  io_uring_sqe* sqe = ring.get_sqe();
  prep_recv(sqe, pair.server.get(), MutableBuffer(buf, sizeof buf), 0);
  sqe_set_flags(sqe, IOSQE_IO_LINK);
  sqe_set_data64(sqe, 1);
  sqe = ring.get_sqe();
  prep_link_timeout(sqe, &ts, 0);
  sqe_set_data64(sqe, 2);
  const auto start = std::chrono::steady_clock::now();
  REQUIRE(ring.submit_and_wait(2) == 2);
  io_uring_cqe a = test::reap(ring);
  io_uring_cqe b = test::reap(ring);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  if (a.user_data != 1) std::swap(a, b);
  CHECK(a.res == -ECANCELED);
  CHECK(b.res == -ETIME);
  CHECK(elapsed >= 15ms);
}

TEST_CASE("wait_cqes times out with -ETIME and returns early when a CQE arrives") {
  Ring ring(8);
  io_uring_cqe* cqe = nullptr;
  const auto start = std::chrono::steady_clock::now();
  CHECK(ring.wait_cqes(&cqe, 1, 20ms) == -ETIME);
  CHECK(std::chrono::steady_clock::now() - start >= 20ms);
  queue_nops(ring, 1, 7);
  REQUIRE(ring.wait_cqes(&cqe, 1, 5s) == 0);
  CHECK(cqe->user_data == 7);
  ring.cqe_seen(cqe);
}

// Batched waits (6.12): the kernel waits for wait_nr CQEs for min_wait,
// then for one CQE (that came during the wait) until the general timeout.
// The CQEs come from receives a thread feeds (a timeout's CQE would wake
// every waiter at once, batch or not).
TEST_CASE("submit_and_wait_min_timeout batches completions for min_wait, then returns with what came") {
  Ring ring(8);
  io_uring_cqe* cqe = nullptr;
  if (!ring.has_feature(IORING_FEAT_MIN_TIMEOUT)) {
    MESSAGE("no IORING_FEAT_MIN_TIMEOUT: only the refusal is checked");
    CHECK(ring.submit_and_wait_min_timeout(&cqe, 2, 1s, 1000) == -EINVAL);
    return;
  }
  auto one = test::tcp_pair();
  auto two = test::tcp_pair();
  char buf1[8], buf2[8];
  const auto queue_recv = [&](int fd, char* buf, std::uint64_t data) {
    io_uring_sqe* sqe = ring.get_sqe();
    REQUIRE(sqe != nullptr);
    prep_recv(sqe, fd, MutableBuffer(buf, 8), 0);
    sqe_set_data64(sqe, data);
  };
  // Writes a byte to each fd after 5 ms.
  const auto feed = [](std::vector<int> fds) {
    return std::thread([fds] {
      std::this_thread::sleep_for(5ms);
      for (int fd : fds) REQUIRE(::write(fd, "x", 1) == 1);
    });
  };
  using std::chrono::steady_clock;

  SUBCASE("one CQE of the four waited for: returned once min_wait has passed, not at once") {
    queue_recv(one.server.get(), buf1, 1);
    std::thread writer = feed({one.client.get()});
    const auto start = steady_clock::now();
    REQUIRE(ring.submit_and_wait_min_timeout(&cqe, 4, 5s, 40'000) == 0);
    const auto waited = steady_clock::now() - start;
    writer.join();
    CHECK(waited >= 40ms);  // a plain wait would return at 5 ms
    CHECK(waited < 4s);     // not the general timeout
    CHECK(cqe->user_data == 1);
    CHECK(cqe->res == 1);
    ring.cqe_seen(cqe);
  }
  SUBCASE("all CQEs waited for: returned when they came, before min_wait") {
    queue_recv(one.server.get(), buf1, 1);
    queue_recv(two.server.get(), buf2, 2);
    std::thread writer = feed({one.client.get(), two.client.get()});
    const auto start = steady_clock::now();
    REQUIRE(ring.submit_and_wait_min_timeout(&cqe, 2, 10s, 5'000'000) == 0);
    const auto waited = steady_clock::now() - start;
    writer.join();
    CHECK(waited < 4s);
    CHECK(ring.cq_ready() == 2);
    ring.cq_advance(2);
  }
  SUBCASE("nothing comes: the general timeout ends the wait, not min_wait") {
    const auto start = steady_clock::now();
    CHECK(ring.submit_and_wait_min_timeout(&cqe, 4, 60ms, 1000) == -ETIME);
    CHECK(steady_clock::now() - start >= 60ms);
  }
  SUBCASE("without a general timeout min_wait ends the wait, even with nothing") {
    const auto start = steady_clock::now();
    CHECK(ring.submit_and_wait_min_timeout(&cqe, 4, std::nullopt, 20'000) == -ETIME);
    const auto waited = steady_clock::now() - start;
    CHECK(waited >= 20ms);
    CHECK(waited < 4s);
  }
}

// Registered wait regions (6.13): a page of wait arguments registered with a
// ring created disabled; a wait names an entry by index and the kernel reads
// its timeout and min_wait there.
TEST_CASE("registered wait regions: a wait reads its timeout and min_wait from the entry it names") {
  struct Page {
    void* addr = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ~Page() { ::munmap(addr, 4096); }
  } page;  // outlives the ring, which pins it
  REQUIRE(page.addr != MAP_FAILED);
  std::span<abi::RegWait> waits(static_cast<abi::RegWait*>(page.addr), 4096 / sizeof(abi::RegWait));
  SetupOptions opt;
  opt.flags = IORING_SETUP_R_DISABLED;
  Ring ring(8, opt);
  io_uring_cqe* cqe = nullptr;

  // What this Ring refuses before the kernel sees it: no page-aligned whole page.
  CHECK(ring.register_wait_region(waits.subspan(1)) == -EINVAL);
  CHECK(ring.register_wait_region(waits.first(2)) == -EINVAL);
  const int ret = ring.register_wait_region(waits);
  if (!test::kernel_at_least(6, 13)) {
    MESSAGE("kernel before 6.13: the region is refused (" << ret << ")");
    CHECK(ret < 0);
    CHECK(ring.wait_region().empty());
    CHECK(ring.submit_and_wait_reg(&cqe, 1, 0) == -EINVAL);
    return;
  }
  REQUIRE(ret == 0);
  // The page's last entry is left out (the kernel reads it as entry 0).
  CHECK(ring.wait_region().size() == 63);
  CHECK(ring.register_wait_region(waits) == -EEXIST);
  REQUIRE(ring.enable_rings() == 0);
  // The kernel takes a wait region only while the ring is disabled.
  Ring enabled(8);
  CHECK(enabled.register_wait_region(waits) == -EINVAL);
  CHECK(enabled.wait_region().empty());

  using std::chrono::steady_clock;
  const auto set = [&](unsigned i, std::chrono::nanoseconds ts, unsigned min_wait_usec) {
    waits[i] = abi::RegWait{};
    waits[i].ts = Timespec(ts);
    waits[i].flags = abi::reg_wait_ts;
    waits[i].min_wait_usec = min_wait_usec;
  };
  // Entry 0 waits long: a wait that read entry 0 instead of the one named
  // would take 5 s.
  set(0, 5s, 0);

  SUBCASE("a completion ends the wait at once") {
    queue_nops(ring, 1, 9);
    const auto start = steady_clock::now();
    REQUIRE(ring.submit_and_wait_reg(&cqe, 1, 0) == 0);
    CHECK(steady_clock::now() - start < 2s);
    CHECK(cqe->user_data == 9);
    ring.cqe_seen(cqe);
  }
  SUBCASE("nothing comes: the named entry's timeout ends the wait") {
    set(3, 60ms, 0);
    const auto start = steady_clock::now();
    CHECK(ring.submit_and_wait_reg(&cqe, 1, 3) == -ETIME);
    const auto waited = steady_clock::now() - start;
    CHECK(waited >= 60ms);
    CHECK(waited < 2s);
    // The last entry the Ring offers.
    set(62, 30ms, 0);
    const auto start2 = steady_clock::now();
    CHECK(ring.submit_and_wait_reg(&cqe, 1, 62) == -ETIME);
    CHECK(steady_clock::now() - start2 < 2s);
  }
  SUBCASE("min_wait: one CQE of four waited for returns once min_wait has passed") {
    auto pair = test::tcp_pair();
    char buf[8];
    io_uring_sqe* sqe = ring.get_sqe();
    REQUIRE(sqe != nullptr);
    prep_recv(sqe, pair.server.get(), MutableBuffer(buf, 8), 0);
    sqe_set_data64(sqe, 1);
    set(5, 4s, 40'000);
    const auto start = steady_clock::now();
    std::thread writer([&] {
      std::this_thread::sleep_for(5ms);
      REQUIRE(::write(pair.client.get(), "x", 1) == 1);
    });
    REQUIRE(ring.submit_and_wait_reg(&cqe, 4, 5) == 0);
    const auto waited = steady_clock::now() - start;
    writer.join();
    CHECK(waited >= 40ms);  // a plain wait returns at 5 ms
    CHECK(waited < 3s);     // not the general timeout
    CHECK(cqe->user_data == 1);
    CHECK(cqe->res == 1);
    ring.cqe_seen(cqe);
  }
  SUBCASE("an index outside the region is refused without waiting") {
    CHECK(ring.submit_and_wait_reg(&cqe, 1, 63) == -EINVAL);
  }
}

TEST_CASE("SQPOLL ring does I/O without io_uring_enter for submission") {
  SetupOptions opt;
  opt.flags = IORING_SETUP_SQPOLL;
  opt.sq_thread_idle = 50ms;
  std::unique_ptr<Ring> ring;
  try {
    ring = std::make_unique<Ring>(8, opt);
  } catch (const std::system_error& e) {
    RINGSHARD_SKIP(std::string("SQPOLL unavailable: ") + e.what());
  }
  int pipefd[2];
  REQUIRE(::pipe(pipefd) == 0);
  Fd rd(pipefd[0]), wr(pipefd[1]);
  for (int round = 0; round < 3; ++round) {
    const std::string msg = "sqpoll-" + std::to_string(round);
    io_uring_sqe* sqe = ring->get_sqe();
    REQUIRE(sqe != nullptr);
    prep_write(sqe, wr.get(), ConstBuffer(msg), 0);
    sqe_set_data64(sqe, static_cast<std::uint64_t>(round));
    CHECK(ring->submit() >= 0);
    io_uring_cqe cqe = test::reap(*ring);
    CHECK(cqe.res == static_cast<int>(msg.size()));
    char in[32] = {};
    CHECK(::read(rd.get(), in, sizeof in) == static_cast<ssize_t>(msg.size()));
    CHECK(std::string(in) == msg);
    if (round == 1) std::this_thread::sleep_for(120ms);  // let the poller sleep: NEED_WAKEUP path
  }
}

TEST_CASE("DEFER_TASKRUN + SINGLE_ISSUER ring completes I/O when the owner enters") {
  SetupOptions opt;
  opt.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  Ring ring(8, opt);
  auto pair = test::tcp_pair();
  char buf[8] = {};
  io_uring_sqe* sqe = ring.get_sqe();
  prep_recv(sqe, pair.server.get(), MutableBuffer(buf, sizeof buf), 0);
  sqe_set_data64(sqe, 5);
  REQUIRE(ring.submit() == 1);
  REQUIRE(::write(pair.client.get(), "hey", 3) == 3);
  std::this_thread::sleep_for(10ms);
  // Deferred work runs only when we enter with GETEVENTS: wait_cqe does that.
  io_uring_cqe cqe = test::reap(ring);
  CHECK(cqe.user_data == 5);
  CHECK(cqe.res == 3);
  CHECK(std::string(buf, 3) == "hey");
}

TEST_CASE("SQE128 and CQE32 rings work with stride-doubled entries") {
  SetupOptions opt;
  opt.flags = IORING_SETUP_SQE128 | IORING_SETUP_CQE32;
  Ring ring(8, opt);
  queue_nops(ring, 8, 10);
  REQUIRE(ring.submit_and_wait(8) == 8);
  std::uint64_t expect = 10;
  CHECK(ring.for_each_cqe([&](const io_uring_cqe& c) {
    CHECK(c.user_data == expect++);
    CHECK(c.res == 0);
  }) == 8);
}

TEST_CASE("NO_SQARRAY, SUBMIT_ALL, COOP_TASKRUN and TASKRUN_FLAG rings do I/O") {
  for (unsigned flags : {IORING_SETUP_NO_SQARRAY, IORING_SETUP_SUBMIT_ALL,
                         IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG}) {
    CAPTURE(setup_flags_name(flags));
    SetupOptions opt;
    opt.flags = flags;
    Ring ring(4, opt);
    for (int round = 0; round < 3; ++round) {  // wraps the 4-entry SQ
      queue_nops(ring, 3, 0);
      REQUIRE(ring.submit_and_wait(3) == 3);
      CHECK(ring.for_each_cqe([](const io_uring_cqe& c) { CHECK(c.res == 0); }) == 3);
    }
  }
}

TEST_CASE("R_DISABLED ring refuses submissions until enabled") {
  SetupOptions opt;
  opt.flags = IORING_SETUP_R_DISABLED;
  Ring ring(4, opt);
  queue_nops(ring, 1);
  CHECK(ring.submit() == -EBADFD);
  REQUIRE(ring.enable_rings() == 0);
  CHECK(ring.submit_and_wait(1) == 1);
  CHECK(test::reap(ring).res == 0);
}

TEST_CASE("ATTACH_WQ shares the worker pool of another ring") {
  Ring first(4);
  SetupOptions opt;
  opt.attach_wq_fd = first.fd();
  Ring second(4, opt);
  CHECK((second.flags() & IORING_SETUP_ATTACH_WQ) != 0);
  queue_nops(second, 1);
  CHECK(second.submit_and_wait(1) == 1);
  CHECK(test::reap(second).res == 0);
}

TEST_CASE("IOPOLL ring sets up and rejects non-pollable files") {
  SetupOptions opt;
  opt.flags = IORING_SETUP_IOPOLL;
  Ring ring(4, opt);
  CHECK((ring.flags() & IORING_SETUP_IOPOLL) != 0);
  // IOPOLL needs O_DIRECT on a block device with poll queues; a pipe is refused.
  int pipefd[2];
  REQUIRE(::pipe(pipefd) == 0);
  Fd rd(pipefd[0]), wr(pipefd[1]);
  char buf[1];
  io_uring_sqe* sqe = ring.get_sqe();
  prep_read(sqe, rd.get(), MutableBuffer(buf, 1), 0);
  REQUIRE(ring.submit() == 1);
  io_uring_cqe cqe = test::reap(ring);
  CHECK(cqe.res == -EOPNOTSUPP);
}

TEST_CASE("registered ring fd is used for enter and register") {
  Ring ring(4);
  CHECK(ring.register_ring_fd() == 1);
  CHECK(ring.ring_fd_registered());
  queue_nops(ring, 2);
  CHECK(ring.submit_and_wait(2) == 2);
  CHECK(ring.for_each_cqe([](const io_uring_cqe&) {}) == 2);
  CHECK(ring.probe().opcode_supported(IORING_OP_NOP));
  CHECK(ring.unregister_ring_fd() == 1);
  CHECK_FALSE(ring.ring_fd_registered());
}

TEST_CASE("probe knows the opcodes up to PIPE") {
  Probe p = probe();
  CHECK(p.opcode_supported(IORING_OP_NOP));
  CHECK(p.opcode_supported(IORING_OP_READ));
  MESSAGE("kernel last opcode: " << p.last_op() << " (" << opcode_name(p.last_op()) << ")");
  CHECK(opcode_name(IORING_OP_SEND_ZC) == "SEND_ZC");
  CHECK(opcode_name(abi::op_pipe) == "PIPE");
  CHECK(opcode_name(200) == "UNKNOWN");
}

TEST_CASE("moved ring keeps working and the source is empty") {
  Ring a(4);
  const int fd = a.fd();
  Ring b(std::move(a));
  CHECK(b.fd() == fd);
  CHECK(a.fd() == -1);  // NOLINT(bugprone-use-after-move): checking the moved-from state
  queue_nops(b, 1);
  CHECK(b.submit_and_wait(1) == 1);
  CHECK(test::reap(b).res == 0);
}
