// Polling, epoll, timeouts, cancellation, legacy provided buffers, cross-ring
// messages, waitid, futexes and injected NOP results against the running kernel.
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace ringshard;
using namespace ringshard::uring;
using namespace std::chrono_literals;
using ringshard::test::Fd;
using ringshard::test::next_sqe;
using ringshard::test::reap_within;
using ringshard::test::reap_n;
using ringshard::test::by_data;
using ringshard::test::no_cqe_within;

namespace {

struct Pipe {
  Fd rd;
  Fd wr;
};
Pipe make_pipe() {
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  return {Fd(p[0]), Fd(p[1])};
}

void eventfd_add(int efd, std::uint64_t v) { REQUIRE(::write(efd, &v, sizeof v) == sizeof v); }
std::uint64_t eventfd_take(int efd) {
  std::uint64_t v = 0;
  REQUIRE(::read(efd, &v, sizeof v) == sizeof v);
  return v;
}

using Clock = std::chrono::steady_clock;

}  // namespace

// ---- poll -----------------------------------------------------------------------------

TEST_CASE("misc ops: poll_add completes with the ready events once the pipe becomes readable") {
  Ring ring(8);
  Pipe p = make_pipe();
  prep_poll_add(next_sqe(ring, 1), p.rd.get(), POLLIN);
  REQUIRE(ring.submit() == 1);
  CHECK(no_cqe_within(ring, 10ms));
  REQUIRE(::write(p.wr.get(), "x", 1) == 1);
  const io_uring_cqe c = reap_within(ring);
  CHECK(c.user_data == 1);
  CHECK((c.res & POLLIN) != 0);
  CHECK_FALSE(cqe_has_more(&c));

  // Already-ready file: immediate completion; the write end is writable.
  prep_poll_add(next_sqe(ring, 2), p.wr.get(), POLLOUT);
  CHECK((reap_within(ring).res & POLLOUT) != 0);
}

TEST_CASE("misc ops: multishot poll posts one CQE per event with F_MORE until poll_remove") {
  Ring ring(8);
  Fd efd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  REQUIRE(efd.get() >= 0);
  prep_poll_multishot(next_sqe(ring, 1), efd.get(), POLLIN);
  REQUIRE(ring.submit() == 1);
  CHECK(no_cqe_within(ring, 10ms));
  for (int i = 0; i < 3; ++i) {
    CAPTURE(i);
    eventfd_add(efd.get(), 1);
    const io_uring_cqe c = reap_within(ring);
    CHECK(c.user_data == 1);
    CHECK((c.res & POLLIN) != 0);
    CHECK(cqe_has_more(&c));
    CHECK(eventfd_take(efd.get()) == 1);
    CHECK(no_cqe_within(ring, 5ms));
  }
  prep_poll_remove(next_sqe(ring, 2), 1);
  const auto cqes = reap_n(ring, 2);
  CHECK(by_data(cqes, 2).res == 0);
  CHECK(by_data(cqes, 1).res == -ECANCELED);
  CHECK_FALSE(cqe_has_more(&by_data(cqes, 1)));

  prep_poll_remove(next_sqe(ring, 3), 1);  // nothing left to remove
  CHECK(reap_within(ring).res == -ENOENT);
}

TEST_CASE("misc ops: poll_update changes the user data and the events of an armed poll") {
  Ring ring(8);
  Pipe p = make_pipe();

  // New user data: the completion arrives under the new value.
  prep_poll_add(next_sqe(ring, 1), p.rd.get(), POLLIN);
  prep_poll_update(next_sqe(ring, 10), 1, 2, 0, IORING_POLL_UPDATE_USER_DATA);
  REQUIRE(ring.submit() == 2);
  io_uring_cqe c = reap_within(ring);
  CHECK(c.user_data == 10);
  CHECK(c.res == 0);
  CHECK(no_cqe_within(ring, 10ms));
  REQUIRE(::write(p.wr.get(), "x", 1) == 1);
  c = reap_within(ring);
  CHECK(c.user_data == 2);
  CHECK((c.res & POLLIN) != 0);

  // New events: POLLIN on a write end never fires; POLLOUT does at once.
  prep_poll_add(next_sqe(ring, 3), p.wr.get(), POLLIN);
  REQUIRE(ring.submit() == 1);
  CHECK(no_cqe_within(ring, 10ms));
  prep_poll_update(next_sqe(ring, 11), 3, 0, POLLOUT, IORING_POLL_UPDATE_EVENTS);
  const auto cqes = reap_n(ring, 2);
  CHECK(by_data(cqes, 11).res == 0);
  CHECK((by_data(cqes, 3).res & POLLOUT) != 0);

  prep_poll_update(next_sqe(ring, 12), 99, 0, POLLIN, IORING_POLL_UPDATE_EVENTS);
  CHECK(reap_within(ring).res == -ENOENT);
}

// ---- epoll ----------------------------------------------------------------------------

TEST_CASE("misc ops: epoll_ctl adds, modifies and deletes interest through the ring") {
  RINGSHARD_REQUIRE_OPCODE(IORING_OP_EPOLL_CTL);
  Ring ring(8);
  Fd ep(::epoll_create1(EPOLL_CLOEXEC));
  REQUIRE(ep.get() >= 0);
  Pipe p = make_pipe();

  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 77;
  prep_epoll_ctl(next_sqe(ring, 1), ep.get(), p.rd.get(), EPOLL_CTL_ADD, &ev);
  REQUIRE(reap_within(ring).res == 0);
  prep_epoll_ctl(next_sqe(ring, 2), ep.get(), p.rd.get(), EPOLL_CTL_ADD, &ev);
  CHECK(reap_within(ring).res == -EEXIST);

  epoll_event out[4];
  CHECK(::epoll_wait(ep.get(), out, 4, 0) == 0);
  REQUIRE(::write(p.wr.get(), "x", 1) == 1);
  REQUIRE(::epoll_wait(ep.get(), out, 4, 1000) == 1);
  CHECK(std::uint64_t{out[0].data.u64} == 77);
  CHECK((out[0].events & EPOLLIN) != 0);

  ev.data.u64 = 88;
  prep_epoll_ctl(next_sqe(ring, 3), ep.get(), p.rd.get(), EPOLL_CTL_MOD, &ev);
  REQUIRE(reap_within(ring).res == 0);
  REQUIRE(::epoll_wait(ep.get(), out, 4, 1000) == 1);
  CHECK(std::uint64_t{out[0].data.u64} == 88);

  prep_epoll_ctl(next_sqe(ring, 4), ep.get(), p.rd.get(), EPOLL_CTL_DEL, nullptr);
  REQUIRE(reap_within(ring).res == 0);
  CHECK(::epoll_wait(ep.get(), out, 4, 0) == 0);
}

TEST_CASE("misc ops: epoll_wait through the ring waits for and returns ready events") {
  RINGSHARD_REQUIRE_OPCODE(abi::op_epoll_wait);
  Ring ring(8);
  Fd ep(::epoll_create1(EPOLL_CLOEXEC));
  REQUIRE(ep.get() >= 0);
  Pipe a = make_pipe();
  Pipe b = make_pipe();
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 1;
  REQUIRE(::epoll_ctl(ep.get(), EPOLL_CTL_ADD, a.rd.get(), &ev) == 0);
  ev.data.u64 = 2;
  REQUIRE(::epoll_ctl(ep.get(), EPOLL_CTL_ADD, b.rd.get(), &ev) == 0);

  std::array<epoll_event, 4> events{};
  prep_epoll_wait(next_sqe(ring, 9), ep.get(), events, 0);
  REQUIRE(ring.submit() == 1);
  CHECK(no_cqe_within(ring, 10ms));
  REQUIRE(::write(b.wr.get(), "x", 1) == 1);
  io_uring_cqe c = reap_within(ring);
  CHECK(c.user_data == 9);
  REQUIRE(c.res == 1);
  CHECK(std::uint64_t{events[0].data.u64} == 2);
  CHECK((events[0].events & EPOLLIN) != 0);

  // Both ready: both reported.
  REQUIRE(::write(a.wr.get(), "y", 1) == 1);
  events = {};
  prep_epoll_wait(next_sqe(ring, 10), ep.get(), events, 0);
  c = reap_within(ring);
  REQUIRE(c.res == 2);
  std::vector<std::uint64_t> ids = {events[0].data.u64, events[1].data.u64};
  std::sort(ids.begin(), ids.end());
  CHECK(ids == std::vector<std::uint64_t>{1, 2});
}

// ---- timeouts ---------------------------------------------------------------------------

TEST_CASE("misc ops: a relative timeout expires with -ETIME after its duration") {
  Ring ring(8);
  const Timespec ts(20ms);
  const auto start = Clock::now();
  prep_timeout(next_sqe(ring, 1), &ts, 0, 0);
  const io_uring_cqe c = reap_within(ring);
  const auto elapsed = Clock::now() - start;
  CHECK(c.user_data == 1);
  CHECK(c.res == -ETIME);
  CHECK(elapsed >= 20ms);
  CHECK(elapsed < 2s);
}

TEST_CASE("misc ops: a count-based timeout completes with 0 once enough other CQEs were posted") {
  Ring ring(8);
  const Timespec ts(10s);
  prep_timeout(next_sqe(ring, 1), &ts, 2, 0);
  REQUIRE(ring.submit() == 1);
  const auto start = Clock::now();
  prep_nop(next_sqe(ring, 2));
  CHECK(reap_within(ring).user_data == 2);
  CHECK(no_cqe_within(ring, 10ms));  // one completion is not enough
  prep_nop(next_sqe(ring, 3));
  const auto cqes = reap_n(ring, 2);
  CHECK(by_data(cqes, 3).res == 0);
  CHECK(by_data(cqes, 1).res == 0);
  CHECK(Clock::now() - start < 5s);
}

TEST_CASE("misc ops: an absolute timeout (IORING_TIMEOUT_ABS) expires at the CLOCK_MONOTONIC deadline") {
  Ring ring(8);
  const auto deadline = Clock::now() + 25ms;  // steady_clock is CLOCK_MONOTONIC
  const Timespec ts(deadline.time_since_epoch());
  prep_timeout(next_sqe(ring, 1), &ts, 0, IORING_TIMEOUT_ABS);
  const io_uring_cqe c = reap_within(ring);
  CHECK(c.res == -ETIME);
  CHECK(Clock::now() >= deadline);
  CHECK(Clock::now() - deadline < 2s);

  // A deadline in the past fires at once.
  const Timespec past((Clock::now() - 1s).time_since_epoch());
  const auto start = Clock::now();
  prep_timeout(next_sqe(ring, 2), &past, 0, IORING_TIMEOUT_ABS);
  CHECK(reap_within(ring).res == -ETIME);
  CHECK(Clock::now() - start < 500ms);
}

TEST_CASE("misc ops: a multishot timeout fires repeatedly with F_MORE and ends after its count") {
  Ring ring(8);
  const Timespec ts(10ms);
  const auto start = Clock::now();
  prep_timeout(next_sqe(ring, 1), &ts, 3, IORING_TIMEOUT_MULTISHOT);
  std::vector<io_uring_cqe> cqes;
  for (int i = 0; i < 3; ++i) cqes.push_back(reap_within(ring));
  if (cqes[0].res == -EINVAL) RINGSHARD_SKIP("kernel lacks IORING_TIMEOUT_MULTISHOT");
  for (int i = 0; i < 3; ++i) {
    CAPTURE(i);
    CHECK(cqes[static_cast<std::size_t>(i)].user_data == 1);
    CHECK(cqes[static_cast<std::size_t>(i)].res == -ETIME);
    CHECK(cqe_has_more(&cqes[static_cast<std::size_t>(i)]) == (i < 2));
  }
  CHECK(Clock::now() - start >= 30ms);
  CHECK(no_cqe_within(ring, 25ms));  // ended
}

TEST_CASE("misc ops: timeout_remove cancels a pending timeout and reports an unknown one") {
  Ring ring(8);
  const Timespec ts(10s);
  prep_timeout(next_sqe(ring, 1), &ts, 0, 0);
  REQUIRE(ring.submit() == 1);
  prep_timeout_remove(next_sqe(ring, 2), 1, 0);
  const auto cqes = reap_n(ring, 2);
  CHECK(by_data(cqes, 2).res == 0);
  CHECK(by_data(cqes, 1).res == -ECANCELED);
  prep_timeout_remove(next_sqe(ring, 3), 1, 0);
  CHECK(reap_within(ring).res == -ENOENT);
}

TEST_CASE("misc ops: timeout_update shortens a pending timeout") {
  Ring ring(8);
  const Timespec long_ts(10s);
  const Timespec short_ts(15ms);
  const auto start = Clock::now();
  prep_timeout(next_sqe(ring, 1), &long_ts, 0, 0);
  REQUIRE(ring.submit() == 1);
  prep_timeout_update(next_sqe(ring, 2), &short_ts, 1, 0);
  const auto cqes = reap_n(ring, 2);
  CHECK(by_data(cqes, 2).res == 0);
  CHECK(by_data(cqes, 1).res == -ETIME);
  const auto elapsed = Clock::now() - start;
  CHECK(elapsed >= 15ms);
  CHECK(elapsed < 5s);
  prep_timeout_update(next_sqe(ring, 3), &short_ts, 1, 0);
  CHECK(reap_within(ring).res == -ENOENT);
}

TEST_CASE("misc ops: link_timeout is cancelled when its operation wins, and cancels it when it loses") {
  Ring ring(8);
  const Timespec long_ts(5s);
  io_uring_sqe* sqe = next_sqe(ring, 2);
  prep_nop(sqe);
  sqe_add_flags(sqe, IOSQE_IO_LINK);
  prep_link_timeout(next_sqe(ring, 3), &long_ts, 0);
  auto cqes = reap_n(ring, 2);
  CHECK(by_data(cqes, 2).res == 0);
  CHECK(by_data(cqes, 3).res == -ECANCELED);

  Pipe p = make_pipe();
  const Timespec short_ts(10ms);
  sqe = next_sqe(ring, 4);
  prep_poll_add(sqe, p.rd.get(), POLLIN);
  sqe_add_flags(sqe, IOSQE_IO_LINK);
  prep_link_timeout(next_sqe(ring, 5), &short_ts, 0);
  cqes = reap_n(ring, 2);
  CHECK(by_data(cqes, 4).res == -ECANCELED);
  CHECK(by_data(cqes, 5).res == -ETIME);
}

// ---- cancellation -----------------------------------------------------------------------

TEST_CASE("misc ops: prep_cancel finds a request by pointer user data, and unknown data is -ENOENT") {
  Ring ring(8);
  Pipe p = make_pipe();
  int marker = 0;
  io_uring_sqe* sqe = ring.get_sqe();
  REQUIRE(sqe != nullptr);
  prep_poll_add(sqe, p.rd.get(), POLLIN);
  sqe_set_data(sqe, &marker);
  REQUIRE(ring.submit() == 1);
  prep_cancel(next_sqe(ring, 2), &marker, 0);
  const auto cqes = reap_n(ring, 2);
  CHECK(by_data(cqes, 2).res == 0);
  const io_uring_cqe& poll = by_data(cqes, reinterpret_cast<std::uintptr_t>(&marker));
  CHECK(poll.res == -ECANCELED);
  CHECK(cqe_get_data<int>(&poll) == &marker);

  prep_cancel64(next_sqe(ring, 3), 12345, 0);
  CHECK(reap_within(ring).res == -ENOENT);
}

TEST_CASE("misc ops: cancel_fd cancels the requests on one file, all of them with CANCEL_ALL") {
  Ring ring(8);
  Pipe a = make_pipe();
  Pipe b = make_pipe();
  prep_poll_add(next_sqe(ring, 1), a.rd.get(), POLLIN);
  prep_poll_add(next_sqe(ring, 2), a.rd.get(), POLLIN);
  prep_poll_add(next_sqe(ring, 3), b.rd.get(), POLLIN);
  REQUIRE(ring.submit() == 3);

  prep_cancel_fd(next_sqe(ring, 4), a.rd.get(), IORING_ASYNC_CANCEL_ALL);
  auto cqes = reap_n(ring, 3);
  CHECK(by_data(cqes, 4).res == 2);  // number cancelled
  CHECK(by_data(cqes, 1).res == -ECANCELED);
  CHECK(by_data(cqes, 2).res == -ECANCELED);
  CHECK(no_cqe_within(ring, 10ms));  // the poll on the other file is untouched

  prep_cancel_fd(next_sqe(ring, 5), b.rd.get(), 0);
  cqes = reap_n(ring, 2);
  CHECK(by_data(cqes, 5).res == 0);
  CHECK(by_data(cqes, 3).res == -ECANCELED);

  prep_cancel_fd(next_sqe(ring, 6), b.rd.get(), 0);
  CHECK(reap_within(ring).res == -ENOENT);
}

TEST_CASE("misc ops: cancel_fd with a FixedFile cancels requests on a registered file") {
  Ring ring(8);
  Pipe a = make_pipe();
  Pipe b = make_pipe();
  const int files[] = {a.rd.get(), b.rd.get()};
  REQUIRE(ring.register_files(files) == 0);
  prep_poll_add(next_sqe(ring, 1), FixedFile{0}, POLLIN);
  prep_poll_add(next_sqe(ring, 2), FixedFile{1}, POLLIN);
  REQUIRE(ring.submit() == 2);
  CHECK(no_cqe_within(ring, 5ms));

  io_uring_sqe* sqe = next_sqe(ring, 3);
  prep_cancel_fd(sqe, FixedFile{1}, 0);
  CHECK((sqe->cancel_flags & IORING_ASYNC_CANCEL_FD_FIXED) != 0);
  const auto cqes = reap_n(ring, 2);
  CHECK(by_data(cqes, 3).res == 0);
  CHECK(by_data(cqes, 2).res == -ECANCELED);
  CHECK(no_cqe_within(ring, 10ms));  // slot 0's poll is still armed

  REQUIRE(::write(a.wr.get(), "x", 1) == 1);
  const io_uring_cqe c = reap_within(ring);
  CHECK(c.user_data == 1);
  CHECK((c.res & POLLIN) != 0);
}

TEST_CASE("misc ops: cancel_any with CANCEL_ALL cancels every pending request") {
  Ring ring(8);
  Pipe a = make_pipe();
  Pipe b = make_pipe();
  const Timespec ts(10s);
  prep_poll_add(next_sqe(ring, 1), a.rd.get(), POLLIN);
  prep_poll_add(next_sqe(ring, 2), b.rd.get(), POLLIN);
  prep_timeout(next_sqe(ring, 3), &ts, 0, 0);
  REQUIRE(ring.submit() == 3);
  CHECK(no_cqe_within(ring, 5ms));

  prep_cancel_any(next_sqe(ring, 4), IORING_ASYNC_CANCEL_ALL);
  const auto cqes = reap_n(ring, 4);
  CHECK(by_data(cqes, 4).res == 3);
  CHECK(by_data(cqes, 1).res == -ECANCELED);
  CHECK(by_data(cqes, 2).res == -ECANCELED);
  CHECK(by_data(cqes, 3).res == -ECANCELED);

  // ANY reports how many it cancelled: none now.
  prep_cancel_any(next_sqe(ring, 5), 0);
  CHECK(reap_within(ring).res == 0);
  CHECK(no_cqe_within(ring, 5ms));
}

// ---- legacy provided buffers ---------------------------------------------------------------

TEST_CASE("misc ops: provide_buffers feeds recvs with IOSQE_BUFFER_SELECT and remove_buffers takes the rest back") {
  RINGSHARD_REQUIRE_OPCODE(IORING_OP_PROVIDE_BUFFERS);
  Ring ring(8);
  auto pair = test::tcp_pair();
  constexpr int kGroup = 7;
  constexpr int kSize = 32;
  constexpr int kCount = 4;
  std::vector<char> mem(kSize * kCount);
  prep_provide_buffers(next_sqe(ring, 1), mem.data(), kSize, kCount, kGroup, 0);
  CHECK(reap_within(ring).res >= 0);

  auto recv_selected = [&](std::uint64_t user_data) {
    io_uring_sqe* sqe = next_sqe(ring, user_data);
    prep_recv(sqe, pair.server.get(), MutableBuffer(nullptr, kSize), 0);
    sqe_add_flags(sqe, IOSQE_BUFFER_SELECT);
    sqe->buf_group = kGroup;
    return reap_within(ring);
  };
  std::vector<int> bids;
  for (const char* msg : {"hello", "world"}) {
    CAPTURE(msg);
    REQUIRE(::write(pair.client.get(), msg, 5) == 5);
    const io_uring_cqe c = recv_selected(2);
    REQUIRE(c.res == 5);
    REQUIRE(cqe_has_buffer(&c));
    const int bid = cqe_buffer_id(&c);
    REQUIRE(bid < kCount);
    CHECK(std::string(mem.data() + bid * kSize, 5) == msg);
    bids.push_back(bid);
  }
  CHECK(bids[0] != bids[1]);

  prep_remove_buffers(next_sqe(ring, 3), 10, kGroup);
  CHECK(reap_within(ring).res == kCount - 2);  // how many were still in the group

  REQUIRE(::write(pair.client.get(), "again", 5) == 5);
  CHECK(recv_selected(4).res == -ENOBUFS);
  prep_remove_buffers(next_sqe(ring, 5), 1, kGroup);
  CHECK(reap_within(ring).res == 0);  // the group exists but is empty
  prep_remove_buffers(next_sqe(ring, 6), 1, kGroup + 1);
  CHECK(reap_within(ring).res == -ENOENT);  // never provided
}

// ---- cross-ring messages --------------------------------------------------------------

TEST_CASE("misc ops: msg_ring posts a CQE with chosen data and result into another ring") {
  RINGSHARD_REQUIRE_OPCODE(IORING_OP_MSG_RING);
  Ring src(8);
  Ring dst(8);
  prep_msg_ring(next_sqe(src, 1), dst.fd(), 1234, 0xfeedULL, 0);
  io_uring_cqe c = reap_within(src);
  CHECK(c.user_data == 1);
  CHECK(c.res == 0);
  c = reap_within(dst);
  CHECK(c.user_data == 0xfeedULL);
  CHECK(c.res == 1234);
  CHECK(c.flags == 0);

  // The message wakes a thread sleeping on the target ring.
  std::atomic<std::uint64_t> seen{0};
  std::thread waiter([&] {
    io_uring_cqe* cqe = nullptr;
    if (dst.wait_cqe_timeout(&cqe, 3s) == 0) {
      seen = cqe->user_data;
      dst.cqe_seen(cqe);
    }
  });
  std::this_thread::sleep_for(10ms);
  prep_msg_ring(next_sqe(src, 2), dst.fd(), 0, 0xabcULL, 0);
  CHECK(reap_within(src).res == 0);
  waiter.join();
  CHECK(seen == 0xabcULL);

  Fd not_a_ring(::eventfd(0, EFD_CLOEXEC));
  prep_msg_ring(next_sqe(src, 3), not_a_ring.get(), 0, 1, 0);
  CHECK(reap_within(src).res == -EBADFD);
}

TEST_CASE("misc ops: msg_ring_cqe_flags sets the flags of the posted CQE") {
  RINGSHARD_REQUIRE_OPCODE(IORING_OP_MSG_RING);
  Ring src(8);
  Ring dst(8);
  const unsigned flags = IORING_CQE_F_BUFFER | (7U << IORING_CQE_BUFFER_SHIFT);
  prep_msg_ring_cqe_flags(next_sqe(src, 1), dst.fd(), 55, 0xbeefULL, 0, flags);
  const io_uring_cqe s = reap_within(src);
  if (s.res == -EINVAL) RINGSHARD_SKIP("kernel lacks IORING_MSG_RING_FLAGS_PASS");
  CHECK(s.res == 0);
  const io_uring_cqe c = reap_within(dst);
  CHECK(c.user_data == 0xbeefULL);
  CHECK(c.res == 55);
  CHECK(c.flags == flags);
  CHECK(cqe_buffer_id(&c) == 7);
}

TEST_CASE("misc ops: msg_ring_fd and msg_ring_fd_alloc pass a registered file that the other ring uses") {
  RINGSHARD_REQUIRE_OPCODE(IORING_OP_MSG_RING);
  Ring src(8);
  Ring dst(8);
  Pipe p = make_pipe();
  const int files[] = {p.wr.get()};
  REQUIRE(src.register_files(files) == 0);
  REQUIRE(dst.register_files_sparse(4) == 0);

  prep_msg_ring_fd(next_sqe(src, 1), dst.fd(), FixedFile{0}, 2, 0x77, 0);
  CHECK(reap_within(src).res == 0);
  io_uring_cqe c = reap_within(dst);
  CHECK(c.user_data == 0x77);
  CHECK(c.res == 0);
  prep_write(next_sqe(dst, 2), FixedFile{2}, ConstBuffer("via-slot-2"), 0);
  CHECK(reap_within(dst).res == 10);

  prep_msg_ring_fd_alloc(next_sqe(src, 3), dst.fd(), FixedFile{0}, 0x78, 0);
  const io_uring_cqe s = reap_within(src);
  c = reap_within(dst);
  CHECK(c.user_data == 0x78);
  REQUIRE(c.res >= 0);
  REQUIRE(c.res < 4);
  CHECK(c.res != 2);
  CHECK(s.res == c.res);  // the sender learns the slot too
  prep_write(next_sqe(dst, 4), FixedFile{static_cast<unsigned>(c.res)}, ConstBuffer("+alloc"), 0);
  CHECK(reap_within(dst).res == 6);

  char buf[32] = {};
  REQUIRE(::read(p.rd.get(), buf, sizeof buf) == 16);
  CHECK(std::string(buf, 16) == "via-slot-2+alloc");

  // The source keeps its own registration.
  prep_write(next_sqe(src, 5), FixedFile{0}, ConstBuffer("!"), 0);
  CHECK(reap_within(src).res == 1);
}

// ---- processes and futexes -----------------------------------------------------------

TEST_CASE("misc ops: waitid reports a child's exit code and a killing signal in siginfo") {
  RINGSHARD_REQUIRE_OPCODE(abi::op_waitid);
  Ring ring(8);
  const pid_t exiting = ::fork();
  REQUIRE(exiting >= 0);
  if (exiting == 0) {
    ::usleep(20'000);
    ::_exit(42);
  }
  siginfo_t si{};
  prep_waitid(next_sqe(ring, 1), P_PID, static_cast<id_t>(exiting), &si, WEXITED, 0);
  io_uring_cqe c = reap_within(ring);
  CHECK(c.res == 0);
  CHECK(si.si_signo == SIGCHLD);
  CHECK(si.si_code == CLD_EXITED);
  CHECK(si.si_status == 42);
  CHECK(si.si_pid == exiting);

  // Reaped: a second wait has nobody to wait for.
  prep_waitid(next_sqe(ring, 2), P_PID, static_cast<id_t>(exiting), &si, WEXITED, 0);
  CHECK(reap_within(ring).res == -ECHILD);

  const pid_t sleeper = ::fork();
  REQUIRE(sleeper >= 0);
  if (sleeper == 0) {
    for (int i = 0; i < 100; ++i) ::usleep(50'000);  // killed long before
    ::_exit(0);
  }
  si = {};
  prep_waitid(next_sqe(ring, 3), P_PID, static_cast<id_t>(sleeper), &si, WEXITED, 0);
  REQUIRE(ring.submit() == 1);
  CHECK(no_cqe_within(ring, 10ms));
  REQUIRE(::kill(sleeper, SIGKILL) == 0);
  c = reap_within(ring);
  CHECK(c.res == 0);
  CHECK(si.si_code == CLD_KILLED);
  CHECK(si.si_status == SIGKILL);
  CHECK(si.si_pid == sleeper);
}

namespace {
constexpr std::uint32_t kFutex32Private = FUTEX2_SIZE_U32 | FUTEX2_PRIVATE;
}

TEST_CASE("misc ops: futex_wait sleeps until another thread wakes the futex") {
  RINGSHARD_REQUIRE_OPCODE(abi::op_futex_wait);
  Ring ring(8);
  alignas(4) std::uint32_t word = 0;

  // The waking thread exists before the wait is queued. On kernels with
  // process-private futex hashing (6.17+), the first thread a process creates
  // switches it to a private hash, and a wait that io_uring queued before that
  // is no longer found by FUTEX_WAKE_PRIVATE.
  std::atomic<bool> go{false};
  long woken = -1;
  std::thread waker([&] {
    for (int i = 0; i < 3000 && !go.load(); ++i) std::this_thread::sleep_for(1ms);
    std::atomic_ref<std::uint32_t>(word).store(1, std::memory_order_release);
    woken = ::syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
  });
  struct Release {
    std::atomic<bool>& go;
    std::thread& t;
    ~Release() {
      go = true;
      if (t.joinable()) t.join();
    }
  } release{go, waker};

  prep_futex_wait(next_sqe(ring, 1), &word, 0, FUTEX_BITSET_MATCH_ANY, kFutex32Private, 0);
  REQUIRE(ring.submit() == 1);
  CHECK(no_cqe_within(ring, 10ms));
  go = true;
  waker.join();
  CHECK(woken == 1);
  const io_uring_cqe c = reap_within(ring);
  CHECK(c.user_data == 1);
  CHECK(c.res == 0);

  // The value no longer matches: no sleep at all.
  prep_futex_wait(next_sqe(ring, 2), &word, 0, FUTEX_BITSET_MATCH_ANY, kFutex32Private, 0);
  CHECK(reap_within(ring).res == -EAGAIN);
}

TEST_CASE("misc ops: futex_wake from the ring wakes a futex_wait whose mask matches") {
  RINGSHARD_REQUIRE_OPCODE(abi::op_futex_wait);
  RINGSHARD_REQUIRE_OPCODE(abi::op_futex_wake);
  Ring ring(8);
  alignas(4) std::uint32_t word = 3;
  prep_futex_wait(next_sqe(ring, 1), &word, 3, 0x1, kFutex32Private, 0);
  REQUIRE(ring.submit() == 1);

  prep_futex_wake(next_sqe(ring, 2), &word, 1, 0x2, kFutex32Private, 0);
  io_uring_cqe c = reap_within(ring);
  CHECK(c.user_data == 2);
  CHECK(c.res == 0);  // disjoint mask: nobody woke
  CHECK(no_cqe_within(ring, 10ms));

  prep_futex_wake(next_sqe(ring, 3), &word, 1, 0x1, kFutex32Private, 0);
  const auto cqes = reap_n(ring, 2);
  CHECK(by_data(cqes, 3).res == 1);
  CHECK(by_data(cqes, 1).res == 0);
}

TEST_CASE("misc ops: futex_waitv completes with the index of the futex that was woken") {
  RINGSHARD_REQUIRE_OPCODE(abi::op_futex_waitv);
  RINGSHARD_REQUIRE_OPCODE(abi::op_futex_wake);
  Ring ring(8);
  alignas(4) std::uint32_t a = 0;
  alignas(4) std::uint32_t b = 0;
  std::array<futex_waitv, 2> vec{};
  vec[0].val = 0;
  vec[0].uaddr = reinterpret_cast<std::uintptr_t>(&a);
  vec[0].flags = kFutex32Private;
  vec[1].val = 0;
  vec[1].uaddr = reinterpret_cast<std::uintptr_t>(&b);
  vec[1].flags = kFutex32Private;
  prep_futex_waitv(next_sqe(ring, 1), vec, 0);
  REQUIRE(ring.submit() == 1);
  CHECK(no_cqe_within(ring, 10ms));

  b = 1;
  prep_futex_wake(next_sqe(ring, 2), &b, 1, FUTEX_BITSET_MATCH_ANY, kFutex32Private, 0);
  const auto cqes = reap_n(ring, 2);
  CHECK(by_data(cqes, 2).res == 1);
  CHECK(by_data(cqes, 1).res == 1);  // index of `b`

  // A value that already differs: -EAGAIN at once.
  prep_futex_waitv(next_sqe(ring, 3), vec, 0);
  CHECK(reap_within(ring).res == -EAGAIN);
}

// ---- NOP with an injected result -------------------------------------------------------

TEST_CASE("misc ops: nop_result completes with the injected result") {
  Ring ring(8);
  prep_nop_result(next_sqe(ring, 1), -ENOSPC);
  const io_uring_cqe c = reap_within(ring);
  if (c.res == -EINVAL) RINGSHARD_SKIP("kernel lacks IORING_NOP_INJECT_RESULT");
  CHECK(c.res == -ENOSPC);
  prep_nop_result(next_sqe(ring, 2), 4711);
  CHECK(reap_within(ring).res == 4711);
  prep_nop(next_sqe(ring, 3));
  CHECK(reap_within(ring).res == 0);
}
