// Helpers for the net suites: plain blocking client sockets with deadlines.
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <string_view>

#include "ringshard/net/listener.hpp"
#include "runtime_support.hpp"
#include "support.hpp"

namespace ringshard::test {

using namespace std::chrono_literals;

inline Fd connect_to(const net::Address& a) {
  Fd s(::socket(a.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(s.get() >= 0);
  REQUIRE(::connect(s.get(), a.get(), a.length()) == 0);
  return s;
}

// Reads exactly n bytes or fails after a deadline.
inline std::string read_exactly(int fd, std::size_t n, std::chrono::milliseconds limit = 5000ms) {
  std::string out;
  const auto end = Clock::now() + limit;
  char buf[65536];
  while (out.size() < n) {
    pollfd p{fd, POLLIN, 0};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now()).count();
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) break;
    const ssize_t r = ::read(fd, buf, std::min(sizeof buf, n - out.size()));
    if (r <= 0) break;
    out.append(buf, static_cast<std::size_t>(r));
  }
  return out;
}

// Writes all of `s` (blocking); false when the peer is gone.
inline bool write_all(int fd, std::string_view s) {
  while (!s.empty()) {
    const ssize_t w = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
    if (w <= 0) return false;
    s.remove_prefix(static_cast<std::size_t>(w));
  }
  return true;
}

// True when the peer closed: read returns 0 (or a reset) within the limit.
inline bool sees_close(int fd, std::chrono::milliseconds limit = 5000ms) {
  const auto end = Clock::now() + limit;
  char buf[4096];
  while (Clock::now() < end) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    const ssize_t r = ::read(fd, buf, sizeof buf);
    if (r == 0 || (r < 0 && errno == ECONNRESET)) return true;
  }
  return false;
}

}  // namespace ringshard::test
