// Differential tests against liburing 2.3 (Debian's liburing-dev).
//
// ringshard's uring layer is a port of liburing, and its prep helpers promise
// to produce the very SQE that liburing's io_uring_prep_* of the same name
// produces. That promise is what lets liburing's documentation, man pages and
// examples describe ringshard's helpers, and it is easy to break silently: a
// swapped pair of arguments, a field written to the wrong member of one of the
// SQE's unions, a forgotten reset of a field that a recycled SQE still
// carries. The kernel would not complain about most of those; it would just
// do something else.
//
// So for EVERY io_uring_prep_* helper liburing 2.3 has (all 73 of them), each
// test below calls ringshard's prep_X and liburing's io_uring_prep_X with the
// same arguments on two SQEs that start out filled with the same garbage byte
// pattern, and requires the two 64-byte SQEs to be byte-for-byte identical.
// The garbage shows a field that one side writes and the other leaves
// stale; running each comparison with two different patterns (0xA5, 0x5A)
// shows a field written with a value that happens to equal the pattern.
// Arguments are distinctive (odd pointers, offsets and lengths with all
// bytes different, non-zero flags) so that swapped fields differ. user_data
// belongs to the caller: both sides must leave it untouched. On failure the
// report names each differing field with its byte range and both values.
//
// ringshard-only conveniences are compared with the liburing calls they stand
// for (a FixedFile target is liburing's call plus IOSQE_FIXED_FILE; prep_sendto
// is prep_send plus send_set_addr; ...). Helpers for opcodes newer than
// liburing 2.3 have no counterpart here.
//
// Finally a few ring-level behaviours are compared with liburing's struct
// io_uring on the same kernel: sizes, features and mmap offsets after setup
// with the same parameters, the same refusals, the same SQ-full point, and the
// same CQEs for the same batch of NOPs.
//
// liburing.h brings its own copy of the kernel header ("liburing/io_uring.h")
// under the include guard of <linux/io_uring.h>, so it is included first and
// ringshard's headers see liburing's copy; abi.hpp fills in what that copy lacks.
#include <liburing.h>

#include <linux/openat2.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "support.hpp"

using namespace ringshard::uring;
using namespace std::chrono_literals;

namespace {

// ---- the comparison ------------------------------------------------------------

struct SqeField {
  const char* name;
  std::size_t offset;
  std::size_t size;
};

// Every byte of the 64-byte SQE, field by field (unions named by their members).
constexpr SqeField kSqeFields[] = {
    {"opcode", offsetof(io_uring_sqe, opcode), 1},
    {"flags", offsetof(io_uring_sqe, flags), 1},
    {"ioprio", offsetof(io_uring_sqe, ioprio), 2},
    {"fd", offsetof(io_uring_sqe, fd), 4},
    {"off/addr2", offsetof(io_uring_sqe, off), 8},
    {"addr/splice_off_in", offsetof(io_uring_sqe, addr), 8},
    {"len", offsetof(io_uring_sqe, len), 4},
    {"rw_flags/msg_flags/timeout_flags/...", offsetof(io_uring_sqe, rw_flags), 4},
    {"user_data", offsetof(io_uring_sqe, user_data), 8},
    {"buf_index/buf_group", offsetof(io_uring_sqe, buf_index), 2},
    {"personality", offsetof(io_uring_sqe, personality), 2},
    {"splice_fd_in/file_index/addr_len", offsetof(io_uring_sqe, file_index), 4},
    {"addr3", offsetof(io_uring_sqe, addr3), 8},
    {"__pad2", offsetof(io_uring_sqe, __pad2), 8},
};
static_assert(sizeof(io_uring_sqe) == 64);
static_assert(offsetof(io_uring_sqe, __pad2) + 8 == sizeof(io_uring_sqe));

// The 64 bytes of an SQE. (io_uring_sqe itself cannot be a struct member
// under -Wpedantic: one of its unions ends in a zero-size array.)
using SqeBytes = std::array<unsigned char, sizeof(io_uring_sqe)>;

SqeBytes bytes_of(const io_uring_sqe& sqe) {
  SqeBytes b;
  std::memcpy(b.data(), &sqe, b.size());
  return b;
}

std::uint64_t field_value(const SqeBytes& sqe, const SqeField& f) {
  std::uint64_t v = 0;
  std::memcpy(&v, sqe.data() + f.offset, f.size);  // little-endian
  return v;
}

/// One line per differing field: name, byte range, both values. Empty when identical.
std::string describe_sqe_diff(const SqeBytes& ours, const SqeBytes& theirs) {
  std::string out;
  for (const SqeField& f : kSqeFields) {
    if (std::memcmp(ours.data() + f.offset, theirs.data() + f.offset, f.size) == 0) continue;
    char line[200];
    const int width = static_cast<int>(f.size * 2);
    std::snprintf(line, sizeof line, "  %s (bytes %zu..%zu): ringshard 0x%0*llx, liburing 0x%0*llx\n", f.name,
                  f.offset, f.offset + f.size - 1, width, static_cast<unsigned long long>(field_value(ours, f)),
                  width, static_cast<unsigned long long>(field_value(theirs, f)));
    out += line;
  }
  return out;
}
std::string describe_sqe_diff(const io_uring_sqe& ours, const io_uring_sqe& theirs) {
  return describe_sqe_diff(bytes_of(ours), bytes_of(theirs));
}

constexpr unsigned char kGarbagePatterns[] = {0xA5, 0x5A};

io_uring_sqe garbage_sqe(unsigned char pattern) {
  io_uring_sqe sqe;
  std::memset(&sqe, pattern, sizeof sqe);
  return sqe;
}

/// The SQEs ringshard's and liburing's helper produced from the same garbage.
struct SqePair {
  const char* what;
  unsigned char pattern;
  SqeBytes ours;
  SqeBytes theirs;

  [[nodiscard]] bool user_data_untouched() const {
    const SqeBytes g = bytes_of(garbage_sqe(pattern));
    constexpr std::size_t at = offsetof(io_uring_sqe, user_data);
    return std::memcmp(ours.data() + at, g.data() + at, 8) == 0 &&
           std::memcmp(theirs.data() + at, g.data() + at, 8) == 0;
  }
  /// Guards the comparison against being vacuous (liburing's call did something).
  [[nodiscard]] bool liburing_wrote() const { return theirs != bytes_of(garbage_sqe(pattern)); }
  [[nodiscard]] std::string report() const {
    char head[160];
    std::snprintf(head, sizeof head, "%s, SQEs pre-filled with 0x%02X:\n", what, pattern);
    const std::string diff = describe_sqe_diff(ours, theirs);
    return head + (diff.empty() ? std::string("  identical\n") : diff);
  }
};

template <class Ours, class Theirs>
SqePair prep_both(const char* what, unsigned char pattern, Ours&& ours, Theirs&& theirs) {
  io_uring_sqe a = garbage_sqe(pattern);
  io_uring_sqe b = garbage_sqe(pattern);
  ours(&a);
  theirs(&b);
  return SqePair{what, pattern, bytes_of(a), bytes_of(b)};
}

}  // namespace

/// CHECK_SAME_SQE("name", [&](io_uring_sqe* s) { ringshard }, [&](io_uring_sqe* s) { liburing }):
/// both lambdas run on equally pre-filled SQEs, for each garbage pattern.
#define CHECK_SAME_SQE(what, ...)                                                   \
  do {                                                                              \
    for (const unsigned char pattern_ : kGarbagePatterns) {                         \
      const SqePair pair_ = prep_both(what, pattern_, __VA_ARGS__);                 \
      INFO(pair_.report());                                                         \
      CHECK(std::memcmp(pair_.ours.data(), pair_.theirs.data(), sizeof(io_uring_sqe)) == 0); \
      CHECK(pair_.user_data_untouched());                                           \
      CHECK(pair_.liburing_wrote());                                                \
    }                                                                               \
  } while (0)

namespace {

// Distinctive argument values: every byte different, odd where a pointer or
// length could be, so that a value landing in the wrong field shows.
constexpr int kFd = 0x1357;
constexpr int kFd2 = 0x2469;
constexpr std::uint64_t kOffset = 0x0123'4567'89AB'CDEFULL;
constexpr std::uint64_t kUserData = 0xFEDC'BA98'7654'3211ULL;
constexpr std::uint64_t kUserData2 = 0x1122'3344'5566'7789ULL;
constexpr std::size_t kLen = 0x2345;
constexpr unsigned kFileIndex = 0x2B;
constexpr int kBufIndex = 0x1B7;

void* fake_ptr(std::uintptr_t v) { return reinterpret_cast<void*>(v); }
char* fake_str(std::uintptr_t v) { return static_cast<char*>(fake_ptr(v)); }

void* const kBuf = fake_ptr(0x7FFF'1234'5679ULL);
char* const kPath = fake_str(0x7FFF'0BAD'CAF1ULL);
char* const kPath2 = fake_str(0x7FFF'0DEF'ACE5ULL);
char* const kName = fake_str(0x7FFF'0000'BEE3ULL);
char* const kValue = fake_str(0x7FFF'0000'FEE7ULL);

}  // namespace

TEST_CASE("the SQE comparison reports a differing field by name and byte range") {
  io_uring_sqe a = garbage_sqe(0xA5);
  io_uring_sqe b = garbage_sqe(0xA5);
  CHECK(describe_sqe_diff(a, b).empty());
  b.len = 0x1234;
  b.addr3 = 7;
  const std::string diff = describe_sqe_diff(a, b);
  INFO(diff);
  CHECK(std::memcmp(&a, &b, sizeof a) != 0);
  CHECK(diff.find("len (bytes 24..27)") != std::string::npos);
  CHECK(diff.find("liburing 0x00001234") != std::string::npos);
  CHECK(diff.find("addr3 (bytes 48..55)") != std::string::npos);
  CHECK(diff.find("opcode") == std::string::npos);
}

TEST_CASE("prep_rw and prep_nop match liburing") {
  CHECK_SAME_SQE(
      "prep_rw", [&](io_uring_sqe* s) { prep_rw(IORING_OP_READ, s, kFd, kBuf, 0x0BADF00D, kOffset); },
      [&](io_uring_sqe* s) { io_uring_prep_rw(IORING_OP_READ, s, kFd, kBuf, 0x0BADF00D, kOffset); });
  CHECK_SAME_SQE(
      "prep_nop", [&](io_uring_sqe* s) { prep_nop(s); }, [&](io_uring_sqe* s) { io_uring_prep_nop(s); });
}

TEST_CASE("read and write preparation matches liburing (plain, vectored, readv2/writev2 flags, fixed buffers)") {
  iovec iov[3]{};
  const std::span<const iovec> vecs(iov, 3);
  CHECK_SAME_SQE(
      "prep_read", [&](io_uring_sqe* s) { prep_read(s, kFd, MutableBuffer(kBuf, kLen), kOffset); },
      [&](io_uring_sqe* s) { io_uring_prep_read(s, kFd, kBuf, kLen, kOffset); });
  CHECK_SAME_SQE(
      "prep_write", [&](io_uring_sqe* s) { prep_write(s, kFd, ConstBuffer(kBuf, kLen), kOffset); },
      [&](io_uring_sqe* s) { io_uring_prep_write(s, kFd, kBuf, kLen, kOffset); });
  CHECK_SAME_SQE(
      "prep_readv", [&](io_uring_sqe* s) { prep_readv(s, kFd, vecs, kOffset); },
      [&](io_uring_sqe* s) { io_uring_prep_readv(s, kFd, iov, 3, kOffset); });
  CHECK_SAME_SQE(
      "prep_readv2", [&](io_uring_sqe* s) { prep_readv2(s, kFd, vecs, kOffset, RWF_HIPRI | RWF_NOWAIT); },
      [&](io_uring_sqe* s) { io_uring_prep_readv2(s, kFd, iov, 3, kOffset, RWF_HIPRI | RWF_NOWAIT); });
  CHECK_SAME_SQE(
      "prep_writev", [&](io_uring_sqe* s) { prep_writev(s, kFd, vecs, kOffset); },
      [&](io_uring_sqe* s) { io_uring_prep_writev(s, kFd, iov, 3, kOffset); });
  CHECK_SAME_SQE(
      "prep_writev2", [&](io_uring_sqe* s) { prep_writev2(s, kFd, vecs, kOffset, RWF_DSYNC | RWF_APPEND); },
      [&](io_uring_sqe* s) { io_uring_prep_writev2(s, kFd, iov, 3, kOffset, RWF_DSYNC | RWF_APPEND); });
  CHECK_SAME_SQE(
      "prep_read_fixed",
      [&](io_uring_sqe* s) { prep_read_fixed(s, kFd, MutableBuffer(kBuf, kLen), kOffset, kBufIndex); },
      [&](io_uring_sqe* s) { io_uring_prep_read_fixed(s, kFd, kBuf, kLen, kOffset, kBufIndex); });
  CHECK_SAME_SQE(
      "prep_write_fixed",
      [&](io_uring_sqe* s) { prep_write_fixed(s, kFd, ConstBuffer(kBuf, kLen), kOffset, kBufIndex); },
      [&](io_uring_sqe* s) { io_uring_prep_write_fixed(s, kFd, kBuf, kLen, kOffset, kBufIndex); });
}

TEST_CASE("sync, allocation, advice and statx preparation matches liburing") {
  struct statx stx {};
  CHECK_SAME_SQE(
      "prep_fsync", [&](io_uring_sqe* s) { prep_fsync(s, kFd, IORING_FSYNC_DATASYNC); },
      [&](io_uring_sqe* s) { io_uring_prep_fsync(s, kFd, IORING_FSYNC_DATASYNC); });
  CHECK_SAME_SQE(
      "prep_sync_file_range",
      [&](io_uring_sqe* s) {
        prep_sync_file_range(s, kFd, 0x5432, kOffset, SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
      },
      [&](io_uring_sqe* s) {
        io_uring_prep_sync_file_range(s, kFd, 0x5432, kOffset, SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
      });
  CHECK_SAME_SQE(
      "prep_fallocate",
      [&](io_uring_sqe* s) {
        prep_fallocate(s, kFd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0x12'3456'789B, 0x0F'EDCB'A987);
      },
      [&](io_uring_sqe* s) {
        io_uring_prep_fallocate(s, kFd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0x12'3456'789B, 0x0F'EDCB'A987);
      });
  CHECK_SAME_SQE(
      "prep_fadvise", [&](io_uring_sqe* s) { prep_fadvise(s, kFd, kOffset, 0x7654'3211, POSIX_FADV_DONTNEED); },
      [&](io_uring_sqe* s) { io_uring_prep_fadvise(s, kFd, kOffset, 0x7654'3211, POSIX_FADV_DONTNEED); });
  CHECK_SAME_SQE(
      "prep_madvise", [&](io_uring_sqe* s) { prep_madvise(s, kBuf, 0x7654'3211, MADV_DONTNEED); },
      [&](io_uring_sqe* s) { io_uring_prep_madvise(s, kBuf, 0x7654'3211, MADV_DONTNEED); });
  CHECK_SAME_SQE(
      "prep_statx",
      [&](io_uring_sqe* s) {
        prep_statx(s, kFd, kPath, AT_SYMLINK_NOFOLLOW | AT_STATX_DONT_SYNC, STATX_SIZE | STATX_MTIME, &stx);
      },
      [&](io_uring_sqe* s) {
        io_uring_prep_statx(s, kFd, kPath, AT_SYMLINK_NOFOLLOW | AT_STATX_DONT_SYNC, STATX_SIZE | STATX_MTIME, &stx);
      });
}

TEST_CASE("open, close and files_update preparation matches liburing, direct variants included") {
  open_how how{};
  int fds[3] = {3, 4, 5};
  constexpr int kOpenFlags = O_RDWR | O_CREAT | O_CLOEXEC | O_TRUNC;
  CHECK_SAME_SQE(
      "prep_openat", [&](io_uring_sqe* s) { prep_openat(s, kFd, kPath, kOpenFlags, 0640); },
      [&](io_uring_sqe* s) { io_uring_prep_openat(s, kFd, kPath, kOpenFlags, 0640); });
  CHECK_SAME_SQE(
      "prep_openat_direct",
      [&](io_uring_sqe* s) { prep_openat_direct(s, kFd, kPath, kOpenFlags, 0640, kFileIndex); },
      [&](io_uring_sqe* s) { io_uring_prep_openat_direct(s, kFd, kPath, kOpenFlags, 0640, kFileIndex); });
  CHECK_SAME_SQE(
      "prep_openat_direct(IORING_FILE_INDEX_ALLOC)",
      [&](io_uring_sqe* s) { prep_openat_direct(s, kFd, kPath, kOpenFlags, 0640, IORING_FILE_INDEX_ALLOC - 1); },
      [&](io_uring_sqe* s) {
        io_uring_prep_openat_direct(s, kFd, kPath, kOpenFlags, 0640, IORING_FILE_INDEX_ALLOC - 1);
      });
  CHECK_SAME_SQE(
      "prep_openat2", [&](io_uring_sqe* s) { prep_openat2(s, kFd, kPath, &how); },
      [&](io_uring_sqe* s) { io_uring_prep_openat2(s, kFd, kPath, &how); });
  CHECK_SAME_SQE(
      "prep_openat2_direct", [&](io_uring_sqe* s) { prep_openat2_direct(s, kFd, kPath, &how, kFileIndex); },
      [&](io_uring_sqe* s) { io_uring_prep_openat2_direct(s, kFd, kPath, &how, kFileIndex); });
  CHECK_SAME_SQE(
      "prep_close", [&](io_uring_sqe* s) { prep_close(s, kFd); },
      [&](io_uring_sqe* s) { io_uring_prep_close(s, kFd); });
  CHECK_SAME_SQE(
      "prep_close_direct", [&](io_uring_sqe* s) { prep_close_direct(s, kFileIndex); },
      [&](io_uring_sqe* s) { io_uring_prep_close_direct(s, kFileIndex); });
  CHECK_SAME_SQE(
      "prep_files_update", [&](io_uring_sqe* s) { prep_files_update(s, std::span<int>(fds), 0x31); },
      [&](io_uring_sqe* s) { io_uring_prep_files_update(s, fds, 3, 0x31); });
}

TEST_CASE("splice and tee preparation matches liburing") {
  CHECK_SAME_SQE(
      "prep_splice",
      [&](io_uring_sqe* s) {
        prep_splice(s, kFd, 0x1111'2222'3333, kFd2, 0x4444'5555'6667, 0x7779, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      },
      [&](io_uring_sqe* s) {
        io_uring_prep_splice(s, kFd, 0x1111'2222'3333, kFd2, 0x4444'5555'6667, 0x7779,
                             SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      });
  CHECK_SAME_SQE(
      "prep_splice(off_in -1)",
      [&](io_uring_sqe* s) { prep_splice(s, kFd, -1, kFd2, -1, 0x7779, SPLICE_F_FD_IN_FIXED); },
      [&](io_uring_sqe* s) { io_uring_prep_splice(s, kFd, -1, kFd2, -1, 0x7779, SPLICE_F_FD_IN_FIXED); });
  CHECK_SAME_SQE(
      "prep_tee", [&](io_uring_sqe* s) { prep_tee(s, kFd, kFd2, 0x7779, SPLICE_F_NONBLOCK); },
      [&](io_uring_sqe* s) { io_uring_prep_tee(s, kFd, kFd2, 0x7779, SPLICE_F_NONBLOCK); });
}

TEST_CASE("path operation preparation matches liburing (rename, unlink, mkdir, symlink, link)") {
  CHECK_SAME_SQE(
      "prep_renameat", [&](io_uring_sqe* s) { prep_renameat(s, kFd, kPath, kFd2, kPath2, RENAME_NOREPLACE); },
      [&](io_uring_sqe* s) { io_uring_prep_renameat(s, kFd, kPath, kFd2, kPath2, RENAME_NOREPLACE); });
  CHECK_SAME_SQE(
      "prep_rename", [&](io_uring_sqe* s) { prep_rename(s, kPath, kPath2); },
      [&](io_uring_sqe* s) { io_uring_prep_rename(s, kPath, kPath2); });
  CHECK_SAME_SQE(
      "prep_unlinkat", [&](io_uring_sqe* s) { prep_unlinkat(s, kFd, kPath, AT_REMOVEDIR); },
      [&](io_uring_sqe* s) { io_uring_prep_unlinkat(s, kFd, kPath, AT_REMOVEDIR); });
  CHECK_SAME_SQE(
      "prep_unlink", [&](io_uring_sqe* s) { prep_unlink(s, kPath, AT_REMOVEDIR); },
      [&](io_uring_sqe* s) { io_uring_prep_unlink(s, kPath, AT_REMOVEDIR); });
  CHECK_SAME_SQE(
      "prep_mkdirat", [&](io_uring_sqe* s) { prep_mkdirat(s, kFd, kPath, 0751); },
      [&](io_uring_sqe* s) { io_uring_prep_mkdirat(s, kFd, kPath, 0751); });
  CHECK_SAME_SQE(
      "prep_mkdir", [&](io_uring_sqe* s) { prep_mkdir(s, kPath, 0751); },
      [&](io_uring_sqe* s) { io_uring_prep_mkdir(s, kPath, 0751); });
  CHECK_SAME_SQE(
      "prep_symlinkat", [&](io_uring_sqe* s) { prep_symlinkat(s, kPath, kFd2, kPath2); },
      [&](io_uring_sqe* s) { io_uring_prep_symlinkat(s, kPath, kFd2, kPath2); });
  CHECK_SAME_SQE(
      "prep_symlink", [&](io_uring_sqe* s) { prep_symlink(s, kPath, kPath2); },
      [&](io_uring_sqe* s) { io_uring_prep_symlink(s, kPath, kPath2); });
  CHECK_SAME_SQE(
      "prep_linkat", [&](io_uring_sqe* s) { prep_linkat(s, kFd, kPath, kFd2, kPath2, AT_SYMLINK_FOLLOW); },
      [&](io_uring_sqe* s) { io_uring_prep_linkat(s, kFd, kPath, kFd2, kPath2, AT_SYMLINK_FOLLOW); });
  CHECK_SAME_SQE(
      "prep_link", [&](io_uring_sqe* s) { prep_link(s, kPath, kPath2, AT_SYMLINK_FOLLOW); },
      [&](io_uring_sqe* s) { io_uring_prep_link(s, kPath, kPath2, AT_SYMLINK_FOLLOW); });
}

TEST_CASE("extended attribute preparation matches liburing") {
  constexpr int kXattrCreate = 1;  // XATTR_CREATE
  CHECK_SAME_SQE(
      "prep_getxattr", [&](io_uring_sqe* s) { prep_getxattr(s, kName, kValue, kPath, 0x3FF); },
      [&](io_uring_sqe* s) { io_uring_prep_getxattr(s, kName, kValue, kPath, 0x3FF); });
  CHECK_SAME_SQE(
      "prep_setxattr", [&](io_uring_sqe* s) { prep_setxattr(s, kName, kValue, kPath, kXattrCreate, 0x3FF); },
      [&](io_uring_sqe* s) { io_uring_prep_setxattr(s, kName, kValue, kPath, kXattrCreate, 0x3FF); });
  CHECK_SAME_SQE(
      "prep_fgetxattr", [&](io_uring_sqe* s) { prep_fgetxattr(s, kFd, kName, kValue, 0x3FF); },
      [&](io_uring_sqe* s) { io_uring_prep_fgetxattr(s, kFd, kName, kValue, 0x3FF); });
  CHECK_SAME_SQE(
      "prep_fsetxattr", [&](io_uring_sqe* s) { prep_fsetxattr(s, kFd, kName, kValue, kXattrCreate, 0x3FF); },
      [&](io_uring_sqe* s) { io_uring_prep_fsetxattr(s, kFd, kName, kValue, kXattrCreate, 0x3FF); });
}

TEST_CASE("poll and epoll preparation matches liburing (add, multishot, remove, update, epoll_ctl)") {
  constexpr unsigned kMask = POLLIN | POLLPRI | POLLOUT | POLLRDHUP;
  epoll_event ev{};
  CHECK_SAME_SQE(
      "prep_poll_add", [&](io_uring_sqe* s) { prep_poll_add(s, kFd, kMask); },
      [&](io_uring_sqe* s) { io_uring_prep_poll_add(s, kFd, kMask); });
  CHECK_SAME_SQE(
      "prep_poll_multishot", [&](io_uring_sqe* s) { prep_poll_multishot(s, kFd, kMask); },
      [&](io_uring_sqe* s) { io_uring_prep_poll_multishot(s, kFd, kMask); });
  CHECK_SAME_SQE(
      "prep_poll_remove", [&](io_uring_sqe* s) { prep_poll_remove(s, kUserData); },
      [&](io_uring_sqe* s) { io_uring_prep_poll_remove(s, kUserData); });
  constexpr unsigned kUpdate = IORING_POLL_UPDATE_EVENTS | IORING_POLL_UPDATE_USER_DATA | IORING_POLL_ADD_MULTI;
  CHECK_SAME_SQE(
      "prep_poll_update", [&](io_uring_sqe* s) { prep_poll_update(s, kUserData, kUserData2, kMask, kUpdate); },
      [&](io_uring_sqe* s) { io_uring_prep_poll_update(s, kUserData, kUserData2, kMask, kUpdate); });
  CHECK_SAME_SQE(
      "prep_epoll_ctl", [&](io_uring_sqe* s) { prep_epoll_ctl(s, kFd, kFd2, EPOLL_CTL_MOD, &ev); },
      [&](io_uring_sqe* s) { io_uring_prep_epoll_ctl(s, kFd, kFd2, EPOLL_CTL_MOD, &ev); });
}

TEST_CASE("timeout preparation matches liburing (timeout, remove, update, link timeout)") {
  Timespec ts(1234567891ns);
  CHECK_SAME_SQE(
      "prep_timeout",
      [&](io_uring_sqe* s) { prep_timeout(s, &ts, 0x17, IORING_TIMEOUT_ABS | IORING_TIMEOUT_BOOTTIME); },
      [&](io_uring_sqe* s) { io_uring_prep_timeout(s, &ts, 0x17, IORING_TIMEOUT_ABS | IORING_TIMEOUT_BOOTTIME); });
  CHECK_SAME_SQE(
      "prep_timeout_remove", [&](io_uring_sqe* s) { prep_timeout_remove(s, kUserData, IORING_TIMEOUT_ABS); },
      [&](io_uring_sqe* s) { io_uring_prep_timeout_remove(s, kUserData, IORING_TIMEOUT_ABS); });
  CHECK_SAME_SQE(
      "prep_timeout_update",
      [&](io_uring_sqe* s) { prep_timeout_update(s, &ts, kUserData, IORING_TIMEOUT_ABS | IORING_TIMEOUT_REALTIME); },
      [&](io_uring_sqe* s) {
        io_uring_prep_timeout_update(s, &ts, kUserData, IORING_TIMEOUT_ABS | IORING_TIMEOUT_REALTIME);
      });
  CHECK_SAME_SQE(
      "prep_link_timeout", [&](io_uring_sqe* s) { prep_link_timeout(s, &ts, IORING_TIMEOUT_ETIME_SUCCESS); },
      [&](io_uring_sqe* s) { io_uring_prep_link_timeout(s, &ts, IORING_TIMEOUT_ETIME_SUCCESS); });
}

TEST_CASE("cancel preparation matches liburing (by user data, by pointer, by fd)") {
  constexpr int kCancelFlags = IORING_ASYNC_CANCEL_ALL;
  CHECK_SAME_SQE(
      "prep_cancel64", [&](io_uring_sqe* s) { prep_cancel64(s, kUserData, kCancelFlags); },
      [&](io_uring_sqe* s) { io_uring_prep_cancel64(s, kUserData, kCancelFlags); });
  CHECK_SAME_SQE(
      "prep_cancel", [&](io_uring_sqe* s) { prep_cancel(s, kBuf, kCancelFlags); },
      [&](io_uring_sqe* s) { io_uring_prep_cancel(s, kBuf, kCancelFlags); });
  CHECK_SAME_SQE(
      "prep_cancel_fd", [&](io_uring_sqe* s) { prep_cancel_fd(s, kFd, IORING_ASYNC_CANCEL_ALL); },
      [&](io_uring_sqe* s) { io_uring_prep_cancel_fd(s, kFd, IORING_ASYNC_CANCEL_ALL); });
}

TEST_CASE("socket setup preparation matches liburing (socket, connect, accept and their direct/multishot variants, shutdown)") {
  sockaddr_in6 addr{};
  socklen_t addrlen = sizeof addr;
  auto* sa = reinterpret_cast<sockaddr*>(&addr);
  constexpr int kType = SOCK_DGRAM | SOCK_NONBLOCK;
  constexpr unsigned kSocketFlags = 0x5;  // reserved by the kernel, distinctive here
  constexpr int kAcceptFlags = SOCK_NONBLOCK | SOCK_CLOEXEC;
  CHECK_SAME_SQE(
      "prep_socket", [&](io_uring_sqe* s) { prep_socket(s, AF_INET6, kType, IPPROTO_UDP, kSocketFlags); },
      [&](io_uring_sqe* s) { io_uring_prep_socket(s, AF_INET6, kType, IPPROTO_UDP, kSocketFlags); });
  CHECK_SAME_SQE(
      "prep_socket_direct",
      [&](io_uring_sqe* s) { prep_socket_direct(s, AF_INET6, kType, IPPROTO_UDP, kFileIndex, kSocketFlags); },
      [&](io_uring_sqe* s) { io_uring_prep_socket_direct(s, AF_INET6, kType, IPPROTO_UDP, kFileIndex, kSocketFlags); });
  CHECK_SAME_SQE(
      "prep_socket_direct_alloc",
      [&](io_uring_sqe* s) { prep_socket_direct_alloc(s, AF_INET6, kType, IPPROTO_UDP, kSocketFlags); },
      [&](io_uring_sqe* s) { io_uring_prep_socket_direct_alloc(s, AF_INET6, kType, IPPROTO_UDP, kSocketFlags); });
  CHECK_SAME_SQE(
      "prep_connect", [&](io_uring_sqe* s) { prep_connect(s, kFd, sa, addrlen); },
      [&](io_uring_sqe* s) { io_uring_prep_connect(s, kFd, sa, addrlen); });
  CHECK_SAME_SQE(
      "prep_accept", [&](io_uring_sqe* s) { prep_accept(s, kFd, sa, &addrlen, kAcceptFlags); },
      [&](io_uring_sqe* s) { io_uring_prep_accept(s, kFd, sa, &addrlen, kAcceptFlags); });
  // A normal slot: liburing 2.3's accept_direct turns IORING_FILE_INDEX_ALLOC
  // into 0 (it adds 1 to ~0U), where ringshard and later liburing keep ALLOC.
  CHECK_SAME_SQE(
      "prep_accept_direct", [&](io_uring_sqe* s) { prep_accept_direct(s, kFd, sa, &addrlen, kAcceptFlags, kFileIndex); },
      [&](io_uring_sqe* s) { io_uring_prep_accept_direct(s, kFd, sa, &addrlen, kAcceptFlags, kFileIndex); });
  CHECK_SAME_SQE(
      "prep_multishot_accept", [&](io_uring_sqe* s) { prep_multishot_accept(s, kFd, sa, &addrlen, kAcceptFlags); },
      [&](io_uring_sqe* s) { io_uring_prep_multishot_accept(s, kFd, sa, &addrlen, kAcceptFlags); });
  CHECK_SAME_SQE(
      "prep_multishot_accept_direct",
      [&](io_uring_sqe* s) { prep_multishot_accept_direct(s, kFd, sa, &addrlen, kAcceptFlags); },
      [&](io_uring_sqe* s) { io_uring_prep_multishot_accept_direct(s, kFd, sa, &addrlen, kAcceptFlags); });
  CHECK_SAME_SQE(
      "prep_shutdown", [&](io_uring_sqe* s) { prep_shutdown(s, kFd, SHUT_WR); },
      [&](io_uring_sqe* s) { io_uring_prep_shutdown(s, kFd, SHUT_WR); });
}

TEST_CASE("send preparation matches liburing (send, zero-copy, fixed buffer, sendmsg, destination address)") {
  msghdr msg{};
  sockaddr_in dest{};
  constexpr int kMsgFlags = MSG_DONTWAIT | MSG_NOSIGNAL | MSG_MORE;
  constexpr unsigned kZcFlags = IORING_RECVSEND_POLL_FIRST;
  CHECK_SAME_SQE(
      "prep_send", [&](io_uring_sqe* s) { prep_send(s, kFd, ConstBuffer(kBuf, kLen), kMsgFlags); },
      [&](io_uring_sqe* s) { io_uring_prep_send(s, kFd, kBuf, kLen, kMsgFlags); });
  CHECK_SAME_SQE(
      "prep_send_zc", [&](io_uring_sqe* s) { prep_send_zc(s, kFd, ConstBuffer(kBuf, kLen), kMsgFlags, kZcFlags); },
      [&](io_uring_sqe* s) { io_uring_prep_send_zc(s, kFd, kBuf, kLen, kMsgFlags, kZcFlags); });
  CHECK_SAME_SQE(
      "prep_send_zc_fixed",
      [&](io_uring_sqe* s) {
        prep_send_zc_fixed(s, kFd, ConstBuffer(kBuf, kLen), kMsgFlags, kZcFlags, static_cast<unsigned>(kBufIndex));
      },
      [&](io_uring_sqe* s) {
        io_uring_prep_send_zc_fixed(s, kFd, kBuf, kLen, kMsgFlags, kZcFlags, static_cast<unsigned>(kBufIndex));
      });
  CHECK_SAME_SQE(
      "prep_sendmsg", [&](io_uring_sqe* s) { prep_sendmsg(s, kFd, &msg, kMsgFlags); },
      [&](io_uring_sqe* s) { io_uring_prep_sendmsg(s, kFd, &msg, kMsgFlags); });
  CHECK_SAME_SQE(
      "prep_sendmsg_zc", [&](io_uring_sqe* s) { prep_sendmsg_zc(s, kFd, &msg, kMsgFlags); },
      [&](io_uring_sqe* s) { io_uring_prep_sendmsg_zc(s, kFd, &msg, kMsgFlags); });
  // send_set_addr only adds the destination to an SQE that is already prepared.
  const auto* dest_sa = reinterpret_cast<const sockaddr*>(&dest);
  CHECK_SAME_SQE(
      "prep_send_zc + prep_send_set_addr",
      [&](io_uring_sqe* s) {
        prep_send_zc(s, kFd, ConstBuffer(kBuf, kLen), kMsgFlags, kZcFlags);
        prep_send_set_addr(s, dest_sa, sizeof dest);
      },
      [&](io_uring_sqe* s) {
        io_uring_prep_send_zc(s, kFd, kBuf, kLen, kMsgFlags, kZcFlags);
        io_uring_prep_send_set_addr(s, dest_sa, sizeof dest);
      });
  CHECK_SAME_SQE(
      "prep_send_set_addr on a garbage SQE", [&](io_uring_sqe* s) { prep_send_set_addr(s, dest_sa, 0x1D); },
      [&](io_uring_sqe* s) { io_uring_prep_send_set_addr(s, dest_sa, 0x1D); });
}

TEST_CASE("receive preparation matches liburing (recv, recvmsg and their multishot variants)") {
  msghdr msg{};
  constexpr int kMsgFlags = MSG_WAITALL | MSG_PEEK | MSG_TRUNC;
  CHECK_SAME_SQE(
      "prep_recv", [&](io_uring_sqe* s) { prep_recv(s, kFd, MutableBuffer(kBuf, kLen), kMsgFlags); },
      [&](io_uring_sqe* s) { io_uring_prep_recv(s, kFd, kBuf, kLen, kMsgFlags); });
  CHECK_SAME_SQE(
      "prep_recv_multishot", [&](io_uring_sqe* s) { prep_recv_multishot(s, kFd, MutableBuffer(kBuf, kLen), kMsgFlags); },
      [&](io_uring_sqe* s) { io_uring_prep_recv_multishot(s, kFd, kBuf, kLen, kMsgFlags); });
  CHECK_SAME_SQE(
      "prep_recvmsg", [&](io_uring_sqe* s) { prep_recvmsg(s, kFd, &msg, kMsgFlags); },
      [&](io_uring_sqe* s) { io_uring_prep_recvmsg(s, kFd, &msg, kMsgFlags); });
  CHECK_SAME_SQE(
      "prep_recvmsg_multishot", [&](io_uring_sqe* s) { prep_recvmsg_multishot(s, kFd, &msg, kMsgFlags); },
      [&](io_uring_sqe* s) { io_uring_prep_recvmsg_multishot(s, kFd, &msg, kMsgFlags); });
}

TEST_CASE("provided buffer preparation matches liburing (provide, remove)") {
  CHECK_SAME_SQE(
      "prep_provide_buffers", [&](io_uring_sqe* s) { prep_provide_buffers(s, kBuf, 0x1001, 0x43, 0x2C7, 0x59); },
      [&](io_uring_sqe* s) { io_uring_prep_provide_buffers(s, kBuf, 0x1001, 0x43, 0x2C7, 0x59); });
  CHECK_SAME_SQE(
      "prep_remove_buffers", [&](io_uring_sqe* s) { prep_remove_buffers(s, 0x43, 0x2C7); },
      [&](io_uring_sqe* s) { io_uring_prep_remove_buffers(s, 0x43, 0x2C7); });
}

TEST_CASE("msg_ring preparation matches liburing") {
  CHECK_SAME_SQE(
      "prep_msg_ring", [&](io_uring_sqe* s) { prep_msg_ring(s, kFd, 0x6789, kUserData, IORING_MSG_RING_CQE_SKIP); },
      [&](io_uring_sqe* s) { io_uring_prep_msg_ring(s, kFd, 0x6789, kUserData, IORING_MSG_RING_CQE_SKIP); });
}

TEST_CASE("a FixedFile target gives liburing's SQE plus IOSQE_FIXED_FILE") {
  constexpr unsigned kSlot = 0x15;
  auto with_fixed = [](io_uring_sqe* s) { io_uring_sqe_set_flags(s, IOSQE_FIXED_FILE); };
  CHECK_SAME_SQE(
      "prep_read(FixedFile)", [&](io_uring_sqe* s) { prep_read(s, FixedFile{kSlot}, MutableBuffer(kBuf, kLen), kOffset); },
      [&](io_uring_sqe* s) {
        io_uring_prep_read(s, kSlot, kBuf, kLen, kOffset);
        with_fixed(s);
      });
  CHECK_SAME_SQE(
      "prep_write_fixed(FixedFile)",
      [&](io_uring_sqe* s) { prep_write_fixed(s, FixedFile{kSlot}, ConstBuffer(kBuf, kLen), kOffset, kBufIndex); },
      [&](io_uring_sqe* s) {
        io_uring_prep_write_fixed(s, kSlot, kBuf, kLen, kOffset, kBufIndex);
        with_fixed(s);
      });
  CHECK_SAME_SQE(
      "prep_send(FixedFile)", [&](io_uring_sqe* s) { prep_send(s, FixedFile{kSlot}, ConstBuffer(kBuf, kLen), MSG_MORE); },
      [&](io_uring_sqe* s) {
        io_uring_prep_send(s, kSlot, kBuf, kLen, MSG_MORE);
        with_fixed(s);
      });
  CHECK_SAME_SQE(
      "prep_recv_multishot(FixedFile)",
      [&](io_uring_sqe* s) { prep_recv_multishot(s, FixedFile{kSlot}, MutableBuffer(kBuf, kLen), MSG_WAITALL); },
      [&](io_uring_sqe* s) {
        io_uring_prep_recv_multishot(s, kSlot, kBuf, kLen, MSG_WAITALL);
        with_fixed(s);
      });
  CHECK_SAME_SQE(
      "prep_multishot_accept_direct(FixedFile)",
      [&](io_uring_sqe* s) { prep_multishot_accept_direct(s, FixedFile{kSlot}, nullptr, nullptr, SOCK_CLOEXEC); },
      [&](io_uring_sqe* s) {
        io_uring_prep_multishot_accept_direct(s, kSlot, nullptr, nullptr, SOCK_CLOEXEC);
        with_fixed(s);
      });
  CHECK_SAME_SQE(
      "prep_poll_multishot(FixedFile)", [&](io_uring_sqe* s) { prep_poll_multishot(s, FixedFile{kSlot}, POLLIN); },
      [&](io_uring_sqe* s) {
        io_uring_prep_poll_multishot(s, kSlot, POLLIN);
        with_fixed(s);
      });
  CHECK_SAME_SQE(
      "prep_splice(fd_out FixedFile)",
      [&](io_uring_sqe* s) { prep_splice(s, kFd, -1, FixedFile{kSlot}, 0x4445, 0x7779, 0); },
      [&](io_uring_sqe* s) {
        io_uring_prep_splice(s, kFd, -1, kSlot, 0x4445, 0x7779, 0);
        with_fixed(s);
      });
  CHECK_SAME_SQE(
      "prep_fsync(FixedFile)", [&](io_uring_sqe* s) { prep_fsync(s, FixedFile{kSlot}, IORING_FSYNC_DATASYNC); },
      [&](io_uring_sqe* s) {
        io_uring_prep_fsync(s, kSlot, IORING_FSYNC_DATASYNC);
        with_fixed(s);
      });
  // Cancel by fd names a registered file with a cancel flag, not the SQE flag.
  CHECK_SAME_SQE(
      "prep_cancel_fd(FixedFile)", [&](io_uring_sqe* s) { prep_cancel_fd(s, FixedFile{kSlot}, IORING_ASYNC_CANCEL_ALL); },
      [&](io_uring_sqe* s) {
        io_uring_prep_cancel_fd(s, kSlot, IORING_ASYNC_CANCEL_ALL | IORING_ASYNC_CANCEL_FD_FIXED);
      });
}

TEST_CASE("ringshard shorthands equal the liburing 2.3 calls they stand for") {
  sockaddr_in dest{};
  const auto* dest_sa = reinterpret_cast<const sockaddr*>(&dest);
  CHECK_SAME_SQE(
      "prep_sendto", [&](io_uring_sqe* s) { prep_sendto(s, kFd, ConstBuffer(kBuf, kLen), MSG_DONTWAIT, dest_sa, sizeof dest); },
      [&](io_uring_sqe* s) {
        io_uring_prep_send(s, kFd, kBuf, kLen, MSG_DONTWAIT);
        io_uring_prep_send_set_addr(s, dest_sa, sizeof dest);
      });
  CHECK_SAME_SQE(
      "prep_recv_multishot_group", [&](io_uring_sqe* s) { prep_recv_multishot_group(s, kFd, MSG_WAITALL, 0x2C7); },
      [&](io_uring_sqe* s) {
        io_uring_prep_recv_multishot(s, kFd, nullptr, 0, MSG_WAITALL);
        s->buf_group = 0x2C7;
        io_uring_sqe_set_flags(s, IOSQE_BUFFER_SELECT);
      });
  CHECK_SAME_SQE(
      "prep_cancel_any", [&](io_uring_sqe* s) { prep_cancel_any(s, IORING_ASYNC_CANCEL_ALL); },
      [&](io_uring_sqe* s) { io_uring_prep_cancel64(s, 0, IORING_ASYNC_CANCEL_ALL | IORING_ASYNC_CANCEL_ANY); });
  CHECK_SAME_SQE(
      "prep_msg_ring_cqe_flags(flags 0)", [&](io_uring_sqe* s) { prep_msg_ring_cqe_flags(s, kFd, 0x6789, kUserData, 0, 0x0300); },
      [&](io_uring_sqe* s) {
        io_uring_prep_msg_ring(s, kFd, 0x6789, kUserData, IORING_MSG_RING_FLAGS_PASS);
        s->file_index = 0x0300;
      });
}

TEST_CASE("SQE accessors write the same bytes as liburing's io_uring_sqe_set_*") {
  int object = 0;
  for (const unsigned char pattern : kGarbagePatterns) {
    io_uring_sqe ours = garbage_sqe(pattern);
    io_uring_sqe theirs = garbage_sqe(pattern);
    prep_nop(&ours);
    io_uring_prep_nop(&theirs);
    sqe_set_data64(&ours, kUserData);
    io_uring_sqe_set_data64(&theirs, kUserData);
    sqe_set_flags(&ours, IOSQE_IO_LINK | IOSQE_ASYNC);
    io_uring_sqe_set_flags(&theirs, IOSQE_IO_LINK | IOSQE_ASYNC);
    INFO("set_data64 + set_flags:\n" << describe_sqe_diff(ours, theirs));
    CHECK(std::memcmp(&ours, &theirs, sizeof ours) == 0);
    CHECK(ours.user_data == kUserData);

    sqe_set_data(&ours, &object);
    io_uring_sqe_set_data(&theirs, &object);
    INFO("set_data:\n" << describe_sqe_diff(ours, theirs));
    CHECK(std::memcmp(&ours, &theirs, sizeof ours) == 0);
  }
}

// ---- ring level ---------------------------------------------------------------------

namespace {

struct LiburingRing {
  io_uring ring{};
  int init_result = 0;
  LiburingRing(unsigned entries, io_uring_params& p) { init_result = io_uring_queue_init_params(entries, &ring, &p); }
  ~LiburingRing() {
    if (init_result == 0) io_uring_queue_exit(&ring);
  }
  LiburingRing(const LiburingRing&) = delete;
  LiburingRing& operator=(const LiburingRing&) = delete;
};

struct SetupCase {
  const char* name;
  unsigned entries;
  unsigned flags;
  unsigned cq_entries;
};

}  // namespace

TEST_CASE("ring setup gives the same sizes, features and ring offsets as io_uring_queue_init_params") {
  const SetupCase cases[] = {
      {"8 entries", 8, 0, 0},
      {"100 entries (rounded up)", 100, 0, 0},
      {"256 entries", 256, 0, 0},
      {"CQSIZE 1000", 8, IORING_SETUP_CQSIZE, 1000},
      {"CLAMP 1<<20", 1U << 20, IORING_SETUP_CLAMP, 0},
      {"SINGLE_ISSUER|DEFER_TASKRUN", 64, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, 0},
      {"SQE128|CQE32", 32, IORING_SETUP_SQE128 | IORING_SETUP_CQE32, 0},
      {"COOP_TASKRUN|TASKRUN_FLAG", 16, IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG, 0},
  };
  for (const SetupCase& c : cases) {
    INFO("setup case: " << c.name);
    io_uring_params ours_p{};
    ours_p.flags = c.flags;
    ours_p.cq_entries = c.cq_entries;
    io_uring_params theirs_p = ours_p;
    Ring ours(c.entries, ours_p);
    LiburingRing theirs(c.entries, theirs_p);
    REQUIRE(theirs.init_result == 0);

    CHECK(ours.sq_entries() == theirs.ring.sq.ring_entries);
    CHECK(ours.cq_entries() == theirs.ring.cq.ring_entries);
    CHECK(ours.flags() == theirs.ring.flags);
    CHECK(ours.features() == theirs.ring.features);
    CHECK(ours_p.sq_entries == theirs_p.sq_entries);
    CHECK(ours_p.cq_entries == theirs_p.cq_entries);
    CHECK(ours_p.features == theirs_p.features);
    CHECK(std::memcmp(&ours_p.sq_off, &theirs_p.sq_off, sizeof ours_p.sq_off) == 0);
    CHECK(std::memcmp(&ours_p.cq_off, &theirs_p.cq_off, sizeof ours_p.cq_off) == 0);
    CHECK(std::memcmp(&ours.params(), &ours_p, sizeof ours_p) == 0);
    CHECK(ours.sq_space_left() == io_uring_sq_space_left(&theirs.ring));
  }
}

TEST_CASE("ring setup refuses what io_uring_queue_init_params refuses, with the same errno") {
  const SetupCase cases[] = {
      {"0 entries", 0, 0, 0},
      {"DEFER_TASKRUN without SINGLE_ISSUER", 8, IORING_SETUP_DEFER_TASKRUN, 0},
      {"CQSIZE with 0 CQ entries", 8, IORING_SETUP_CQSIZE, 0},
      {"CQSIZE smaller than the SQ", 64, IORING_SETUP_CQSIZE, 16},
      {"more entries than the kernel allows, without CLAMP", 1U << 20, 0, 0},
  };
  for (const SetupCase& c : cases) {
    INFO("setup case: " << c.name);
    io_uring_params ours_p{};
    ours_p.flags = c.flags;
    ours_p.cq_entries = c.cq_entries;
    io_uring_params theirs_p = ours_p;
    int ours_errno = 0;
    try {
      Ring ring(c.entries, ours_p);
    } catch (const std::system_error& e) {
      ours_errno = e.code().value();
    }
    LiburingRing theirs(c.entries, theirs_p);
    CHECK(theirs.init_result < 0);
    CHECK(ours_errno == -theirs.init_result);
  }
}

TEST_CASE("get_sqe runs out at the same point as io_uring_get_sqe and submits the same count") {
  for (const unsigned entries : {4U, 100U}) {
    INFO("entries " << entries);
    io_uring_params ours_p{};
    io_uring_params theirs_p{};
    Ring ours(entries, ours_p);
    LiburingRing theirs(entries, theirs_p);
    REQUIRE(theirs.init_result == 0);

    unsigned ours_got = 0;
    unsigned theirs_got = 0;
    for (unsigned i = 0; i < 2 * entries; ++i) {
      io_uring_sqe* a = ours.get_sqe();
      io_uring_sqe* b = io_uring_get_sqe(&theirs.ring);
      CHECK((a == nullptr) == (b == nullptr));
      if (a) {
        prep_nop(a);
        sqe_set_data64(a, i);
        ++ours_got;
      }
      if (b) {
        io_uring_prep_nop(b);
        io_uring_sqe_set_data64(b, i);
        ++theirs_got;
      }
      CHECK(ours.sq_ready() == io_uring_sq_ready(&theirs.ring));
      CHECK(ours.sq_space_left() == io_uring_sq_space_left(&theirs.ring));
    }
    CHECK(ours_got == theirs_got);
    CHECK(ours_got == ours.sq_entries());
    CHECK(ours.submit() == io_uring_submit(&theirs.ring));
    CHECK(ours.sq_ready() == io_uring_sq_ready(&theirs.ring));
  }
}

TEST_CASE("a batch of NOPs completes with the same CQEs as on a liburing ring") {
  constexpr unsigned kBatch = 48;
  io_uring_params ours_p{};
  io_uring_params theirs_p{};
  Ring ours(64, ours_p);
  LiburingRing theirs(64, theirs_p);
  REQUIRE(theirs.init_result == 0);
  for (unsigned i = 0; i < kBatch; ++i) {
    io_uring_sqe* a = ours.get_sqe();
    io_uring_sqe* b = io_uring_get_sqe(&theirs.ring);
    REQUIRE(a != nullptr);
    REQUIRE(b != nullptr);
    prep_nop(a);
    io_uring_prep_nop(b);
    sqe_set_data64(a, kUserData + i);
    io_uring_sqe_set_data64(b, kUserData + i);
  }
  CHECK(ours.submit_and_wait(kBatch) == static_cast<int>(kBatch));
  CHECK(io_uring_submit_and_wait(&theirs.ring, kBatch) == static_cast<int>(kBatch));
  CHECK(ours.cq_ready() == io_uring_cq_ready(&theirs.ring));

  std::vector<io_uring_cqe> ours_cqes;
  std::vector<io_uring_cqe> theirs_cqes;
  ours.for_each_cqe([&](const io_uring_cqe& c) { ours_cqes.push_back(c); });
  unsigned head = 0;
  unsigned seen = 0;
  io_uring_cqe* cqe = nullptr;
  io_uring_for_each_cqe(&theirs.ring, head, cqe) {
    theirs_cqes.push_back(*cqe);
    ++seen;
  }
  io_uring_cq_advance(&theirs.ring, seen);

  REQUIRE(ours_cqes.size() == theirs_cqes.size());
  for (std::size_t i = 0; i < ours_cqes.size(); ++i) {
    INFO("CQE " << i);
    CHECK(ours_cqes[i].user_data == theirs_cqes[i].user_data);
    CHECK(ours_cqes[i].res == theirs_cqes[i].res);
    CHECK(ours_cqes[i].flags == theirs_cqes[i].flags);
  }
  CHECK(ours.cq_ready() == 0);
  CHECK(io_uring_cq_ready(&theirs.ring) == 0);
}
