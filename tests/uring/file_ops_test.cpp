// File and filesystem opcodes against the real kernel: read/write in all
// their shapes, sync, allocation and advice, open/close (plain and direct),
// statx, splice/tee/pipe, path operations, extended attributes, and the
// registered file and buffer tables they rely on. Every case checks the
// effect on real files and pipes, not only the CQE result.
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "support.hpp"

using namespace ringshard;
using namespace ringshard::uring;
using namespace std::chrono_literals;
using ringshard::test::Fd;
using ringshard::test::TempDir;

namespace {

constexpr std::uint64_t kCurrentPosition = ~std::uint64_t{0};  // offset -1: use and advance the file position

/// Prepares one SQE with `prep`, submits it and returns its CQE.
template <class Prep>
io_uring_cqe run(Ring& ring, Prep&& prep) {
  io_uring_sqe* sqe = ring.get_sqe();
  REQUIRE(sqe != nullptr);
  prep(sqe);
  sqe_set_data64(sqe, 0x5eed);
  io_uring_cqe cqe = test::submit_and_reap(ring);
  CHECK(cqe.user_data == 0x5eed);
  return cqe;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void spit(const std::string& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  REQUIRE(out.good());
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  REQUIRE(out.good());
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

struct stat stat_of(const std::string& path) {
  struct stat st {};
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  return st;
}

struct stat fstat_of(int fd) {
  struct stat st {};
  REQUIRE(::fstat(fd, &st) == 0);
  return st;
}

Fd open_or_fail(const std::string& path, int flags, mode_t mode = 0644) {
  Fd fd(::open(path.c_str(), flags | O_CLOEXEC, mode));
  INFO("open " << path << ": " << std::strerror(errno));
  REQUIRE(fd.get() >= 0);
  return fd;
}

std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(gen() & 0xff);
  return s;
}

struct Pipe {
  Fd r;
  Fd w;
};
Pipe make_pipe() {
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  return {Fd(fds[0]), Fd(fds[1])};
}

std::string read_all_from(int fd, std::size_t n) {
  std::string out(n, '\0');
  std::size_t got = 0;
  while (got < n) {
    const ssize_t r = ::read(fd, out.data() + got, n - got);
    REQUIRE(r > 0);
    got += static_cast<std::size_t>(r);
  }
  return out;
}

mode_t current_umask() {
  const mode_t m = ::umask(022);
  ::umask(m);
  return m;
}

/// A scratch directory under `base`, removed with its contents.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& base) {
    std::string tmpl = base + "/ringshard-xattr-XXXXXX";
    if (::mkdtemp(tmpl.data())) path_ = tmpl;
  }
  ~ScratchDir() {
    if (!path_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(path_, ec);
    }
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  [[nodiscard]] bool ok() const { return !path_.empty(); }
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace

// ---- read / write -------------------------------------------------------------------

TEST_CASE("prep_write and prep_read transfer bytes at explicit offsets and at the file position") {
  TempDir dir;
  const std::string path = dir.file("rw");
  Fd fd = open_or_fail(path, O_RDWR | O_CREAT | O_TRUNC);
  Ring ring(8);

  auto cqe = run(ring, [&](io_uring_sqe* sqe) { prep_write(sqe, fd.get(), "hello world", 0); });
  CHECK(cqe.res == 11);
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_write(sqe, fd.get(), "WORLD", 6); });
  CHECK(cqe.res == 5);
  CHECK(slurp(path) == "hello WORLD");

  std::array<char, 5> buf{};
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_read(sqe, fd.get(), buf, 6); });
  CHECK(cqe.res == 5);
  CHECK(std::string(buf.data(), buf.size()) == "WORLD");

  // A read that starts at EOF returns 0; one that straddles it is short.
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_read(sqe, fd.get(), buf, 11); });
  CHECK(cqe.res == 0);
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_read(sqe, fd.get(), buf, 9); });
  CHECK(cqe.res == 2);
  CHECK(std::string(buf.data(), 2) == "LD");

  // Offset -1 uses and advances the file position, like write(2).
  REQUIRE(::lseek(fd.get(), 0, SEEK_END) == 11);
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_write(sqe, fd.get(), "!!", kCurrentPosition); });
  CHECK(cqe.res == 2);
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_write(sqe, fd.get(), "?", kCurrentPosition); });
  CHECK(cqe.res == 1);
  CHECK(slurp(path) == "hello WORLD!!?");
  CHECK(::lseek(fd.get(), 0, SEEK_CUR) == 14);

  // A bad fd is reported in the CQE, not by submit.
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_read(sqe, 987654, buf, 0); });
  CHECK(cqe.res == -EBADF);
}

TEST_CASE("prep_writev gathers and prep_readv scatters across several iovecs") {
  TempDir dir;
  const std::string path = dir.file("vec");
  Fd fd = open_or_fail(path, O_RDWR | O_CREAT | O_TRUNC);
  Ring ring(8);

  std::string a = "alpha-", b = "beta-", c = "gamma";
  std::array<iovec, 3> out{{{a.data(), a.size()}, {b.data(), b.size()}, {c.data(), c.size()}}};
  auto cqe = run(ring, [&](io_uring_sqe* sqe) { prep_writev(sqe, fd.get(), out, 3); });
  CHECK(cqe.res == 16);
  CHECK(slurp(path) == std::string("\0\0\0alpha-beta-gamma", 19));

  std::array<char, 4> x{};
  std::array<char, 20> y{};
  std::array<iovec, 2> in{{{x.data(), x.size()}, {y.data(), y.size()}}};
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_readv(sqe, fd.get(), in, 3); });
  CHECK(cqe.res == 16);
  CHECK(std::string(x.data(), 4) == "alph");
  CHECK(std::string(y.data(), 12) == "a-beta-gamma");
}

TEST_CASE("prep_writev2 with RWF_APPEND writes at the end whatever the offset") {
  TempDir dir;
  const std::string path = dir.file("append");
  spit(path, "0123456789");
  Fd fd = open_or_fail(path, O_RDWR);
  Ring ring(4);

  std::string tail = "TAIL";
  std::array<iovec, 1> iov{{{tail.data(), tail.size()}}};
  auto cqe = run(ring, [&](io_uring_sqe* sqe) { prep_writev2(sqe, fd.get(), iov, 2, RWF_APPEND); });
  CHECK(cqe.res == 4);
  CHECK(slurp(path) == "0123456789TAIL");

  // Without the flag the same call overwrites at offset 2.
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_writev2(sqe, fd.get(), iov, 2, 0); });
  CHECK(cqe.res == 4);
  CHECK(slurp(path) == "01TAIL6789TAIL");
}

TEST_CASE("prep_readv2 passes RWF flags: NOWAIT on an empty pipe fails fast, HIPRI needs an IOPOLL ring") {
  Pipe p = make_pipe();
  Ring ring(4);
  std::array<char, 16> buf{};
  std::array<iovec, 1> iov{{{buf.data(), buf.size()}}};

  auto cqe = run(ring, [&](io_uring_sqe* sqe) { prep_readv2(sqe, p.r.get(), iov, kCurrentPosition, RWF_NOWAIT); });
  CHECK(cqe.res == -EAGAIN);

  // With data present the same NOWAIT read succeeds.
  REQUIRE(::write(p.w.get(), "ping", 4) == 4);
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_readv2(sqe, p.r.get(), iov, kCurrentPosition, RWF_NOWAIT); });
  CHECK(cqe.res == 4);
  CHECK(std::string(buf.data(), 4) == "ping");

  // Polled I/O on a ring set up without IORING_SETUP_IOPOLL is refused.
  TempDir dir;
  spit(dir.file("f"), "data");
  Fd fd = open_or_fail(dir.file("f"), O_RDONLY);
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_readv2(sqe, fd.get(), iov, 0, RWF_HIPRI); });
  CHECK(cqe.res == -EINVAL);
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_readv2(sqe, fd.get(), iov, 0, 0); });
  CHECK(cqe.res == 4);
}

TEST_CASE("prep_write_fixed and prep_read_fixed use registered buffers, and fail once they are unregistered") {
  TempDir dir;
  const std::string path = dir.file("fixed");
  Fd fd = open_or_fail(path, O_RDWR | O_CREAT | O_TRUNC);
  Ring ring(4);

  std::vector<char> out(8192), in(8192);
  const std::string payload = random_bytes(3000, 1);
  std::memcpy(out.data() + 100, payload.data(), payload.size());
  std::array<iovec, 2> bufs{{{out.data(), out.size()}, {in.data(), in.size()}}};
  REQUIRE(ring.register_buffers(bufs) == 0);

  // A sub-range of registered buffer 0.
  auto cqe = run(ring, [&](io_uring_sqe* sqe) {
    prep_write_fixed(sqe, fd.get(), ConstBuffer(out.data() + 100, payload.size()), 0, 0);
  });
  CHECK(cqe.res == static_cast<int>(payload.size()));
  CHECK(slurp(path) == payload);

  cqe = run(ring, [&](io_uring_sqe* sqe) {
    prep_read_fixed(sqe, fd.get(), MutableBuffer(in.data() + 10, 4000), 0, 1);
  });
  CHECK(cqe.res == static_cast<int>(payload.size()));
  CHECK(std::string(in.data() + 10, payload.size()) == payload);

  // A range that leaves the registered buffer is refused.
  cqe = run(ring, [&](io_uring_sqe* sqe) {
    prep_read_fixed(sqe, fd.get(), MutableBuffer(in.data() + 8000, 400), 0, 1);
  });
  CHECK(cqe.res == -EFAULT);

  REQUIRE(ring.unregister_buffers() == 0);
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_read_fixed(sqe, fd.get(), MutableBuffer(in.data(), 16), 0, 1); });
  CHECK(cqe.res < 0);
}

TEST_CASE("register_buffers_sparse leaves empty slots that register_buffers_update_tag fills, and the tag is posted on removal") {
  TempDir dir;
  const std::string path = dir.file("sparse");
  spit(path, "registered later");
  Fd fd = open_or_fail(path, O_RDONLY);
  Ring ring(4);
  if (!ring.has_feature(IORING_FEAT_RSRC_TAGS)) RINGSHARD_SKIP("kernel lacks IORING_FEAT_RSRC_TAGS");

  REQUIRE(ring.register_buffers_sparse(4) == 0);
  std::vector<char> mem(4096);
  auto cqe = run(ring, [&](io_uring_sqe* sqe) { prep_read_fixed(sqe, fd.get(), MutableBuffer(mem.data(), 64), 0, 2); });
  CHECK(cqe.res == -EFAULT);

  std::array<iovec, 1> iov{{{mem.data(), mem.size()}}};
  std::array<std::uint64_t, 1> tags{0xbeef};
  CHECK(ring.register_buffers_update_tag(2, iov, tags) == 1);
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_read_fixed(sqe, fd.get(), MutableBuffer(mem.data(), 64), 0, 2); });
  CHECK(cqe.res == 16);
  CHECK(std::string(mem.data(), 16) == "registered later");

  // An update past the table is refused.
  CHECK(ring.register_buffers_update_tag(4, iov, {}) < 0);

  // Removing the tagged buffer posts a CQE carrying the tag.
  REQUIRE(ring.unregister_buffers() == 0);
  io_uring_cqe* tag_cqe = nullptr;
  REQUIRE(ring.wait_cqe_timeout(&tag_cqe, 2s) == 0);
  CHECK(tag_cqe->user_data == 0xbeef);
  CHECK(tag_cqe->res == 0);
  ring.cqe_seen(tag_cqe);
}

TEST_CASE("prep_writev_fixed and prep_readv_fixed move vectors inside one registered buffer") {
  RINGSHARD_REQUIRE_OPCODE(abi::op_readv_fixed);
  RINGSHARD_REQUIRE_OPCODE(abi::op_writev_fixed);
  TempDir dir;
  const std::string path = dir.file("vfixed");
  Fd fd = open_or_fail(path, O_RDWR | O_CREAT | O_TRUNC);
  Ring ring(4);

  std::vector<char> mem(16384);
  std::array<iovec, 1> reg{{{mem.data(), mem.size()}}};
  REQUIRE(ring.register_buffers(reg) == 0);

  const std::string p1 = random_bytes(100, 2), p2 = random_bytes(200, 3);
  std::memcpy(mem.data(), p1.data(), p1.size());
  std::memcpy(mem.data() + 4096, p2.data(), p2.size());
  std::array<iovec, 2> out{{{mem.data(), p1.size()}, {mem.data() + 4096, p2.size()}}};
  auto cqe = run(ring, [&](io_uring_sqe* sqe) { prep_writev_fixed(sqe, fd.get(), out, 0, 0, 0); });
  CHECK(cqe.res == 300);
  CHECK(slurp(path) == p1 + p2);

  std::array<iovec, 2> in{{{mem.data() + 8192, 150}, {mem.data() + 12288, 150}}};
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_readv_fixed(sqe, fd.get(), in, 0, 0, 0); });
  CHECK(cqe.res == 300);
  CHECK(std::string(mem.data() + 8192, 150) + std::string(mem.data() + 12288, 150) == p1 + p2);

  // An iovec outside the registered buffer is refused.
  std::vector<char> stray(64);
  std::array<iovec, 1> bad{{{stray.data(), stray.size()}}};
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_readv_fixed(sqe, fd.get(), bad, 0, 0, 0); });
  CHECK(cqe.res == -EFAULT);
}

// ---- sync, allocation, advice, truncation ------------------------------------------

TEST_CASE("prep_fsync syncs files, honours IORING_FSYNC_DATASYNC and rejects unknown flags") {
  TempDir dir;
  Fd fd = open_or_fail(dir.file("sync"), O_RDWR | O_CREAT | O_TRUNC);
  REQUIRE(::write(fd.get(), "durable", 7) == 7);
  Ring ring(4);

  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_fsync(sqe, fd.get(), 0); }).res == 0);
  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_fsync(sqe, fd.get(), IORING_FSYNC_DATASYNC); }).res == 0);
  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_fsync(sqe, fd.get(), 1U << 4); }).res == -EINVAL);
  // fsync(2) on a pipe is EINVAL.
  Pipe p = make_pipe();
  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_fsync(sqe, p.w.get(), 0); }).res == -EINVAL);
  CHECK(slurp(dir.file("sync")) == "durable");
}

TEST_CASE("prep_sync_file_range writes back a range and rejects unknown flags") {
  TempDir dir;
  Fd fd = open_or_fail(dir.file("range"), O_RDWR | O_CREAT | O_TRUNC);
  const std::string data = random_bytes(65536, 4);
  REQUIRE(::write(fd.get(), data.data(), data.size()) == static_cast<ssize_t>(data.size()));
  Ring ring(4);

  auto cqe = run(ring, [&](io_uring_sqe* sqe) {
    prep_sync_file_range(sqe, fd.get(), 32768, 4096,
                         SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
  });
  CHECK(cqe.res == 0);
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_sync_file_range(sqe, fd.get(), 0, 0, 0x100); });
  CHECK(cqe.res == -EINVAL);
  Pipe p = make_pipe();
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_sync_file_range(sqe, p.w.get(), 0, 0, SYNC_FILE_RANGE_WRITE); });
  CHECK(cqe.res == -ESPIPE);
  CHECK(slurp(dir.file("range")) == data);
}

TEST_CASE("prep_fallocate extends a file, keeps the size with KEEP_SIZE, and punches holes") {
  TempDir dir;
  Fd fd = open_or_fail(dir.file("alloc"), O_RDWR | O_CREAT | O_TRUNC);
  Ring ring(4);

  auto cqe = run(ring, [&](io_uring_sqe* sqe) { prep_fallocate(sqe, fd.get(), 0, 0, 1 << 20); });
  if (cqe.res == -EOPNOTSUPP) RINGSHARD_SKIP("the temporary filesystem does not support fallocate");
  REQUIRE(cqe.res == 0);
  struct stat st = fstat_of(fd.get());
  CHECK(st.st_size == (1 << 20));
  CHECK(st.st_blocks * 512 >= (1 << 20));

  cqe = run(ring, [&](io_uring_sqe* sqe) {
    prep_fallocate(sqe, fd.get(), FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20);
  });
  REQUIRE(cqe.res == 0);
  st = fstat_of(fd.get());
  CHECK(st.st_size == (1 << 20));
  CHECK(st.st_blocks * 512 >= (2 << 20));

  // Fill the first 64 KiB, then punch it out again.
  const std::string data(65536, 'x');
  REQUIRE(::pwrite(fd.get(), data.data(), data.size(), 0) == 65536);
  const blkcnt_t before = fstat_of(fd.get()).st_blocks;
  cqe = run(ring, [&](io_uring_sqe* sqe) {
    prep_fallocate(sqe, fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 65536);
  });
  if (cqe.res == -EOPNOTSUPP) RINGSHARD_SKIP("the temporary filesystem cannot punch holes");
  REQUIRE(cqe.res == 0);
  st = fstat_of(fd.get());
  CHECK(st.st_size == (1 << 20));
  CHECK(st.st_blocks < before);
  std::array<char, 16> back{};
  REQUIRE(::pread(fd.get(), back.data(), back.size(), 1000) == 16);
  CHECK(back == std::array<char, 16>{});
}

TEST_CASE("prep_fadvise with DONTNEED drops clean cached pages and rejects unknown advice") {
  TempDir dir;
  struct statfs fs {};
  REQUIRE(::statfs(dir.path().c_str(), &fs) == 0);
  if (fs.f_type == TMPFS_MAGIC) RINGSHARD_SKIP("the temporary directory is on tmpfs, whose pages fadvise cannot drop");
  const std::size_t len = 16 * 4096;
  Fd fd = open_or_fail(dir.file("advise"), O_RDWR | O_CREAT | O_TRUNC);
  const std::string data = random_bytes(len, 5);
  REQUIRE(::write(fd.get(), data.data(), len) == static_cast<ssize_t>(len));
  REQUIRE(::fsync(fd.get()) == 0);
  Ring ring(4);

  void* map = ::mmap(nullptr, len, PROT_READ, MAP_SHARED, fd.get(), 0);
  REQUIRE(map != MAP_FAILED);
  auto resident = [&] {
    std::vector<unsigned char> vec(len / 4096);
    REQUIRE(::mincore(map, len, vec.data()) == 0);
    int n = 0;
    for (unsigned char v : vec) n += v & 1;
    return n;
  };
  CHECK(resident() == 16);  // just written: in the page cache

  auto cqe = run(ring, [&](io_uring_sqe* sqe) {
    prep_fadvise(sqe, fd.get(), 0, static_cast<off_t>(len), POSIX_FADV_DONTNEED);
  });
  CHECK(cqe.res == 0);
  CHECK(resident() == 0);

  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_fadvise(sqe, fd.get(), 0, 4096, 12345); });
  CHECK(cqe.res == -EINVAL);
  ::munmap(map, len);
}

TEST_CASE("prep_madvise with MADV_DONTNEED zeroes a private anonymous mapping") {
  const std::size_t len = 4 * 4096;
  void* map = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(map != MAP_FAILED);
  auto* bytes = static_cast<unsigned char*>(map);
  std::memset(bytes, 0xab, len);
  Ring ring(4);

  // Only the middle two pages.
  auto cqe = run(ring, [&](io_uring_sqe* sqe) { prep_madvise(sqe, bytes + 4096, 2 * 4096, MADV_DONTNEED); });
  CHECK(cqe.res == 0);
  CHECK(bytes[0] == 0xab);
  CHECK(bytes[4095] == 0xab);
  CHECK(bytes[4096] == 0);
  CHECK(bytes[3 * 4096 - 1] == 0);
  CHECK(bytes[3 * 4096] == 0xab);

  // An unaligned start is EINVAL, as for madvise(2).
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_madvise(sqe, bytes + 1, 4096, MADV_DONTNEED); });
  CHECK(cqe.res == -EINVAL);
  ::munmap(map, len);
}

TEST_CASE("prep_ftruncate shrinks and extends a file") {
  RINGSHARD_REQUIRE_OPCODE(abi::op_ftruncate);
  TempDir dir;
  const std::string path = dir.file("trunc");
  spit(path, "0123456789abcdef");
  Fd fd = open_or_fail(path, O_RDWR);
  Ring ring(4);

  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_ftruncate(sqe, fd.get(), 10); }).res == 0);
  CHECK(slurp(path) == "0123456789");
  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_ftruncate(sqe, fd.get(), 4096); }).res == 0);
  CHECK(stat_of(path).st_size == 4096);
  CHECK(slurp(path) == std::string("0123456789") + std::string(4086, '\0'));

  Fd ro = open_or_fail(path, O_RDONLY);
  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_ftruncate(sqe, ro.get(), 0); }).res == -EINVAL);
  CHECK(stat_of(path).st_size == 4096);
}

// ---- open / close ------------------------------------------------------------------

TEST_CASE("prep_openat opens relative to a directory fd, creates with the given mode, and honours O_EXCL") {
  TempDir dir;
  spit(dir.file("existing"), "contents");
  Fd dfd = open_or_fail(dir.path().string(), O_RDONLY | O_DIRECTORY);
  Ring ring(4);

  auto cqe = run(ring, [&](io_uring_sqe* sqe) { prep_openat(sqe, dfd.get(), "existing", O_RDONLY | O_CLOEXEC, 0); });
  REQUIRE(cqe.res >= 0);
  Fd opened(cqe.res);
  CHECK(read_all_from(opened.get(), 8) == "contents");
  CHECK((::fcntl(opened.get(), F_GETFD) & FD_CLOEXEC) != 0);

  cqe = run(ring, [&](io_uring_sqe* sqe) {
    prep_openat(sqe, dfd.get(), "created", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  });
  REQUIRE(cqe.res >= 0);
  Fd created(cqe.res);
  const struct stat st = stat_of(dir.file("created"));
  CHECK(S_ISREG(st.st_mode));
  CHECK((st.st_mode & 0777) == (0640 & ~current_umask()));

  cqe = run(ring, [&](io_uring_sqe* sqe) {
    prep_openat(sqe, dfd.get(), "created", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  });
  CHECK(cqe.res == -EEXIST);
  const std::string missing = dir.file("missing");  // the kernel reads the path at submit time
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_openat(sqe, AT_FDCWD, missing.c_str(), O_RDONLY, 0); });
  CHECK(cqe.res == -ENOENT);
}

TEST_CASE("prep_openat_direct installs into a sparse file table, FixedFile reads it, prep_close_direct empties the slot") {
  TempDir dir;
  const std::string path = dir.file("direct");
  spit(path, "direct bytes");
  Ring ring(4);
  REQUIRE(ring.register_files_sparse(4) == 0);
  const int fds_before = test::open_fd_count();

  auto cqe = run(ring, [&](io_uring_sqe* sqe) {
    prep_openat_direct(sqe, AT_FDCWD, path.c_str(), O_RDONLY, 0, 2);
  });
  REQUIRE(cqe.res == 0);
  CHECK(test::open_fd_count() == fds_before);  // no regular fd was created

  std::array<char, 32> buf{};
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_read(sqe, FixedFile{2}, buf, 0); });
  CHECK(cqe.res == 12);
  CHECK(std::string(buf.data(), 12) == "direct bytes");

  // IORING_FILE_INDEX_ALLOC: the kernel picks a free slot and returns it.
  cqe = run(ring, [&](io_uring_sqe* sqe) {
    prep_openat_direct(sqe, AT_FDCWD, path.c_str(), O_RDONLY, 0, IORING_FILE_INDEX_ALLOC);
  });
  REQUIRE(cqe.res >= 0);
  CHECK(cqe.res != 2);
  CHECK(cqe.res < 4);
  const unsigned alloc_slot = static_cast<unsigned>(cqe.res);
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_read(sqe, FixedFile{alloc_slot}, buf, 7); });
  CHECK(cqe.res == 5);
  CHECK(std::string(buf.data(), 5) == "bytes");

  // O_CLOEXEC means nothing for a direct descriptor and is refused.
  cqe = run(ring, [&](io_uring_sqe* sqe) {
    prep_openat_direct(sqe, AT_FDCWD, path.c_str(), O_RDONLY | O_CLOEXEC, 0, 1);
  });
  CHECK(cqe.res == -EINVAL);

  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_close_direct(sqe, 2); }).res == 0);
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_read(sqe, FixedFile{2}, buf, 0); });
  CHECK(cqe.res == -EBADF);
  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_close_direct(sqe, 2); }).res == -EBADF);
  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_close_direct(sqe, alloc_slot); }).res == 0);
}

TEST_CASE("prep_openat2 applies RESOLVE_ flags, and prep_openat2_direct installs into a slot") {
  TempDir dir;
  std::filesystem::create_directory(dir.path() / "sub");
  spit(dir.file("outside"), "outside");
  spit(dir.file("sub/inside"), "inside");
  REQUIRE(::symlink("inside", dir.file("sub/link").c_str()) == 0);
  Fd sub = open_or_fail(dir.file("sub"), O_RDONLY | O_DIRECTORY);
  Ring ring(4);

  open_how how{};
  how.flags = O_RDONLY | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH;
  auto cqe = run(ring, [&](io_uring_sqe* sqe) { prep_openat2(sqe, sub.get(), "inside", &how); });
  REQUIRE(cqe.res >= 0);
  Fd inside(cqe.res);
  CHECK(read_all_from(inside.get(), 6) == "inside");

  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_openat2(sqe, sub.get(), "../outside", &how); });
  CHECK(cqe.res == -EXDEV);
  how.resolve = 0;
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_openat2(sqe, sub.get(), "../outside", &how); });
  REQUIRE(cqe.res >= 0);
  Fd outside(cqe.res);

  how.resolve = RESOLVE_NO_SYMLINKS;
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_openat2(sqe, sub.get(), "link", &how); });
  CHECK(cqe.res == -ELOOP);

  // Direct: no O_CLOEXEC; slot 1 of a sparse table.
  REQUIRE(ring.register_files_sparse(2) == 0);
  how.flags = O_RDONLY;
  how.resolve = RESOLVE_BENEATH;
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_openat2_direct(sqe, sub.get(), "link", &how, 1); });
  REQUIRE(cqe.res == 0);
  std::array<char, 16> buf{};
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_read(sqe, FixedFile{1}, buf, 0); });
  CHECK(cqe.res == 6);
  CHECK(std::string(buf.data(), 6) == "inside");
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_openat2_direct(sqe, sub.get(), "../outside", &how, 0); });
  CHECK(cqe.res == -EXDEV);
}

TEST_CASE("prep_close closes a regular fd and reports EBADF for one that is not open") {
  TempDir dir;
  Fd fd = open_or_fail(dir.file("c"), O_RDWR | O_CREAT);
  Ring ring(4);
  const int raw = fd.release();
  REQUIRE(::fcntl(raw, F_GETFD) >= 0);
  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_close(sqe, raw); }).res == 0);
  errno = 0;
  CHECK(::fcntl(raw, F_GETFD) == -1);
  CHECK(errno == EBADF);
  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_close(sqe, raw); }).res == -EBADF);
}

TEST_CASE("prep_statx reports size, type and mode, follows or not symlinks, and works on an fd") {
  TempDir dir;
  spit(dir.file("s"), std::string(1234, 'z'));
  REQUIRE(::chmod(dir.file("s").c_str(), 0604) == 0);
  REQUIRE(::symlink("s", dir.file("l").c_str()) == 0);
  Fd dfd = open_or_fail(dir.path().string(), O_RDONLY | O_DIRECTORY);
  Ring ring(4);

  struct statx stx {};
  auto cqe = run(ring, [&](io_uring_sqe* sqe) {
    prep_statx(sqe, dfd.get(), "s", 0, STATX_SIZE | STATX_MODE | STATX_TYPE, &stx);
  });
  REQUIRE(cqe.res == 0);
  CHECK((stx.stx_mask & STATX_SIZE) != 0);
  CHECK(stx.stx_size == 1234);
  CHECK(S_ISREG(stx.stx_mode));
  CHECK((stx.stx_mode & 0777) == 0604);

  stx = {};
  cqe = run(ring, [&](io_uring_sqe* sqe) {
    prep_statx(sqe, dfd.get(), "l", AT_SYMLINK_NOFOLLOW, STATX_TYPE | STATX_SIZE, &stx);
  });
  REQUIRE(cqe.res == 0);
  CHECK(S_ISLNK(stx.stx_mode));
  CHECK(stx.stx_size == 1);  // the target name "s"

  stx = {};
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_statx(sqe, dfd.get(), "l", 0, STATX_TYPE | STATX_SIZE, &stx); });
  REQUIRE(cqe.res == 0);
  CHECK(S_ISREG(stx.stx_mode));
  CHECK(stx.stx_size == 1234);

  Fd fd = open_or_fail(dir.file("s"), O_RDONLY);
  stx = {};
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_statx(sqe, fd.get(), "", AT_EMPTY_PATH, STATX_INO, &stx); });
  REQUIRE(cqe.res == 0);
  CHECK(stx.stx_ino == fstat_of(fd.get()).st_ino);

  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_statx(sqe, dfd.get(), "nope", 0, STATX_SIZE, &stx); });
  CHECK(cqe.res == -ENOENT);
}

// ---- splice, tee, pipe ----------------------------------------------------------------

TEST_CASE("prep_splice copies a file into another through a pipe") {
  TempDir dir;
  const std::size_t total = 200'000;
  const std::string data = random_bytes(total, 6);
  spit(dir.file("src"), data);
  Fd src = open_or_fail(dir.file("src"), O_RDONLY);
  Fd dst = open_or_fail(dir.file("dst"), O_WRONLY | O_CREAT | O_TRUNC);
  Pipe p = make_pipe();
  Ring ring(4);

  std::size_t done = 0;
  for (int guard = 0; done < total && guard < 1000; ++guard) {
    const unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(total - done, 32768));
    const int in = run(ring, [&](io_uring_sqe* sqe) {
                     prep_splice(sqe, src.get(), static_cast<std::int64_t>(done), p.w.get(), -1, chunk, 0);
                   }).res;
    REQUIRE(in > 0);
    int moved = 0;
    while (moved < in) {
      const int out = run(ring, [&](io_uring_sqe* sqe) {
                        prep_splice(sqe, p.r.get(), -1, dst.get(), static_cast<std::int64_t>(done) + moved,
                                    static_cast<unsigned>(in - moved), 0);
                      }).res;
      REQUIRE(out > 0);
      moved += out;
    }
    done += static_cast<std::size_t>(in);
  }
  CHECK(done == total);
  CHECK(slurp(dir.file("dst")) == data);

  // An offset on the pipe side is ESPIPE.
  auto bad = run(ring, [&](io_uring_sqe* sqe) { prep_splice(sqe, src.get(), 0, p.w.get(), 0, 16, 0); });
  CHECK(bad.res == -ESPIPE);
}

TEST_CASE("prep_tee duplicates pipe data without consuming it") {
  Pipe a = make_pipe();
  Pipe b = make_pipe();
  REQUIRE(::write(a.w.get(), "teeing!", 7) == 7);
  Ring ring(4);

  auto cqe = run(ring, [&](io_uring_sqe* sqe) { prep_tee(sqe, a.r.get(), b.w.get(), 64, 0); });
  CHECK(cqe.res == 7);
  CHECK(read_all_from(b.r.get(), 7) == "teeing!");
  CHECK(read_all_from(a.r.get(), 7) == "teeing!");

  // A regular file is not a pipe: EINVAL.
  TempDir dir;
  Fd f = open_or_fail(dir.file("f"), O_RDWR | O_CREAT);
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_tee(sqe, a.r.get(), f.get(), 8, 0); });
  CHECK(cqe.res == -EINVAL);
}

TEST_CASE("prep_pipe creates a working pipe with the requested flags") {
  RINGSHARD_REQUIRE_OPCODE(abi::op_pipe);
  Ring ring(4);
  int fds[2] = {-1, -1};
  auto cqe = run(ring, [&](io_uring_sqe* sqe) { prep_pipe(sqe, fds, O_CLOEXEC | O_NONBLOCK); });
  REQUIRE(cqe.res == 0);
  Fd r(fds[0]), w(fds[1]);
  REQUIRE(r.get() >= 0);
  REQUIRE(w.get() >= 0);
  CHECK((::fcntl(r.get(), F_GETFD) & FD_CLOEXEC) != 0);
  CHECK((::fcntl(w.get(), F_GETFL) & O_NONBLOCK) != 0);
  REQUIRE(::write(w.get(), "via pipe", 8) == 8);
  CHECK(read_all_from(r.get(), 8) == "via pipe");
  std::array<char, 4> buf{};
  CHECK(::read(r.get(), buf.data(), buf.size()) == -1);  // O_NONBLOCK and empty
  CHECK(errno == EAGAIN);

  int none[2] = {-1, -1};
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_pipe(sqe, none, 0x7fff0000); });
  CHECK(cqe.res == -EINVAL);
}

TEST_CASE("prep_pipe_direct installs both ends into registered slots") {
  RINGSHARD_REQUIRE_OPCODE(abi::op_pipe);
  Ring ring(8);
  REQUIRE(ring.register_files_sparse(8) == 0);
  const int fds_before = test::open_fd_count();

  // Specific slot: read end at 2, write end at 3. (Some kernels report {0, 0}
  // in fds for this form, so only the slots themselves are checked.)
  int fds[2] = {-1, -1};
  auto cqe = run(ring, [&](io_uring_sqe* sqe) { prep_pipe_direct(sqe, fds, 0, 2); });
  REQUIRE(cqe.res == 0);
  CHECK(test::open_fd_count() == fds_before);
  auto w = run(ring, [&](io_uring_sqe* sqe) { prep_write(sqe, FixedFile{3}, "slot3", kCurrentPosition); });
  CHECK(w.res == 5);
  std::array<char, 8> buf{};
  auto r = run(ring, [&](io_uring_sqe* sqe) { prep_read(sqe, FixedFile{2}, buf, kCurrentPosition); });
  CHECK(r.res == 5);
  CHECK(std::string(buf.data(), 5) == "slot3");

  // Allocated slots are reported in fds.
  int alloc[2] = {-1, -1};
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_pipe_direct(sqe, alloc, 0, IORING_FILE_INDEX_ALLOC); });
  REQUIRE(cqe.res == 0);
  CHECK(alloc[0] >= 0);
  CHECK(alloc[1] >= 0);
  CHECK(alloc[0] != alloc[1]);
  CHECK(alloc[0] != 2);
  CHECK(alloc[0] != 3);
  w = run(ring, [&](io_uring_sqe* sqe) {
    prep_write(sqe, FixedFile{static_cast<unsigned>(alloc[1])}, "alloc", kCurrentPosition);
  });
  CHECK(w.res == 5);
  r = run(ring, [&](io_uring_sqe* sqe) {
    prep_read(sqe, FixedFile{static_cast<unsigned>(alloc[0])}, buf, kCurrentPosition);
  });
  CHECK(r.res == 5);
  CHECK(std::string(buf.data(), 5) == "alloc");

  // O_CLOEXEC is meaningless for direct descriptors and refused.
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_pipe_direct(sqe, fds, O_CLOEXEC, 5); });
  CHECK(cqe.res == -EINVAL);
}

// ---- paths -----------------------------------------------------------------------------

TEST_CASE("prep_renameat and prep_rename move files, and RENAME_NOREPLACE refuses to clobber") {
  TempDir dir;
  spit(dir.file("a"), "A");
  spit(dir.file("b"), "B");
  Fd dfd = open_or_fail(dir.path().string(), O_RDONLY | O_DIRECTORY);
  Ring ring(4);

  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_renameat(sqe, dfd.get(), "a", dfd.get(), "c", 0); }).res == 0);
  CHECK(!exists(dir.file("a")));
  CHECK(slurp(dir.file("c")) == "A");

  auto cqe = run(ring, [&](io_uring_sqe* sqe) { prep_renameat(sqe, dfd.get(), "c", dfd.get(), "b", RENAME_NOREPLACE); });
  CHECK(cqe.res == -EEXIST);
  CHECK(slurp(dir.file("b")) == "B");

  const std::string c = dir.file("c"), d = dir.file("d");
  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_rename(sqe, c.c_str(), d.c_str()); }).res == 0);
  CHECK(!exists(c));
  CHECK(slurp(d) == "A");
  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_rename(sqe, c.c_str(), d.c_str()); }).res == -ENOENT);
}

TEST_CASE("prep_unlinkat and prep_unlink remove files, and directories only with AT_REMOVEDIR") {
  TempDir dir;
  spit(dir.file("f"), "x");
  spit(dir.file("g"), "y");
  std::filesystem::create_directory(dir.path() / "d");
  Fd dfd = open_or_fail(dir.path().string(), O_RDONLY | O_DIRECTORY);
  Ring ring(4);

  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_unlinkat(sqe, dfd.get(), "f", 0); }).res == 0);
  CHECK(!exists(dir.file("f")));
  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_unlinkat(sqe, dfd.get(), "d", 0); }).res == -EISDIR);
  CHECK(exists(dir.file("d")));
  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_unlinkat(sqe, dfd.get(), "d", AT_REMOVEDIR); }).res == 0);
  CHECK(!exists(dir.file("d")));

  const std::string g = dir.file("g");
  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_unlink(sqe, g.c_str(), AT_REMOVEDIR); }).res == -ENOTDIR);
  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_unlink(sqe, g.c_str(), 0); }).res == 0);
  CHECK(!exists(g));
  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_unlink(sqe, g.c_str(), 0); }).res == -ENOENT);
}

TEST_CASE("prep_mkdirat and prep_mkdir create directories with the given mode") {
  TempDir dir;
  Fd dfd = open_or_fail(dir.path().string(), O_RDONLY | O_DIRECTORY);
  Ring ring(4);

  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_mkdirat(sqe, dfd.get(), "m", 0750); }).res == 0);
  struct stat st = stat_of(dir.file("m"));
  CHECK(S_ISDIR(st.st_mode));
  CHECK((st.st_mode & 0777) == (0750 & ~current_umask()));
  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_mkdirat(sqe, dfd.get(), "m", 0750); }).res == -EEXIST);

  const std::string n = dir.file("m/n");
  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_mkdir(sqe, n.c_str(), 0700); }).res == 0);
  st = stat_of(n);
  CHECK(S_ISDIR(st.st_mode));
  CHECK((st.st_mode & 0777) == 0700);
  const std::string deep = dir.file("x/y");
  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_mkdir(sqe, deep.c_str(), 0700); }).res == -ENOENT);
}

TEST_CASE("prep_symlinkat and prep_symlink create symlinks pointing at the target text") {
  TempDir dir;
  spit(dir.file("target"), "T");
  Fd dfd = open_or_fail(dir.path().string(), O_RDONLY | O_DIRECTORY);
  Ring ring(4);

  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_symlinkat(sqe, "target", dfd.get(), "rel"); }).res == 0);
  CHECK(S_ISLNK(stat_of(dir.file("rel")).st_mode));
  CHECK(std::filesystem::read_symlink(dir.path() / "rel") == "target");
  CHECK(slurp(dir.file("rel")) == "T");

  const std::string link = dir.file("abs");
  const std::string target = "/nonexistent/dangling";
  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_symlink(sqe, target.c_str(), link.c_str()); }).res == 0);
  CHECK(std::filesystem::read_symlink(link) == target);
  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_symlink(sqe, target.c_str(), link.c_str()); }).res == -EEXIST);
}

TEST_CASE("prep_linkat and prep_link create hard links, following symlinks only with AT_SYMLINK_FOLLOW") {
  TempDir dir;
  spit(dir.file("orig"), "O");
  REQUIRE(::symlink("orig", dir.file("sym").c_str()) == 0);
  Fd dfd = open_or_fail(dir.path().string(), O_RDONLY | O_DIRECTORY);
  Ring ring(4);

  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_linkat(sqe, dfd.get(), "orig", dfd.get(), "hard", 0); }).res == 0);
  const struct stat orig = stat_of(dir.file("orig"));
  CHECK(orig.st_nlink == 2);
  CHECK(stat_of(dir.file("hard")).st_ino == orig.st_ino);

  const std::string sym = dir.file("sym"), followed = dir.file("followed"), nofollow = dir.file("nofollow");
  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_link(sqe, sym.c_str(), followed.c_str(), AT_SYMLINK_FOLLOW); }).res ==
        0);
  CHECK(stat_of(followed).st_ino == orig.st_ino);
  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_link(sqe, sym.c_str(), nofollow.c_str(), 0); }).res == 0);
  CHECK(S_ISLNK(stat_of(nofollow).st_mode));
  CHECK(stat_of(dir.file("orig")).st_nlink == 3);
  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_link(sqe, sym.c_str(), nofollow.c_str(), 0); }).res == -EEXIST);
}

// ---- extended attributes -----------------------------------------------------------------

TEST_CASE("prep_setxattr/prep_getxattr and prep_fsetxattr/prep_fgetxattr round-trip user attributes") {
  // Find a filesystem that takes user.* attributes.
  TempDir tmp;
  std::vector<std::string> bases{tmp.path().string(), "/var/tmp", RINGSHARD_BIN_DIR};
  std::optional<ScratchDir> scratch;
  std::string path;
  for (const auto& base : bases) {
    scratch.emplace(base);
    if (!scratch->ok()) continue;
    path = scratch->path() + "/attrs";
    spit(path, "with attributes");
    if (::setxattr(path.c_str(), "user.ringshard.probe", "1", 1, 0) == 0) break;
    path.clear();
  }
  if (path.empty()) RINGSHARD_SKIP("no writable filesystem here supports user.* extended attributes");
  Ring ring(4);

  const char* name = "user.ringshard.path";
  const std::string value = "path-value";
  auto cqe = run(ring, [&](io_uring_sqe* sqe) {
    prep_setxattr(sqe, name, value.data(), path.c_str(), 0, static_cast<unsigned>(value.size()));
  });
  REQUIRE(cqe.res == 0);
  std::array<char, 64> sys{};
  REQUIRE(::getxattr(path.c_str(), name, sys.data(), sys.size()) == static_cast<ssize_t>(value.size()));
  CHECK(std::string(sys.data(), value.size()) == value);

  std::array<char, 64> got{};
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_getxattr(sqe, name, got.data(), path.c_str(), got.size()); });
  CHECK(cqe.res == static_cast<int>(value.size()));
  CHECK(std::string(got.data(), value.size()) == value);
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_getxattr(sqe, name, got.data(), path.c_str(), 3); });
  CHECK(cqe.res == -ERANGE);
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_getxattr(sqe, "user.absent", got.data(), path.c_str(), got.size()); });
  CHECK(cqe.res == -ENODATA);

  // XATTR_CREATE refuses an existing name; XATTR_REPLACE a missing one.
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_setxattr(sqe, name, "x", path.c_str(), XATTR_CREATE, 1); });
  CHECK(cqe.res == -EEXIST);
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_setxattr(sqe, "user.absent", "x", path.c_str(), XATTR_REPLACE, 1); });
  CHECK(cqe.res == -ENODATA);

  Fd fd = open_or_fail(path, O_RDWR);
  const char* fname = "user.ringshard.fd";
  const std::string fvalue = "via-fd";
  cqe = run(ring, [&](io_uring_sqe* sqe) {
    prep_fsetxattr(sqe, fd.get(), fname, fvalue.data(), XATTR_CREATE, static_cast<unsigned>(fvalue.size()));
  });
  REQUIRE(cqe.res == 0);
  sys = {};
  CHECK(::fgetxattr(fd.get(), fname, sys.data(), sys.size()) == static_cast<ssize_t>(fvalue.size()));
  CHECK(std::string(sys.data(), fvalue.size()) == fvalue);
  got = {};
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_fgetxattr(sqe, fd.get(), fname, got.data(), got.size()); });
  CHECK(cqe.res == static_cast<int>(fvalue.size()));
  CHECK(std::string(got.data(), fvalue.size()) == fvalue);
  // The path-set attribute is visible through the fd too.
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_fgetxattr(sqe, fd.get(), name, got.data(), got.size()); });
  CHECK(cqe.res == static_cast<int>(value.size()));
  CHECK(std::string(got.data(), value.size()) == value);
}

// ---- registered file table ---------------------------------------------------------------

TEST_CASE("FixedFile sets IOSQE_FIXED_FILE and a read through a registered file works") {
  TempDir dir;
  spit(dir.file("ff"), "fixed file data");
  Fd fd = open_or_fail(dir.file("ff"), O_RDONLY);
  Ring ring(4);
  std::array<int, 1> fds{fd.get()};
  REQUIRE(ring.register_files(fds) == 0);

  std::array<char, 32> buf{};
  io_uring_sqe* sqe = ring.get_sqe();
  REQUIRE(sqe != nullptr);
  prep_read(sqe, FixedFile{0}, buf, 6);
  CHECK((sqe->flags & IOSQE_FIXED_FILE) != 0);
  CHECK(sqe->fd == 0);
  const io_uring_cqe cqe = test::submit_and_reap(ring);
  CHECK(cqe.res == 9);
  CHECK(std::string(buf.data(), 9) == "file data");

  // A plain int is an fd, without the flag.
  sqe = ring.get_sqe();
  REQUIRE(sqe != nullptr);
  prep_read(sqe, fd.get(), buf, 0);
  CHECK((sqe->flags & IOSQE_FIXED_FILE) == 0);
  CHECK(sqe->fd == fd.get());
  CHECK(test::submit_and_reap(ring).res == 15);

  // Closing the fd does not affect the registered copy.
  fd.reset();
  buf = {};
  auto again = run(ring, [&](io_uring_sqe* s) { prep_read(s, FixedFile{0}, buf, 0); });
  CHECK(again.res == 15);
  CHECK(std::string(buf.data(), 15) == "fixed file data");
}

TEST_CASE("register_files, register_files_update, register_file_alloc_range and unregister_files manage the table") {
  TempDir dir;
  spit(dir.file("one"), "one");
  spit(dir.file("two"), "two");
  spit(dir.file("three"), "three");
  Fd one = open_or_fail(dir.file("one"), O_RDONLY);
  Fd two = open_or_fail(dir.file("two"), O_RDONLY);
  Fd three = open_or_fail(dir.file("three"), O_RDONLY);
  const std::string one_path = dir.file("one");
  Ring ring(4);
  std::array<char, 8> buf{};
  auto read_slot = [&](unsigned slot) {
    buf = {};
    return run(ring, [&](io_uring_sqe* sqe) { prep_read(sqe, FixedFile{slot}, buf, 0); }).res;
  };

  // -1 leaves a slot empty.
  std::array<int, 6> fds{one.get(), -1, two.get(), -1, -1, -1};
  REQUIRE(ring.register_files(fds) == 0);
  CHECK(ring.register_files(fds) == -EBUSY);  // already registered
  CHECK(read_slot(0) == 3);
  CHECK(std::string(buf.data(), 3) == "one");
  CHECK(read_slot(1) == -EBADF);
  CHECK(read_slot(2) == 3);
  CHECK(std::string(buf.data(), 3) == "two");

  std::array<int, 1> upd{three.get()};
  CHECK(ring.register_files_update(1, upd) == 1);
  CHECK(read_slot(1) == 5);
  CHECK(std::string(buf.data(), 5) == "three");
  std::array<int, 1> clear{-1};
  CHECK(ring.register_files_update(0, clear) == 1);
  CHECK(read_slot(0) == -EBADF);
  CHECK(ring.register_files_update(6, upd) < 0);  // past the table

  // Allocation only hands out slots in the configured range.
  REQUIRE(ring.register_file_alloc_range(4, 2) == 0);
  std::vector<int> got;
  for (int i = 0; i < 3; ++i) {
    got.push_back(run(ring, [&](io_uring_sqe* sqe) {
                    prep_openat_direct(sqe, AT_FDCWD, one_path.c_str(), O_RDONLY, 0, IORING_FILE_INDEX_ALLOC);
                  }).res);
  }
  CHECK(((got[0] == 4 && got[1] == 5) || (got[0] == 5 && got[1] == 4)));
  CHECK(got[2] == -ENFILE);
  CHECK(read_slot(4) == 3);

  REQUIRE(ring.unregister_files() == 0);
  CHECK(read_slot(1) == -EBADF);
  CHECK(ring.unregister_files() == -ENXIO);
}

TEST_CASE("prep_files_update replaces slots at an offset and allocates slots with IORING_FILE_INDEX_ALLOC") {
  TempDir dir;
  spit(dir.file("p"), "pp");
  spit(dir.file("q"), "qqq");
  Fd p = open_or_fail(dir.file("p"), O_RDONLY);
  Fd q = open_or_fail(dir.file("q"), O_RDONLY);
  Ring ring(4);
  REQUIRE(ring.register_files_sparse(8) == 0);
  std::array<char, 8> buf{};
  auto read_slot = [&](unsigned slot) {
    buf = {};
    return run(ring, [&](io_uring_sqe* sqe) { prep_read(sqe, FixedFile{slot}, buf, 0); }).res;
  };

  std::array<int, 2> fds{p.get(), q.get()};
  auto cqe = run(ring, [&](io_uring_sqe* sqe) { prep_files_update(sqe, fds, 3); });
  CHECK(cqe.res == 2);
  CHECK(read_slot(3) == 2);
  CHECK(read_slot(4) == 3);
  CHECK(std::string(buf.data(), 3) == "qqq");

  std::array<int, 1> remove{-1};
  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_files_update(sqe, remove, 3); });
  CHECK(cqe.res == 1);
  CHECK(read_slot(3) == -EBADF);

  std::array<int, 2> alloc{q.get(), p.get()};
  cqe = run(ring, [&](io_uring_sqe* sqe) {
    prep_files_update(sqe, alloc, static_cast<int>(IORING_FILE_INDEX_ALLOC));
  });
  CHECK(cqe.res == 2);
  // The chosen slots were written back over the fds.
  REQUIRE(alloc[0] >= 0);
  REQUIRE(alloc[0] < 8);
  REQUIRE(alloc[1] >= 0);
  REQUIRE(alloc[1] < 8);
  CHECK(alloc[0] != alloc[1]);
  CHECK(alloc[0] != 4);
  CHECK(alloc[1] != 4);
  CHECK(read_slot(static_cast<unsigned>(alloc[0])) == 3);
  CHECK(read_slot(static_cast<unsigned>(alloc[1])) == 2);
  CHECK(std::string(buf.data(), 2) == "pp");
}

TEST_CASE("prep_fixed_fd_install turns a registered file into a regular fd, close-on-exec unless asked otherwise") {
  RINGSHARD_REQUIRE_OPCODE(abi::op_fixed_fd_install);
  TempDir dir;
  const std::string path = dir.file("inst");
  spit(path, "installed");
  Ring ring(4);
  REQUIRE(ring.register_files_sparse(2) == 0);
  auto cqe = run(ring, [&](io_uring_sqe* sqe) {
    prep_openat_direct(sqe, AT_FDCWD, path.c_str(), O_RDONLY, 0, 1);
  });
  REQUIRE(cqe.res == 0);

  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_fixed_fd_install(sqe, FixedFile{1}, 0); });
  REQUIRE(cqe.res >= 0);
  Fd installed(cqe.res);
  CHECK((::fcntl(installed.get(), F_GETFD) & FD_CLOEXEC) != 0);
  CHECK(read_all_from(installed.get(), 9) == "installed");

  cqe = run(ring, [&](io_uring_sqe* sqe) { prep_fixed_fd_install(sqe, FixedFile{1}, IORING_FIXED_FD_NO_CLOEXEC); });
  REQUIRE(cqe.res >= 0);
  Fd inheritable(cqe.res);
  CHECK(inheritable.get() != installed.get());
  CHECK((::fcntl(inheritable.get(), F_GETFD) & FD_CLOEXEC) == 0);

  // The slot stays registered; an empty slot cannot be installed.
  CHECK(run(ring, [&](io_uring_sqe* sqe) { prep_fixed_fd_install(sqe, FixedFile{0}, 0); }).res == -EBADF);
}

// ---- multishot read ------------------------------------------------------------------------

TEST_CASE("prep_read_multishot reads a pipe into provided buffers, one CQE per chunk with F_MORE until EOF") {
  RINGSHARD_REQUIRE_OPCODE(abi::op_read_multishot);
  Pipe p = make_pipe();
  Ring ring(8);
  constexpr unsigned kBufs = 8, kBufSize = 64;
  constexpr std::uint16_t kGroup = 7;
  BufferRing br(ring, kBufs, kGroup);
  std::vector<char> mem(kBufs * kBufSize);
  for (unsigned i = 0; i < kBufs; ++i) br.add(mem.data() + i * kBufSize, kBufSize, static_cast<std::uint16_t>(i), static_cast<int>(i));
  br.advance(static_cast<int>(kBufs));

  io_uring_sqe* sqe = ring.get_sqe();
  REQUIRE(sqe != nullptr);
  prep_read_multishot(sqe, p.r.get(), 0, 0, kGroup);
  CHECK((sqe->flags & IOSQE_BUFFER_SELECT) != 0);
  sqe_set_data64(sqe, 49);
  REQUIRE(ring.submit() == 1);

  auto next = [&] {
    io_uring_cqe* c = nullptr;
    REQUIRE(ring.wait_cqe_timeout(&c, 2s) == 0);
    io_uring_cqe copy = *c;
    ring.cqe_seen(c);
    return copy;
  };

  const std::array<std::string, 3> chunks{"abc", "defgh", std::string(40, 'Z')};
  std::vector<std::uint16_t> bids;
  for (const auto& chunk : chunks) {
    REQUIRE(::write(p.w.get(), chunk.data(), chunk.size()) == static_cast<ssize_t>(chunk.size()));
    const io_uring_cqe cqe = next();
    CHECK(cqe.user_data == 49);
    REQUIRE(cqe.res == static_cast<int>(chunk.size()));
    CHECK(cqe_has_more(&cqe));
    REQUIRE(cqe_has_buffer(&cqe));
    const std::uint16_t bid = cqe_buffer_id(&cqe);
    REQUIRE(bid < kBufs);
    CHECK(std::string(mem.data() + bid * kBufSize, chunk.size()) == chunk);
    bids.push_back(bid);
  }
  // Buffers are taken in ring order.
  CHECK(bids == std::vector<std::uint16_t>{0, 1, 2});

  // More data than one buffer holds spreads over several buffers.
  const std::string big = random_bytes(150, 7);
  REQUIRE(::write(p.w.get(), big.data(), big.size()) == static_cast<ssize_t>(big.size()));
  std::string assembled;
  for (int guard = 0; assembled.size() < big.size() && guard < 8; ++guard) {
    const io_uring_cqe cqe = next();
    REQUIRE(cqe.res > 0);
    REQUIRE(cqe_has_buffer(&cqe));
    CHECK(cqe_has_more(&cqe));
    CHECK(cqe.res <= static_cast<int>(kBufSize));
    assembled.append(mem.data() + cqe_buffer_id(&cqe) * kBufSize, static_cast<std::size_t>(cqe.res));
  }
  CHECK(assembled == big);

  // EOF ends the request: res 0 and no F_MORE.
  p.w.reset();
  const io_uring_cqe last = next();
  CHECK(last.res == 0);
  CHECK(!cqe_has_more(&last));
}
