// The three io_uring system calls, returning -errno instead of touching errno.
// On x86-64 they are issued inline (no libc wrapper, no errno store); other
// architectures go through syscall(2).
#pragma once

#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>

#include "ringshard/framework/uring/abi.hpp"

namespace ringshard::uring::sys {

#if defined(__x86_64__)
inline long raw6(long nr, long a, long b, long c, long d, long e, long f) noexcept {
  long ret;
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  register long r9 __asm__("r9") = f;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                   : "rcx", "r11", "memory");
  return ret;
}
#else
inline long raw6(long nr, long a, long b, long c, long d, long e, long f) noexcept {
  long ret = ::syscall(nr, a, b, c, d, e, f);
  return ret < 0 ? -errno : ret;
}
#endif

inline int io_uring_setup(unsigned entries, io_uring_params* p) noexcept {
  return static_cast<int>(raw6(__NR_io_uring_setup, entries, reinterpret_cast<long>(p), 0, 0, 0, 0));
}

inline int io_uring_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags,
                          const void* arg, std::size_t argsz) noexcept {
  return static_cast<int>(raw6(__NR_io_uring_enter, fd, to_submit, min_complete, flags,
                               reinterpret_cast<long>(arg), static_cast<long>(argsz)));
}

inline int io_uring_register(int fd, unsigned opcode, const void* arg, unsigned nr_args) noexcept {
  return static_cast<int>(
      raw6(__NR_io_uring_register, fd, opcode, reinterpret_cast<long>(arg), nr_args, 0, 0));
}

}  // namespace ringshard::uring::sys
