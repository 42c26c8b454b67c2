// What the coroutine suites share: a witness of a frame's destruction and a
// pipe to read from (a read on it waits in the kernel until cancelled).
#pragma once

#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>

namespace ringshard::test {

/// Counts its destruction: shows that a frame's locals were destroyed.
struct Witness {
  std::atomic<int>* destroyed;
  ~Witness() { destroyed->fetch_add(1); }
};

struct Pipe {
  int fds[2] = {-1, -1};
  Pipe() { REQUIRE(::pipe(fds) == 0); }
  ~Pipe() {
    ::close(fds[0]);
    ::close(fds[1]);
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
};

}  // namespace ringshard::test
