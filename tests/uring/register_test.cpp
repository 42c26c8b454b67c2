// Registration against the running kernel: eventfds, personalities, io-wq
// affinity and limits, synchronous cancel, provided-buffer rings (plain and
// incremental), restrictions, and tagged file/buffer tables.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/fsuid.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace ringshard;
using namespace ringshard::uring;
using namespace std::chrono_literals;
using ringshard::test::Fd;
using ringshard::test::next_sqe;
using ringshard::test::reap_within;
using ringshard::test::no_cqe_within;

namespace {

/// Reads and resets a non-blocking eventfd; 0 when it was not signalled.
std::uint64_t eventfd_drain(int efd) {
  std::uint64_t v = 0;
  const ssize_t n = ::read(efd, &v, sizeof v);
  if (n < 0 && errno == EAGAIN) return 0;
  REQUIRE(n == sizeof v);
  return v;
}

int nop_and_reap(Ring& ring, unsigned sqe_flags = 0) {
  io_uring_sqe* sqe = next_sqe(ring, 1);
  prep_nop(sqe);
  sqe_add_flags(sqe, sqe_flags);
  return reap_within(ring).res;
}

struct Pipe {
  Fd rd;
  Fd wr;
};
Pipe make_pipe() {
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  return {Fd(p[0]), Fd(p[1])};
}

/// A recv on `fd` that takes a buffer from group `bgid`.
io_uring_cqe recv_selected(Ring& ring, int fd, std::uint16_t bgid, unsigned len = 0) {
  io_uring_sqe* sqe = next_sqe(ring, 77);
  prep_recv(sqe, fd, MutableBuffer(nullptr, len), 0);
  sqe_add_flags(sqe, IOSQE_BUFFER_SELECT);
  sqe->buf_group = bgid;
  return reap_within(ring);
}

void send_all(int fd, std::string_view data) {
  REQUIRE(::send(fd, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size()));
}

/// Waits (bounded) until `n` bytes are queued on `fd`, so that one recv takes them all.
void wait_queued(int fd, std::size_t n) {
  for (int i = 0; i < 200; ++i) {
    char buf[256];
    const ssize_t queued = ::recv(fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
    if (queued >= static_cast<ssize_t>(n)) return;
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, 20);
  }
  FAIL("data did not arrive");
}

}  // namespace

// ---- eventfd --------------------------------------------------------------------------

TEST_CASE("register: eventfd is signalled on completion until unregister_eventfd") {
  Ring ring(8);
  Fd efd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  REQUIRE(efd.get() >= 0);
  REQUIRE(ring.register_eventfd(efd.get()) == 0);
  CHECK(ring.register_eventfd(efd.get()) == -EBUSY);  // one eventfd per ring
  CHECK(eventfd_drain(efd.get()) == 0);
  for (int i = 0; i < 3; ++i) {
    CAPTURE(i);
    CHECK(nop_and_reap(ring) == 0);
    CHECK(eventfd_drain(efd.get()) == 1);
  }
  REQUIRE(ring.unregister_eventfd() == 0);
  CHECK(nop_and_reap(ring) == 0);
  CHECK(eventfd_drain(efd.get()) == 0);
  CHECK(ring.unregister_eventfd() == -ENXIO);
}

TEST_CASE("register: cq_eventfd_toggle suppresses and restores eventfd notifications") {
  Ring ring(8);
  Fd efd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  REQUIRE(ring.register_eventfd(efd.get()) == 0);
  CHECK(ring.cq_eventfd_enabled());
  REQUIRE(ring.cq_eventfd_toggle(false) == 0);
  CHECK_FALSE(ring.cq_eventfd_enabled());
  CHECK(nop_and_reap(ring) == 0);
  CHECK(eventfd_drain(efd.get()) == 0);
  REQUIRE(ring.cq_eventfd_toggle(true) == 0);
  CHECK(ring.cq_eventfd_enabled());
  CHECK(nop_and_reap(ring) == 0);
  CHECK(eventfd_drain(efd.get()) == 1);
}

TEST_CASE("register: eventfd_async signals only completions posted from io-wq") {
  Ring ring(8);
  Fd efd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  REQUIRE(ring.register_eventfd_async(efd.get()) == 0);
  CHECK(nop_and_reap(ring) == 0);  // completed inline
  CHECK(eventfd_drain(efd.get()) == 0);
  CHECK(nop_and_reap(ring, IOSQE_ASYNC) == 0);  // completed by an io-wq worker
  CHECK(eventfd_drain(efd.get()) >= 1);
  REQUIRE(ring.unregister_eventfd() == 0);
}

// ---- personality --------------------------------------------------------------------------

TEST_CASE("register: a personality id runs requests with the registering thread's credentials") {
  test::TempDir dir;
  const std::string secret = dir.file("secret");
  {
    std::ofstream out(secret);
    out << "root only";
  }
  REQUIRE(::chmod(secret.c_str(), 0600) == 0);
  if (::geteuid() != 0) RINGSHARD_SKIP("needs root to register a personality with another fsuid");

  Ring ring(8);
  int id = -1;
  bool switched = false;
  std::thread other([&] {
    // setfsuid is per thread: only this thread's credentials change.
    ::setfsuid(65534);
    switched = ::setfsuid(65534) == 65534;
    id = ring.register_personality();
    ::setfsuid(0);
  });
  other.join();
  if (!switched) RINGSHARD_SKIP("setfsuid(65534) did not take effect");
  REQUIRE(id > 0);

  // Without the personality: our own (root) credentials.
  prep_openat(next_sqe(ring, 1), AT_FDCWD, secret.c_str(), O_RDONLY | O_CLOEXEC, 0);
  io_uring_cqe c = reap_within(ring);
  REQUIRE(c.res >= 0);
  ::close(c.res);

  // With it: the unprivileged fsuid, refused.
  io_uring_sqe* sqe = next_sqe(ring, 2);
  prep_openat(sqe, AT_FDCWD, secret.c_str(), O_RDONLY | O_CLOEXEC, 0);
  sqe->personality = static_cast<std::uint16_t>(id);
  c = reap_within(ring);
  if (c.res >= 0) ::close(c.res);
  CHECK(c.res == -EACCES);

  REQUIRE(ring.unregister_personality(id) == 0);
  sqe = next_sqe(ring, 3);
  prep_nop(sqe);
  sqe->personality = static_cast<std::uint16_t>(id);
  CHECK(reap_within(ring).res == -EINVAL);  // unknown id
  CHECK(ring.unregister_personality(id) == -EINVAL);
}

// ---- io-wq ------------------------------------------------------------------------------

namespace {

/// Cpus_allowed_list of the io-wq workers serving thread `owner_tid`.
std::vector<std::string> iowq_worker_cpus(pid_t owner_tid) {
  std::vector<std::string> out;
  const std::string want = "iou-wrk-" + std::to_string(owner_tid);
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    std::ifstream comm(e.path() / "comm");
    std::string name;
    std::getline(comm, name);
    if (name != want) continue;
    std::ifstream status(e.path() / "status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("Cpus_allowed_list:", 0) == 0) {
        std::string v = line.substr(std::strlen("Cpus_allowed_list:"));
        v.erase(0, v.find_first_not_of(" \t"));
        out.push_back(v);
      }
    }
  }
  return out;
}

}  // namespace

TEST_CASE("register: iowq_aff pins new io-wq workers to the given CPU and unregister_iowq_aff succeeds") {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  REQUIRE(::sched_getaffinity(0, sizeof allowed, &allowed) == 0);
  if (CPU_COUNT(&allowed) < 2) RINGSHARD_SKIP("needs at least two usable CPUs to see a narrowed affinity");
  int target = -1;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
    if (CPU_ISSET(cpu, &allowed)) target = cpu;

  // io-wq belongs to the submitting task: a fresh thread gets a fresh one.
  int reg = 1, unreg = 1, nop = 1;
  std::vector<std::string> cpus;
  std::thread t([&] {
    Ring ring(8);
    cpu_set_t mask;
    CPU_ZERO(&mask);
    CPU_SET(target, &mask);
    reg = ring.register_iowq_aff(mask);
    io_uring_sqe* sqe = ring.get_sqe();
    prep_nop(sqe);
    sqe_set_flags(sqe, IOSQE_ASYNC);
    io_uring_cqe* cqe = nullptr;
    if (ring.submit() == 1 && ring.wait_cqe_timeout(&cqe, 3s) == 0) {
      nop = cqe->res;
      ring.cqe_seen(cqe);
    }
    const auto tid = static_cast<pid_t>(::syscall(SYS_gettid));
    for (int i = 0; i < 100 && cpus.empty(); ++i) {
      cpus = iowq_worker_cpus(tid);
      if (cpus.empty()) std::this_thread::sleep_for(2ms);
    }
    unreg = ring.unregister_iowq_aff();
  });
  t.join();
  REQUIRE(reg == 0);
  CHECK(nop == 0);
  REQUIRE_FALSE(cpus.empty());
  for (const auto& c : cpus) CHECK(c == std::to_string(target));
  CHECK(unreg == 0);
}

TEST_CASE("register: iowq_max_workers reads back and sets the bounded and unbounded limits") {
  Ring ring(8);
  unsigned current[2] = {0, 0};
  REQUIRE(ring.register_iowq_max_workers(current) == 0);
  CHECK(current[0] > 0);
  CHECK(current[1] > 0);
  const unsigned original[2] = {current[0], current[1]};

  unsigned set[2] = {2, 3};
  REQUIRE(ring.register_iowq_max_workers(set) == 0);
  CHECK(set[0] == original[0]);  // the previous limits come back
  CHECK(set[1] == original[1]);

  unsigned read_back[2] = {0, 0};
  REQUIRE(ring.register_iowq_max_workers(read_back) == 0);
  CHECK(read_back[0] == 2);
  CHECK(read_back[1] == 3);

  unsigned restore[2] = {original[0], original[1]};
  CHECK(ring.register_iowq_max_workers(restore) == 0);
}

// ---- synchronous cancel -------------------------------------------------------------------

TEST_CASE("register: sync_cancel cancels a pending recv by user data or by fd before returning") {
  Ring ring(8);
  auto pair = test::tcp_pair();
  char buf[16];
  prep_recv(next_sqe(ring, 42), pair.server.get(), MutableBuffer(buf, sizeof buf), 0);
  REQUIRE(ring.submit() == 1);
  CHECK(no_cqe_within(ring, 5ms));

  io_uring_sync_cancel_reg reg{};
  reg.addr = 42;
  reg.fd = -1;
  reg.timeout.tv_sec = -1;  // no timeout
  reg.timeout.tv_nsec = -1;
  REQUIRE(ring.register_sync_cancel(reg) == 0);
  io_uring_cqe c = reap_within(ring, 100ms);
  CHECK(c.user_data == 42);
  CHECK(c.res == -ECANCELED);
  CHECK(ring.register_sync_cancel(reg) == -ENOENT);

  prep_recv(next_sqe(ring, 43), pair.server.get(), MutableBuffer(buf, sizeof buf), 0);
  REQUIRE(ring.submit() == 1);
  io_uring_sync_cancel_reg by_fd{};
  by_fd.fd = pair.server.get();
  by_fd.flags = IORING_ASYNC_CANCEL_FD;
  by_fd.timeout.tv_sec = -1;
  by_fd.timeout.tv_nsec = -1;
  REQUIRE(ring.register_sync_cancel(by_fd) == 0);
  c = reap_within(ring, 100ms);
  CHECK(c.user_data == 43);
  CHECK(c.res == -ECANCELED);
}

// ---- provided-buffer rings ---------------------------------------------------------------

TEST_CASE("register: register_buf_ring and unregister_buf_ring manage a buffer group id") {
  Ring ring(8);
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  void* mem = ::mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  REQUIRE(mem != MAP_FAILED);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<std::uintptr_t>(mem);
  reg.ring_entries = 8;
  reg.bgid = 31;
  REQUIRE(ring.register_buf_ring(reg) == 0);
  io_uring_buf_reg again = reg;
  CHECK(ring.register_buf_ring(again) == -EEXIST);
  std::uint16_t head = 0xffff;
  CHECK(ring.buf_ring_head(31, head) == 0);
  CHECK(head == 0);
  CHECK(ring.unregister_buf_ring(31) == 0);
  CHECK(ring.unregister_buf_ring(31) == -ENOENT);
  CHECK(ring.buf_ring_head(31, head) == -ENOENT);
  io_uring_buf_reg bad = reg;
  bad.ring_entries = 3;  // not a power of two
  CHECK(ring.register_buf_ring(bad) == -EINVAL);
  ::munmap(mem, page);
}

TEST_CASE("register: BufferRing hands buffers to recvs and available() follows the kernel head") {
  Ring ring(8);
  auto pair = test::tcp_pair();
  constexpr std::uint16_t kGroup = 21;
  constexpr unsigned kSize = 32;
  std::vector<char> mem(8 * kSize);
  {
    BufferRing br(ring, 8, kGroup);
    CHECK(br.entries() == 8);
    CHECK(br.mask() == 7);
    CHECK(br.available(ring) == 0);
    for (unsigned i = 0; i < 8; ++i)
      br.add(mem.data() + i * kSize, kSize, static_cast<std::uint16_t>(i), static_cast<int>(i));
    CHECK(br.available(ring) == 0);  // staged, not yet published
    br.advance(8);
    CHECK(br.available(ring) == 8);

    for (unsigned i = 0; i < 3; ++i) {
      const std::string msg = "msg-" + std::to_string(i);
      send_all(pair.client.get(), msg);
      const io_uring_cqe c = recv_selected(ring, pair.server.get(), kGroup);
      REQUIRE(c.res == static_cast<int>(msg.size()));
      REQUIRE(cqe_has_buffer(&c));
      CHECK(cqe_buffer_id(&c) == i);
      CHECK(std::string(mem.data() + i * kSize, msg.size()) == msg);
    }
    CHECK(br.available(ring) == 5);
    std::uint16_t head = 0;
    REQUIRE(ring.buf_ring_head(kGroup, head) == 0);
    CHECK(head == 3);

    // Give one back: the kernel takes it after the remaining five.
    br.add(mem.data(), kSize, 0);
    br.advance(1);
    CHECK(br.available(ring) == 6);

    try {
      BufferRing dup(ring, 8, kGroup);
      FAIL("a second ring for the same group was accepted");
    } catch (const std::system_error& e) {
      CHECK(e.code().value() == EEXIST);
    }
  }
  // Destroyed: the group is gone, and the id is free again.
  send_all(pair.client.get(), "late");
  CHECK(recv_selected(ring, pair.server.get(), kGroup).res == -ENOBUFS);
  BufferRing again(ring, 4, kGroup);
  again.add(mem.data(), kSize, 9);
  again.advance(1);
  const io_uring_cqe c = recv_selected(ring, pair.server.get(), kGroup);
  CHECK(c.res == 4);
  CHECK(cqe_buffer_id(&c) == 9);
  CHECK(std::string(mem.data(), 4) == "late");
}

TEST_CASE("register: an incremental buffer ring (IOU_PBUF_RING_INC) lets several recvs share one buffer") {
  Ring ring(8);
  auto pair = test::tcp_pair();
  constexpr std::uint16_t kGroup = 22;
  std::unique_ptr<BufferRing> br;
  try {
    br = std::make_unique<BufferRing>(ring, 4, kGroup, IOU_PBUF_RING_INC);
  } catch (const std::system_error& e) {
    if (e.code().value() == EINVAL) RINGSHARD_SKIP("kernel lacks IOU_PBUF_RING_INC");
    throw;
  }
  std::vector<char> mem(64);
  br->add(mem.data(), static_cast<unsigned>(mem.size()), 5);
  br->advance(1);

  std::size_t offset = 0;
  for (const char* msg : {"abcd", "efgh"}) {
    CAPTURE(msg);
    send_all(pair.client.get(), msg);
    const io_uring_cqe c = recv_selected(ring, pair.server.get(), kGroup);
    REQUIRE(c.res == 4);
    REQUIRE(cqe_has_buffer(&c));
    CHECK(cqe_buffer_id(&c) == 5);
    CHECK(cqe_buf_more(&c));  // the buffer has room left and stays with the kernel
    CHECK(std::string(mem.data() + offset, 4) == msg);
    offset += 4;
  }
  CHECK(br->available(ring) == 1);

  // The rest of the buffer, exactly: it is finished and leaves the ring.
  const std::string rest(mem.size() - offset, 'z');
  send_all(pair.client.get(), rest);
  wait_queued(pair.server.get(), rest.size());
  const io_uring_cqe c = recv_selected(ring, pair.server.get(), kGroup);
  REQUIRE(c.res == static_cast<int>(rest.size()));
  CHECK(cqe_buffer_id(&c) == 5);
  CHECK_FALSE(cqe_buf_more(&c));
  CHECK(std::string(mem.data() + offset, rest.size()) == rest);
  CHECK(br->available(ring) == 0);
}

// ---- restrictions --------------------------------------------------------------------

TEST_CASE("register: restrictions on an R_DISABLED ring allow only the listed opcodes once enabled") {
  {
    Ring plain(4);
    io_uring_restriction r{};
    r.opcode = IORING_RESTRICTION_SQE_OP;
    r.sqe_op = IORING_OP_NOP;
    CHECK(plain.register_restrictions(std::span<const io_uring_restriction>(&r, 1)) == -EBADFD);
  }
  SetupOptions opt;
  opt.flags = IORING_SETUP_R_DISABLED;
  Ring ring(8, opt);
  io_uring_restriction res[2]{};
  res[0].opcode = IORING_RESTRICTION_SQE_OP;
  res[0].sqe_op = IORING_OP_NOP;
  res[1].opcode = IORING_RESTRICTION_REGISTER_OP;
  res[1].register_op = IORING_REGISTER_EVENTFD;
  REQUIRE(ring.register_restrictions(res) == 0);
  CHECK(ring.register_restrictions(res) == -EBUSY);  // only once
  REQUIRE(ring.enable_rings() == 0);

  CHECK(nop_and_reap(ring) == 0);
  Pipe p = make_pipe();
  prep_write(next_sqe(ring, 2), p.wr.get(), ConstBuffer("x"), 0);
  const io_uring_cqe c = reap_within(ring);
  CHECK(c.user_data == 2);
  CHECK(c.res == -EACCES);
  char buf[1];
  CHECK(::read(p.rd.get(), buf, 0) == 0);

  const int fds[] = {p.rd.get()};
  CHECK(ring.register_files(fds) == -EACCES);
  Fd efd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  CHECK(ring.register_eventfd(efd.get()) == 0);
}

// ---- tagged tables ----------------------------------------------------------------------

TEST_CASE("register: files registered with tags post the tag when a slot's file is released") {
  Ring ring(8);
  Pipe a = make_pipe();
  Pipe b = make_pipe();
  const int fds[] = {a.wr.get(), b.wr.get()};
  const std::uint64_t tags[] = {100, 200};
  REQUIRE(ring.register_files_tags(fds, tags) == 0);

  prep_write(next_sqe(ring, 1), FixedFile{0}, ConstBuffer("a"), 0);
  prep_write(next_sqe(ring, 2), FixedFile{1}, ConstBuffer("b"), 0);
  CHECK(reap_within(ring).res == 1);
  CHECK(reap_within(ring).res == 1);
  CHECK(no_cqe_within(ring, 5ms));  // no tag while the files are in place

  const int none[] = {-1};
  const std::uint64_t no_tag[] = {0};
  REQUIRE(ring.register_files_update_tag(0, none, no_tag) == 1);
  io_uring_cqe c = reap_within(ring);
  CHECK(c.user_data == 100);
  CHECK(c.res == 0);
  CHECK(no_cqe_within(ring, 5ms));

  prep_write(next_sqe(ring, 3), FixedFile{0}, ConstBuffer("a"), 0);
  CHECK(reap_within(ring).res == -EBADF);  // the slot is empty now

  REQUIRE(ring.unregister_files() == 0);
  c = reap_within(ring);
  CHECK(c.user_data == 200);
  CHECK(c.res == 0);
}

TEST_CASE("register: buffers registered with tags post the tag on unregister") {
  Ring ring(8);
  Pipe p = make_pipe();
  std::vector<char> mem(4096);
  const iovec iov{mem.data(), mem.size()};
  const std::uint64_t tags[] = {300};
  REQUIRE(ring.register_buffers_tags(std::span<const iovec>(&iov, 1), tags) == 0);

  REQUIRE(::write(p.wr.get(), "xyz", 3) == 3);
  prep_read_fixed(next_sqe(ring, 1), p.rd.get(), MutableBuffer(mem.data() + 10, 3), 0, 0);
  CHECK(reap_within(ring).res == 3);
  CHECK(std::string(mem.data() + 10, 3) == "xyz");
  CHECK(no_cqe_within(ring, 5ms));

  REQUIRE(ring.unregister_buffers() == 0);
  const io_uring_cqe c = reap_within(ring);
  CHECK(c.user_data == 300);
  CHECK(c.res == 0);
}
