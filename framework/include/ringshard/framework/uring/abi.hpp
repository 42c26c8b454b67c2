// The io_uring kernel ABI as ringshard uses it.
//
// Debian bookworm ships 6.1 kernel headers; the kernels we run on are newer.
// Every constant or structure that appeared after 6.1 is defined here, once,
// each guarded so that newer system headers win when they have it. The values
// are the kernel's uapi values (include/uapi/linux/io_uring.h, futex.h).
#pragma once

#include <linux/futex.h>
#include <linux/io_uring.h>
#include <linux/time_types.h>

#include <cstdint>

// <linux/io_uring.h> pulls in <linux/fs.h>, whose BLOCK_SIZE macros break any
// later header with a member of that name (moodycamel's queue has one).
#undef BLOCK_SIZE
#undef BLOCK_SIZE_BITS

// ---- opcodes added after 6.1 (enum io_uring_op) ----------------------------
// The enum in 6.1 stops at IORING_OP_SENDMSG_ZC (48). Newer headers define the
// names as enumerators, which #ifndef cannot see, so ours live in a namespace.
namespace ringshard::uring::abi {
inline constexpr std::uint8_t op_read_multishot = 49;
inline constexpr std::uint8_t op_waitid = 50;
inline constexpr std::uint8_t op_futex_wait = 51;
inline constexpr std::uint8_t op_futex_wake = 52;
inline constexpr std::uint8_t op_futex_waitv = 53;
inline constexpr std::uint8_t op_fixed_fd_install = 54;
inline constexpr std::uint8_t op_ftruncate = 55;
inline constexpr std::uint8_t op_bind = 56;
inline constexpr std::uint8_t op_listen = 57;
inline constexpr std::uint8_t op_recv_zc = 58;
inline constexpr std::uint8_t op_epoll_wait = 59;
inline constexpr std::uint8_t op_readv_fixed = 60;
inline constexpr std::uint8_t op_writev_fixed = 61;
inline constexpr std::uint8_t op_pipe = 62;
/// Number of opcodes ringshard knows (0 .. op_pipe).
inline constexpr unsigned op_count = 63;

// register opcodes added after 6.1
inline constexpr unsigned register_pbuf_status = 26;
inline constexpr unsigned register_napi = 27;
inline constexpr unsigned unregister_napi = 28;
inline constexpr unsigned register_clock = 29;
inline constexpr unsigned register_clone_buffers = 30;
inline constexpr unsigned register_send_msg_ring = 31;
inline constexpr unsigned register_resize_rings = 33;
inline constexpr unsigned register_mem_region = 34;

/// IORING_REGISTER_MEM_REGION (6.13): struct io_uring_region_desc, one memory
/// region. With mem_region_type_user the kernel pins `size` bytes (whole
/// pages) at the page-aligned `user_addr`; it writes `mmap_offset` back.
inline constexpr std::uint32_t mem_region_type_user = 1;
struct RegionDesc {
  std::uint64_t user_addr = 0;
  std::uint64_t size = 0;
  std::uint32_t flags = 0;
  std::uint32_t id = 0;
  std::uint64_t mmap_offset = 0;
  std::uint64_t resv[4] = {0, 0, 0, 0};
};
static_assert(sizeof(RegionDesc) == 64);

/// struct io_uring_mem_region_reg, the argument of IORING_REGISTER_MEM_REGION.
/// mem_region_reg_wait_arg makes the region the ring's registered wait
/// arguments, which the kernel accepts only while the ring is still disabled
/// (IORING_SETUP_R_DISABLED, before IORING_REGISTER_ENABLE_RINGS).
inline constexpr std::uint64_t mem_region_reg_wait_arg = 1;
struct MemRegionReg {
  std::uint64_t region_uptr = 0;  ///< RegionDesc*
  std::uint64_t flags = 0;
  std::uint64_t resv[2] = {0, 0};
};
static_assert(sizeof(MemRegionReg) == 32);

/// struct io_uring_reg_wait (6.13): one registered wait argument. An enter
/// with IORING_ENTER_EXT_ARG | IORING_ENTER_EXT_ARG_REG passes the byte offset
/// of one of these in the region instead of a pointer to GeteventsArg and a
/// timespec, which the kernel would copy in on every wait. `ts` counts only
/// with reg_wait_ts in `flags`.
inline constexpr std::uint32_t reg_wait_ts = 1;
struct RegWait {
  __kernel_timespec ts{};
  std::uint32_t min_wait_usec = 0;
  std::uint32_t flags = 0;
  std::uint64_t sigmask = 0;
  std::uint32_t sigmask_sz = 0;
  std::uint32_t pad[3] = {0, 0, 0};
  std::uint64_t pad2[2] = {0, 0};
};
static_assert(sizeof(RegWait) == 64);

/// Argument of IORING_(UN)REGISTER_NAPI (6.9): busy-poll the NAPI instances of
/// the ring's sockets for up to `busy_poll_to` microseconds before sleeping in
/// io_uring_enter. Kernels from 6.13 read the first pad byte as an opcode and
/// the next four bytes as its parameter (static or dynamic tracking); all zero
/// means register with dynamic tracking, as on 6.9. The kernel writes the
/// previous settings back into the structure.
struct Napi {
  std::uint32_t busy_poll_to = 0;
  std::uint8_t prefer_busy_poll = 0;
  std::uint8_t pad[3] = {0, 0, 0};
  std::uint64_t resv = 0;
};
static_assert(sizeof(Napi) == 16);

/// io_uring_getevents_arg, the argument of io_uring_enter with
/// IORING_ENTER_EXT_ARG, as of 6.12: the 6.1 header's `pad` became
/// `min_wait_usec` (read only with IORING_FEAT_MIN_TIMEOUT; zero before).
struct GeteventsArg {
  std::uint64_t sigmask = 0;
  std::uint32_t sigmask_sz = 0;
  std::uint32_t min_wait_usec = 0;
  std::uint64_t ts = 0;
};
static_assert(sizeof(GeteventsArg) == 24);
}  // namespace ringshard::uring::abi

// ---- setup flags -----------------------------------------------------------
#ifndef IORING_SETUP_NO_MMAP
#define IORING_SETUP_NO_MMAP (1U << 14)
#endif
#ifndef IORING_SETUP_REGISTERED_FD_ONLY
#define IORING_SETUP_REGISTERED_FD_ONLY (1U << 15)
#endif
#ifndef IORING_SETUP_NO_SQARRAY
#define IORING_SETUP_NO_SQARRAY (1U << 16)
#endif
#ifndef IORING_SETUP_HYBRID_IOPOLL
#define IORING_SETUP_HYBRID_IOPOLL (1U << 17)
#endif

// ---- features --------------------------------------------------------------
#ifndef IORING_FEAT_REG_REG_RING
#define IORING_FEAT_REG_REG_RING (1U << 13)
#endif
#ifndef IORING_FEAT_RECVSEND_BUNDLE
#define IORING_FEAT_RECVSEND_BUNDLE (1U << 14)
#endif
#ifndef IORING_FEAT_MIN_TIMEOUT
#define IORING_FEAT_MIN_TIMEOUT (1U << 15)
#endif
#ifndef IORING_FEAT_RW_ATTR
#define IORING_FEAT_RW_ATTR (1U << 16)
#endif
#ifndef IORING_FEAT_NO_IOWAIT
#define IORING_FEAT_NO_IOWAIT (1U << 17)
#endif

// ---- enter flags -----------------------------------------------------------
#ifndef IORING_ENTER_ABS_TIMER
#define IORING_ENTER_ABS_TIMER (1U << 5)
#endif
#ifndef IORING_ENTER_EXT_ARG_REG
#define IORING_ENTER_EXT_ARG_REG (1U << 6)
#endif
#ifndef IORING_ENTER_NO_IOWAIT
#define IORING_ENTER_NO_IOWAIT (1U << 7)
#endif

// ---- register flags --------------------------------------------------------
#ifndef IORING_REGISTER_USE_REGISTERED_RING
#define IORING_REGISTER_USE_REGISTERED_RING (1U << 31)
#endif

// ---- per-opcode flags ------------------------------------------------------
#ifndef IORING_TIMEOUT_MULTISHOT
#define IORING_TIMEOUT_MULTISHOT (1U << 6)
#endif
#ifndef IORING_RECVSEND_BUNDLE
#define IORING_RECVSEND_BUNDLE (1U << 4)
#endif
#ifndef IORING_SEND_VECTORIZED
#define IORING_SEND_VECTORIZED (1U << 5)
#endif
#ifndef IORING_ACCEPT_DONTWAIT
#define IORING_ACCEPT_DONTWAIT (1U << 1)
#endif
#ifndef IORING_ACCEPT_POLL_FIRST
#define IORING_ACCEPT_POLL_FIRST (1U << 2)
#endif
#ifndef IORING_MSG_RING_FLAGS_PASS
#define IORING_MSG_RING_FLAGS_PASS (1U << 1)
#endif
#ifndef IORING_FIXED_FD_NO_CLOEXEC
#define IORING_FIXED_FD_NO_CLOEXEC (1U << 0)
#endif
#ifndef IORING_NOP_INJECT_RESULT
#define IORING_NOP_INJECT_RESULT (1U << 0)
#endif
#ifndef IORING_ASYNC_CANCEL_FD_FIXED
#define IORING_ASYNC_CANCEL_FD_FIXED (1U << 3)
#endif
#ifndef IORING_ASYNC_CANCEL_USERDATA
#define IORING_ASYNC_CANCEL_USERDATA (1U << 4)
#endif
#ifndef IORING_ASYNC_CANCEL_OP
#define IORING_ASYNC_CANCEL_OP (1U << 5)
#endif

// ---- CQE flags -------------------------------------------------------------
#ifndef IORING_CQE_F_BUF_MORE
#define IORING_CQE_F_BUF_MORE (1U << 4)
#endif

// ---- provided-buffer ring flags (io_uring_buf_reg.flags) -------------------
#ifndef IOU_PBUF_RING_MMAP
#define IOU_PBUF_RING_MMAP 1U
#endif
#ifndef IOU_PBUF_RING_INC
#define IOU_PBUF_RING_INC 2U
#endif

// ---- uring_cmd socket operations (enum io_uring_socket_op) -----------------
namespace ringshard::uring::abi {
inline constexpr std::uint32_t socket_uring_op_siocinq = 0;
inline constexpr std::uint32_t socket_uring_op_siocoutq = 1;
inline constexpr std::uint32_t socket_uring_op_getsockopt = 2;
inline constexpr std::uint32_t socket_uring_op_setsockopt = 3;
}  // namespace ringshard::uring::abi

// ---- futex2 flags (linux/futex.h, 6.7) -------------------------------------
#ifndef FUTEX2_SIZE_U8
#define FUTEX2_SIZE_U8 0x00
#define FUTEX2_SIZE_U16 0x01
#define FUTEX2_SIZE_U32 0x02
#define FUTEX2_SIZE_U64 0x03
#define FUTEX2_NUMA 0x04
#endif
#ifndef FUTEX2_PRIVATE
#define FUTEX2_PRIVATE 128
#endif
#ifndef FUTEX_BITSET_MATCH_ANY
#define FUTEX_BITSET_MATCH_ANY 0xffffffff
#endif

// ---- epoll_wait/SQE field aliases --------------------------------------------
// Newer headers name some union members of io_uring_sqe that 6.1 lacks
// (futex_flags, waitid_flags, install_fd_flags, nop_flags, pipe_flags,
// optlen, optval). They all alias rw_flags / file_index / addr3; prep code
// writes those fields, so nothing more is needed here.
