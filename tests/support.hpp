// Shared helpers for the test suites: skipping with a reason, temporary
// directories, loopback sockets, and one-shot submit-and-reap.
#pragma once

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <thread>
#include <vector>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

#include "ringshard/framework/uring.hpp"

namespace ringshard::test {

/// Skips the current test case with a reason. Under CTest the process exits
/// with 77 (reported as "Skipped"); run by hand, the reason is printed and the
/// case returns early.
#define RINGSHARD_SKIP(reason)                                                   \
  do {                                                                           \
    std::string ringshard_skip_reason_ = (reason);                               \
    std::fprintf(stderr, "SKIPPED: %s\n", ringshard_skip_reason_.c_str());       \
    std::fflush(stderr);                                                         \
    if (std::getenv("RINGSHARD_TEST_UNDER_CTEST")) std::_Exit(77);               \
    MESSAGE("SKIPPED: " << ringshard_skip_reason_);                              \
    return;                                                                      \
  } while (0)

/// Skips unless the running kernel supports `op`.
#define RINGSHARD_REQUIRE_OPCODE(op)                                                           \
  do {                                                                                         \
    if (!::ringshard::uring::probe().opcode_supported(op))                                     \
      RINGSHARD_SKIP(std::string("kernel does not support IORING_OP_") +                       \
                     std::string(::ringshard::uring::opcode_name(op)));                        \
  } while (0)

/// The running kernel is at least major.minor (uname's release).
inline bool kernel_at_least(int major, int minor) {
  utsname u{};
  if (::uname(&u) != 0) return false;
  int ma = 0, mi = 0;
  if (std::sscanf(u.release, "%d.%d", &ma, &mi) != 2) return false;
  return ma > major || (ma == major && mi >= minor);
}

/// A fresh directory under $TMPDIR, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "ringshard-test-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::system_error(errno, std::generic_category(), "mkdtemp");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  [[nodiscard]] std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

/// Owns an fd.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = o.release();
    }
    return *this;
  }
  [[nodiscard]] int get() const { return fd_; }
  int release() { int f = fd_; fd_ = -1; return f; }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

/// A TCP listener on 127.0.0.1 with a kernel-chosen port.
inline Fd listen_loopback(int backlog = 64) {
  Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(s.get() >= 0);
  int one = 1;
  ::setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  REQUIRE(::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(s.get(), backlog) == 0);
  return s;
}

/// The address a socket is bound to.
inline sockaddr_in local_address(int fd) {
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  return addr;
}

/// A connected pair of TCP sockets over 127.0.0.1: {client, server}.
struct TcpPair {
  Fd client;
  Fd server;
};
inline TcpPair tcp_pair() {
  Fd listener = listen_loopback();
  sockaddr_in addr = local_address(listener.get());
  Fd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(client.get() >= 0);
  REQUIRE(::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  Fd server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  REQUIRE(server.get() >= 0);
  return {std::move(client), std::move(server)};
}

/// Submits what is prepared, waits for one CQE, copies and consumes it.
inline io_uring_cqe submit_and_reap(uring::Ring& ring) {
  io_uring_cqe* cqe = nullptr;
  const int sub = ring.submit();
  REQUIRE(sub >= 0);
  REQUIRE(ring.wait_cqe(&cqe) == 0);
  io_uring_cqe copy = *cqe;
  ring.cqe_seen(cqe);
  return copy;
}

/// Waits for one CQE (without submitting anything new), copies and consumes it.
inline io_uring_cqe reap(uring::Ring& ring) {
  io_uring_cqe* cqe = nullptr;
  REQUIRE(ring.wait_cqe(&cqe) == 0);
  io_uring_cqe copy = *cqe;
  ring.cqe_seen(cqe);
  return copy;
}


// ---- one-CQE helpers for the uring suites -----------------------------------
using uring::Ring;
using namespace std::chrono_literals;

/// The next SQE, with its user data set (fails the test when the SQ is full).
inline io_uring_sqe* next_sqe(Ring& ring, std::uint64_t user_data) {
  io_uring_sqe* sqe = ring.get_sqe();
  REQUIRE(sqe != nullptr);
  uring::sqe_set_data64(sqe, user_data);
  return sqe;
}

/// Submits what is pending and waits (bounded) for one CQE; copies and consumes it.
inline io_uring_cqe reap_within(Ring& ring, std::chrono::milliseconds limit = 3000ms) {
  io_uring_cqe* cqe = nullptr;
  const int ret = ring.wait_cqe_timeout(&cqe, limit);
  REQUIRE(ret == 0);
  const io_uring_cqe copy = *cqe;
  ring.cqe_seen(cqe);
  return copy;
}

inline std::vector<io_uring_cqe> reap_n(Ring& ring, unsigned n) {
  std::vector<io_uring_cqe> out;
  for (unsigned i = 0; i < n; ++i) out.push_back(reap_within(ring));
  return out;
}

/// The CQE with `user_data` among `cqes` (fails the test when there is none).
inline const io_uring_cqe& by_data(const std::vector<io_uring_cqe>& cqes, std::uint64_t user_data) {
  const auto it = std::find_if(cqes.begin(), cqes.end(),
                               [&](const io_uring_cqe& c) { return c.user_data == user_data; });
  REQUIRE(it != cqes.end());
  return *it;
}

/// True when no CQE arrives within `quiet`.
inline bool no_cqe_within(Ring& ring, std::chrono::milliseconds quiet) {
  io_uring_cqe* cqe = nullptr;
  return ring.wait_cqe_timeout(&cqe, quiet) == -ETIME;
}

/// Waits (bounded) for a condition that other threads make true.
inline bool eventually(const std::function<bool()>& done, std::chrono::seconds limit = std::chrono::seconds(60)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

/// True when built with AddressSanitizer or ThreadSanitizer (slower: tests scale down).
inline bool under_sanitizer() {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
  return true;
#else
  return false;
#endif
#else
  return false;
#endif
}

/// Number of open fds of this process (for leak checks).
inline int open_fd_count() {
  int n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

}  // namespace ringshard::test
