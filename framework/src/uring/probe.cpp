#include "ringshard/framework/uring/probe.hpp"

#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <system_error>

#include "ringshard/framework/uring/ring.hpp"

namespace ringshard::uring {

namespace {

Probe probe_fd(int ring_fd, unsigned register_flags) {
  constexpr unsigned kOps = 256;
  const std::size_t size = sizeof(io_uring_probe) + kOps * sizeof(io_uring_probe_op);
  std::unique_ptr<unsigned char[]> mem(new unsigned char[size]());
  auto* p = reinterpret_cast<io_uring_probe*>(mem.get());
  const int ret = sys::io_uring_register(ring_fd, IORING_REGISTER_PROBE | register_flags, p, kOps);
  if (ret < 0) throw std::system_error(-ret, std::generic_category(), "IORING_REGISTER_PROBE");
  std::array<std::uint16_t, 256> flags{};
  for (unsigned i = 0; i < p->ops_len && i < kOps; ++i) flags[p->ops[i].op] = p->ops[i].flags;
  return Probe(p->last_op, flags);
}

}  // namespace

Probe Ring::probe() const { return probe_fd(register_fd(), register_flags()); }

Probe probe() {
  Ring ring(2);
  return ring.probe();
}

std::string_view opcode_name(unsigned op) noexcept {
  static constexpr std::string_view kNames[] = {
      "NOP",          "READV",         "WRITEV",          "FSYNC",          "READ_FIXED",
      "WRITE_FIXED",  "POLL_ADD",      "POLL_REMOVE",     "SYNC_FILE_RANGE", "SENDMSG",
      "RECVMSG",      "TIMEOUT",       "TIMEOUT_REMOVE",  "ACCEPT",         "ASYNC_CANCEL",
      "LINK_TIMEOUT", "CONNECT",       "FALLOCATE",       "OPENAT",         "CLOSE",
      "FILES_UPDATE", "STATX",         "READ",            "WRITE",          "FADVISE",
      "MADVISE",      "SEND",          "RECV",            "OPENAT2",        "EPOLL_CTL",
      "SPLICE",       "PROVIDE_BUFFERS", "REMOVE_BUFFERS", "TEE",           "SHUTDOWN",
      "RENAMEAT",     "UNLINKAT",      "MKDIRAT",         "SYMLINKAT",      "LINKAT",
      "MSG_RING",     "FSETXATTR",     "SETXATTR",        "FGETXATTR",      "GETXATTR",
      "SOCKET",       "URING_CMD",     "SEND_ZC",         "SENDMSG_ZC",     "READ_MULTISHOT",
      "WAITID",       "FUTEX_WAIT",    "FUTEX_WAKE",      "FUTEX_WAITV",    "FIXED_FD_INSTALL",
      "FTRUNCATE",    "BIND",          "LISTEN",          "RECV_ZC",        "EPOLL_WAIT",
      "READV_FIXED",  "WRITEV_FIXED",  "PIPE",
  };
  static_assert(std::size(kNames) == abi::op_count);
  return op < std::size(kNames) ? kNames[op] : std::string_view("UNKNOWN");
}

}  // namespace ringshard::uring
