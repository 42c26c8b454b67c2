// Preparation of every io_uring opcode up to IORING_OP_PIPE (Linux 6.18).
//
// Each liburing `io_uring_prep_X(sqe, ...)` is `ringshard::uring::prep_X(sqe, ...)`
// here, with the same argument order. Every helper funnels into prep_rw, which
// writes every field of the SQE but user_data, so a recycled SQE never carries
// stale state. Where liburing takes a plain fd, these take a `File`: an `int`
// fd as before, or `FixedFile{index}` for a registered file, which also sets
// IOSQE_FIXED_FILE. Buffers are MutableBuffer / ConstBuffer (anything
// contiguous), timeouts are Timespec (built from std::chrono durations).
// For the helpers liburing 2.3 also has, the resulting SQE is byte-identical
// (tests/uring/differential_test.cpp checks that).
#pragma once

#include <fcntl.h>
#include <linux/openat2.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include <cstdint>
#include <span>

#include "ringshard/framework/uring/abi.hpp"
#include "ringshard/framework/uring/types.hpp"

namespace ringshard::uring {

namespace detail {
inline std::uint64_t ptr64(const void* p) noexcept { return reinterpret_cast<std::uintptr_t>(p); }
}  // namespace detail

/// io_uring_prep_rw: the generic preparer every helper uses.
inline void prep_rw(unsigned op, io_uring_sqe* sqe, int fd, const void* addr, unsigned len,
                    std::uint64_t offset) noexcept {
  sqe->opcode = static_cast<std::uint8_t>(op);
  sqe->flags = 0;
  sqe->ioprio = 0;
  sqe->fd = fd;
  sqe->off = offset;
  sqe->addr = detail::ptr64(addr);
  sqe->len = len;
  sqe->rw_flags = 0;
  sqe->buf_index = 0;
  sqe->personality = 0;
  sqe->file_index = 0;
  sqe->addr3 = 0;
  sqe->__pad2[0] = 0;
}

/// prep_rw on a File: sets IOSQE_FIXED_FILE for a registered file.
inline void prep_rw(unsigned op, io_uring_sqe* sqe, File file, const void* addr, unsigned len,
                    std::uint64_t offset) noexcept {
  prep_rw(op, sqe, file.value(), addr, len, offset);
  if (file.fixed()) sqe->flags = IOSQE_FIXED_FILE;
}

/// Direct-descriptor variants install the new file at registered slot
/// `file_index` (IORING_FILE_INDEX_ALLOC lets the kernel choose).
inline void set_target_fixed_file(io_uring_sqe* sqe, unsigned file_index) noexcept {
  if (file_index == IORING_FILE_INDEX_ALLOC) --file_index;
  sqe->file_index = file_index + 1;
}

// ---- no-op -------------------------------------------------------------------
inline void prep_nop(io_uring_sqe* sqe) noexcept { prep_rw(IORING_OP_NOP, sqe, -1, nullptr, 0, 0); }
/// A NOP that completes with `res` (IORING_NOP_INJECT_RESULT, 6.13+).
inline void prep_nop_result(io_uring_sqe* sqe, int res) noexcept {
  prep_nop(sqe);
  sqe->rw_flags = IORING_NOP_INJECT_RESULT;
  sqe->len = static_cast<unsigned>(res);
}

// ---- read / write -------------------------------------------------------------
inline void prep_read(io_uring_sqe* sqe, File fd, MutableBuffer buf, std::uint64_t offset) noexcept {
  prep_rw(IORING_OP_READ, sqe, fd, buf.data(), static_cast<unsigned>(buf.size()), offset);
}
inline void prep_write(io_uring_sqe* sqe, File fd, ConstBuffer buf, std::uint64_t offset) noexcept {
  prep_rw(IORING_OP_WRITE, sqe, fd, buf.data(), static_cast<unsigned>(buf.size()), offset);
}
inline void prep_readv(io_uring_sqe* sqe, File fd, std::span<const iovec> iovecs, std::uint64_t offset) noexcept {
  prep_rw(IORING_OP_READV, sqe, fd, iovecs.data(), static_cast<unsigned>(iovecs.size()), offset);
}
/// readv with preadv2(2) flags (RWF_*).
inline void prep_readv2(io_uring_sqe* sqe, File fd, std::span<const iovec> iovecs, std::uint64_t offset,
                        int flags) noexcept {
  prep_readv(sqe, fd, iovecs, offset);
  sqe->rw_flags = static_cast<std::uint32_t>(flags);
}
inline void prep_writev(io_uring_sqe* sqe, File fd, std::span<const iovec> iovecs, std::uint64_t offset) noexcept {
  prep_rw(IORING_OP_WRITEV, sqe, fd, iovecs.data(), static_cast<unsigned>(iovecs.size()), offset);
}
inline void prep_writev2(io_uring_sqe* sqe, File fd, std::span<const iovec> iovecs, std::uint64_t offset,
                         int flags) noexcept {
  prep_writev(sqe, fd, iovecs, offset);
  sqe->rw_flags = static_cast<std::uint32_t>(flags);
}
/// Read into registered buffer `buf_index`; `buf` must lie inside it.
inline void prep_read_fixed(io_uring_sqe* sqe, File fd, MutableBuffer buf, std::uint64_t offset,
                            int buf_index) noexcept {
  prep_rw(IORING_OP_READ_FIXED, sqe, fd, buf.data(), static_cast<unsigned>(buf.size()), offset);
  sqe->buf_index = static_cast<std::uint16_t>(buf_index);
}
inline void prep_write_fixed(io_uring_sqe* sqe, File fd, ConstBuffer buf, std::uint64_t offset,
                             int buf_index) noexcept {
  prep_rw(IORING_OP_WRITE_FIXED, sqe, fd, buf.data(), static_cast<unsigned>(buf.size()), offset);
  sqe->buf_index = static_cast<std::uint16_t>(buf_index);
}
/// Vectored read whose iovecs point into registered buffer `buf_index` (6.15+).
inline void prep_readv_fixed(io_uring_sqe* sqe, File fd, std::span<const iovec> iovecs, std::uint64_t offset,
                             int flags, int buf_index) noexcept {
  prep_readv2(sqe, fd, iovecs, offset, flags);
  sqe->opcode = abi::op_readv_fixed;
  sqe->buf_index = static_cast<std::uint16_t>(buf_index);
}
inline void prep_writev_fixed(io_uring_sqe* sqe, File fd, std::span<const iovec> iovecs, std::uint64_t offset,
                              int flags, int buf_index) noexcept {
  prep_writev2(sqe, fd, iovecs, offset, flags);
  sqe->opcode = abi::op_writev_fixed;
  sqe->buf_index = static_cast<std::uint16_t>(buf_index);
}
/// Multishot read into buffers of provided-buffer group `buf_group` (6.7+).
inline void prep_read_multishot(io_uring_sqe* sqe, File fd, unsigned nbytes, std::uint64_t offset,
                                int buf_group) noexcept {
  prep_rw(abi::op_read_multishot, sqe, fd, nullptr, nbytes, offset);
  sqe->buf_group = static_cast<std::uint16_t>(buf_group);
  sqe->flags = static_cast<std::uint8_t>(sqe->flags | IOSQE_BUFFER_SELECT);
}

// ---- file metadata and sync ------------------------------------------------------
inline void prep_fsync(io_uring_sqe* sqe, File fd, unsigned fsync_flags) noexcept {
  prep_rw(IORING_OP_FSYNC, sqe, fd, nullptr, 0, 0);
  sqe->fsync_flags = fsync_flags;
}
inline void prep_sync_file_range(io_uring_sqe* sqe, File fd, unsigned len, std::uint64_t offset,
                                 int flags) noexcept {
  prep_rw(IORING_OP_SYNC_FILE_RANGE, sqe, fd, nullptr, len, offset);
  sqe->sync_range_flags = static_cast<std::uint32_t>(flags);
}
inline void prep_fallocate(io_uring_sqe* sqe, File fd, int mode, off_t offset, off_t len) noexcept {
  prep_rw(IORING_OP_FALLOCATE, sqe, fd, nullptr, static_cast<unsigned>(mode), static_cast<std::uint64_t>(offset));
  sqe->addr = static_cast<std::uint64_t>(len);
}
inline void prep_fadvise(io_uring_sqe* sqe, File fd, std::uint64_t offset, off_t len, int advice) noexcept {
  prep_rw(IORING_OP_FADVISE, sqe, fd, nullptr, static_cast<std::uint32_t>(len), offset);
  sqe->fadvise_advice = static_cast<std::uint32_t>(advice);
}
inline void prep_madvise(io_uring_sqe* sqe, void* addr, off_t length, int advice) noexcept {
  prep_rw(IORING_OP_MADVISE, sqe, -1, addr, static_cast<std::uint32_t>(length), 0);
  sqe->fadvise_advice = static_cast<std::uint32_t>(advice);
}
/// ftruncate(2) (6.9+).
inline void prep_ftruncate(io_uring_sqe* sqe, File fd, off_t len) noexcept {
  prep_rw(abi::op_ftruncate, sqe, fd, nullptr, 0, static_cast<std::uint64_t>(len));
}
inline void prep_statx(io_uring_sqe* sqe, int dfd, const char* path, int flags, unsigned mask,
                       struct statx* statxbuf) noexcept {
  prep_rw(IORING_OP_STATX, sqe, dfd, path, mask, detail::ptr64(statxbuf));
  sqe->statx_flags = static_cast<std::uint32_t>(flags);
}

// ---- open / close ---------------------------------------------------------------------
inline void prep_openat(io_uring_sqe* sqe, int dfd, const char* path, int flags, mode_t mode) noexcept {
  prep_rw(IORING_OP_OPENAT, sqe, dfd, path, mode, 0);
  sqe->open_flags = static_cast<std::uint32_t>(flags);
}
/// openat into registered slot `file_index` (IORING_FILE_INDEX_ALLOC: any free slot).
inline void prep_openat_direct(io_uring_sqe* sqe, int dfd, const char* path, int flags, mode_t mode,
                               unsigned file_index) noexcept {
  prep_openat(sqe, dfd, path, flags, mode);
  set_target_fixed_file(sqe, file_index);
}
inline void prep_openat2(io_uring_sqe* sqe, int dfd, const char* path, open_how* how) noexcept {
  prep_rw(IORING_OP_OPENAT2, sqe, dfd, path, sizeof(*how), detail::ptr64(how));
}
inline void prep_openat2_direct(io_uring_sqe* sqe, int dfd, const char* path, open_how* how,
                                unsigned file_index) noexcept {
  prep_openat2(sqe, dfd, path, how);
  set_target_fixed_file(sqe, file_index);
}
inline void prep_close(io_uring_sqe* sqe, int fd) noexcept { prep_rw(IORING_OP_CLOSE, sqe, fd, nullptr, 0, 0); }
/// Close registered slot `file_index`.
inline void prep_close_direct(io_uring_sqe* sqe, unsigned file_index) noexcept {
  prep_close(sqe, 0);
  set_target_fixed_file(sqe, file_index);
}
/// Update registered slots from `offset` with `fds` (IORING_FILE_INDEX_ALLOC: any free slots;
/// the chosen slots are written back into `fds`).
inline void prep_files_update(io_uring_sqe* sqe, std::span<int> fds, int offset) noexcept {
  prep_rw(IORING_OP_FILES_UPDATE, sqe, -1, fds.data(), static_cast<unsigned>(fds.size()),
          static_cast<std::uint64_t>(offset));
}
/// Install registered file `fixed` as a regular fd (6.8+); the CQE carries the new fd.
inline void prep_fixed_fd_install(io_uring_sqe* sqe, FixedFile fixed, unsigned flags) noexcept {
  prep_rw(abi::op_fixed_fd_install, sqe, static_cast<int>(fixed.index), nullptr, 0, 0);
  sqe->flags = IOSQE_FIXED_FILE;
  sqe->rw_flags = flags;  // install_fd_flags
}

// ---- splice, tee, pipe --------------------------------------------------------------------
/// splice(2). A registered fd_in needs SPLICE_F_FD_IN_FIXED in splice_flags.
inline void prep_splice(io_uring_sqe* sqe, int fd_in, std::int64_t off_in, File fd_out, std::int64_t off_out,
                        unsigned nbytes, unsigned splice_flags) noexcept {
  prep_rw(IORING_OP_SPLICE, sqe, fd_out, nullptr, nbytes, static_cast<std::uint64_t>(off_out));
  sqe->splice_off_in = static_cast<std::uint64_t>(off_in);
  sqe->splice_fd_in = fd_in;
  sqe->splice_flags = splice_flags;
}
inline void prep_tee(io_uring_sqe* sqe, int fd_in, File fd_out, unsigned nbytes, unsigned splice_flags) noexcept {
  prep_rw(IORING_OP_TEE, sqe, fd_out, nullptr, nbytes, 0);
  sqe->splice_off_in = 0;
  sqe->splice_fd_in = fd_in;
  sqe->splice_flags = splice_flags;
}
/// pipe2(2) (6.16+): the kernel writes the two new fds into `fds`.
inline void prep_pipe(io_uring_sqe* sqe, int (&fds)[2], int pipe_flags) noexcept {
  prep_rw(abi::op_pipe, sqe, 0, fds, 0, 0);
  sqe->rw_flags = static_cast<std::uint32_t>(pipe_flags);  // pipe_flags
}
/// pipe into registered slots starting at `file_index` (IORING_FILE_INDEX_ALLOC: any).
inline void prep_pipe_direct(io_uring_sqe* sqe, int (&fds)[2], int pipe_flags, unsigned file_index) noexcept {
  prep_pipe(sqe, fds, pipe_flags);
  set_target_fixed_file(sqe, file_index);
}

// ---- paths ------------------------------------------------------------------------
inline void prep_renameat(io_uring_sqe* sqe, int olddfd, const char* oldpath, int newdfd, const char* newpath,
                          unsigned flags) noexcept {
  prep_rw(IORING_OP_RENAMEAT, sqe, olddfd, oldpath, static_cast<std::uint32_t>(newdfd), detail::ptr64(newpath));
  sqe->rename_flags = flags;
}
inline void prep_rename(io_uring_sqe* sqe, const char* oldpath, const char* newpath) noexcept {
  prep_renameat(sqe, AT_FDCWD, oldpath, AT_FDCWD, newpath, 0);
}
inline void prep_unlinkat(io_uring_sqe* sqe, int dfd, const char* path, int flags) noexcept {
  prep_rw(IORING_OP_UNLINKAT, sqe, dfd, path, 0, 0);
  sqe->unlink_flags = static_cast<std::uint32_t>(flags);
}
inline void prep_unlink(io_uring_sqe* sqe, const char* path, int flags) noexcept {
  prep_unlinkat(sqe, AT_FDCWD, path, flags);
}
inline void prep_mkdirat(io_uring_sqe* sqe, int dfd, const char* path, mode_t mode) noexcept {
  prep_rw(IORING_OP_MKDIRAT, sqe, dfd, path, mode, 0);
}
inline void prep_mkdir(io_uring_sqe* sqe, const char* path, mode_t mode) noexcept {
  prep_mkdirat(sqe, AT_FDCWD, path, mode);
}
inline void prep_symlinkat(io_uring_sqe* sqe, const char* target, int newdirfd, const char* linkpath) noexcept {
  prep_rw(IORING_OP_SYMLINKAT, sqe, newdirfd, target, 0, detail::ptr64(linkpath));
}
inline void prep_symlink(io_uring_sqe* sqe, const char* target, const char* linkpath) noexcept {
  prep_symlinkat(sqe, target, AT_FDCWD, linkpath);
}
inline void prep_linkat(io_uring_sqe* sqe, int olddfd, const char* oldpath, int newdfd, const char* newpath,
                        int flags) noexcept {
  prep_rw(IORING_OP_LINKAT, sqe, olddfd, oldpath, static_cast<std::uint32_t>(newdfd), detail::ptr64(newpath));
  sqe->hardlink_flags = static_cast<std::uint32_t>(flags);
}
inline void prep_link(io_uring_sqe* sqe, const char* oldpath, const char* newpath, int flags) noexcept {
  prep_linkat(sqe, AT_FDCWD, oldpath, AT_FDCWD, newpath, flags);
}

// ---- extended attributes ---------------------------------------------------------------
inline void prep_getxattr(io_uring_sqe* sqe, const char* name, char* value, const char* path,
                          unsigned len) noexcept {
  prep_rw(IORING_OP_GETXATTR, sqe, 0, name, len, detail::ptr64(value));
  sqe->addr3 = detail::ptr64(path);
  sqe->xattr_flags = 0;
}
inline void prep_setxattr(io_uring_sqe* sqe, const char* name, const char* value, const char* path, int flags,
                          unsigned len) noexcept {
  prep_rw(IORING_OP_SETXATTR, sqe, 0, name, len, detail::ptr64(value));
  sqe->addr3 = detail::ptr64(path);
  sqe->xattr_flags = static_cast<std::uint32_t>(flags);
}
inline void prep_fgetxattr(io_uring_sqe* sqe, File fd, const char* name, char* value, unsigned len) noexcept {
  prep_rw(IORING_OP_FGETXATTR, sqe, fd, name, len, detail::ptr64(value));
  sqe->xattr_flags = 0;
}
inline void prep_fsetxattr(io_uring_sqe* sqe, File fd, const char* name, const char* value, int flags,
                           unsigned len) noexcept {
  prep_rw(IORING_OP_FSETXATTR, sqe, fd, name, len, detail::ptr64(value));
  sqe->xattr_flags = static_cast<std::uint32_t>(flags);
}

// ---- poll and epoll ---------------------------------------------------------------------
inline void prep_poll_add(io_uring_sqe* sqe, File fd, unsigned poll_mask) noexcept {
  prep_rw(IORING_OP_POLL_ADD, sqe, fd, nullptr, 0, 0);
  sqe->poll32_events = poll_mask;  // little-endian only (x86-64, arm64)
}
/// Multishot poll: one CQE per readiness event while IORING_CQE_F_MORE is set.
inline void prep_poll_multishot(io_uring_sqe* sqe, File fd, unsigned poll_mask) noexcept {
  prep_poll_add(sqe, fd, poll_mask);
  sqe->len = IORING_POLL_ADD_MULTI;
}
inline void prep_poll_remove(io_uring_sqe* sqe, std::uint64_t user_data) noexcept {
  prep_rw(IORING_OP_POLL_REMOVE, sqe, -1, nullptr, 0, 0);
  sqe->addr = user_data;
}
/// Update the poll armed with `old_user_data`: flags IORING_POLL_UPDATE_EVENTS / _USER_DATA.
inline void prep_poll_update(io_uring_sqe* sqe, std::uint64_t old_user_data, std::uint64_t new_user_data,
                             unsigned poll_mask, unsigned flags) noexcept {
  prep_rw(IORING_OP_POLL_REMOVE, sqe, -1, nullptr, flags, new_user_data);
  sqe->addr = old_user_data;
  sqe->poll32_events = poll_mask;
}
inline void prep_epoll_ctl(io_uring_sqe* sqe, int epfd, int fd, int op, epoll_event* ev) noexcept {
  prep_rw(IORING_OP_EPOLL_CTL, sqe, epfd, ev, static_cast<std::uint32_t>(op), static_cast<std::uint32_t>(fd));
}
/// epoll_wait(2) through the ring (6.15+).
inline void prep_epoll_wait(io_uring_sqe* sqe, int epfd, std::span<epoll_event> events, unsigned flags) noexcept {
  prep_rw(abi::op_epoll_wait, sqe, epfd, events.data(), static_cast<unsigned>(events.size()), 0);
  sqe->rw_flags = flags;
}

// ---- timeouts and cancellation -------------------------------------------------------------
/// Completes after `ts` or once `count` other CQEs were posted (0: time only).
inline void prep_timeout(io_uring_sqe* sqe, const Timespec* ts, unsigned count, unsigned flags) noexcept {
  prep_rw(IORING_OP_TIMEOUT, sqe, -1, ts, 1, count);
  sqe->timeout_flags = flags;
}
inline void prep_timeout_remove(io_uring_sqe* sqe, std::uint64_t user_data, unsigned flags) noexcept {
  prep_rw(IORING_OP_TIMEOUT_REMOVE, sqe, -1, nullptr, 0, 0);
  sqe->addr = user_data;
  sqe->timeout_flags = flags;
}
inline void prep_timeout_update(io_uring_sqe* sqe, const Timespec* ts, std::uint64_t user_data,
                                unsigned flags) noexcept {
  prep_rw(IORING_OP_TIMEOUT_REMOVE, sqe, -1, nullptr, 0, detail::ptr64(ts));
  sqe->addr = user_data;
  sqe->timeout_flags = flags | IORING_TIMEOUT_UPDATE;
}
/// A deadline for the previous SQE, which must carry IOSQE_IO_LINK.
inline void prep_link_timeout(io_uring_sqe* sqe, const Timespec* ts, unsigned flags) noexcept {
  prep_rw(IORING_OP_LINK_TIMEOUT, sqe, -1, ts, 1, 0);
  sqe->timeout_flags = flags;
}
/// Cancel requests by user data (flags: IORING_ASYNC_CANCEL_ALL, _ANY, ...).
inline void prep_cancel64(io_uring_sqe* sqe, std::uint64_t user_data, int flags) noexcept {
  prep_rw(IORING_OP_ASYNC_CANCEL, sqe, -1, nullptr, 0, 0);
  sqe->addr = user_data;
  sqe->cancel_flags = static_cast<std::uint32_t>(flags);
}
inline void prep_cancel(io_uring_sqe* sqe, const void* user_data, int flags) noexcept {
  prep_cancel64(sqe, detail::ptr64(user_data), flags);
}
/// Cancel requests on a file (a FixedFile sets IORING_ASYNC_CANCEL_FD_FIXED).
inline void prep_cancel_fd(io_uring_sqe* sqe, File fd, unsigned flags) noexcept {
  prep_rw(IORING_OP_ASYNC_CANCEL, sqe, fd.value(), nullptr, 0, 0);
  sqe->cancel_flags = flags | IORING_ASYNC_CANCEL_FD | (fd.fixed() ? IORING_ASYNC_CANCEL_FD_FIXED : 0U);
}
/// Cancel any one request (with IORING_ASYNC_CANCEL_ALL in flags: every request).
inline void prep_cancel_any(io_uring_sqe* sqe, unsigned flags) noexcept {
  prep_cancel64(sqe, 0, static_cast<int>(flags | IORING_ASYNC_CANCEL_ANY));
}

// ---- sockets: setup ---------------------------------------------------------------------
inline void prep_socket(io_uring_sqe* sqe, int domain, int type, int protocol, unsigned flags) noexcept {
  prep_rw(IORING_OP_SOCKET, sqe, domain, nullptr, static_cast<unsigned>(protocol), static_cast<std::uint64_t>(type));
  sqe->rw_flags = flags;
}
inline void prep_socket_direct(io_uring_sqe* sqe, int domain, int type, int protocol, unsigned file_index,
                               unsigned flags) noexcept {
  prep_socket(sqe, domain, type, protocol, flags);
  set_target_fixed_file(sqe, file_index);
}
inline void prep_socket_direct_alloc(io_uring_sqe* sqe, int domain, int type, int protocol,
                                     unsigned flags) noexcept {
  prep_socket(sqe, domain, type, protocol, flags);
  set_target_fixed_file(sqe, IORING_FILE_INDEX_ALLOC);
}
/// bind(2) (6.11+). `addr` must stay valid until the CQE.
inline void prep_bind(io_uring_sqe* sqe, File fd, const sockaddr* addr, socklen_t addrlen) noexcept {
  prep_rw(abi::op_bind, sqe, fd, addr, 0, addrlen);
}
/// listen(2) (6.11+).
inline void prep_listen(io_uring_sqe* sqe, File fd, int backlog) noexcept {
  prep_rw(abi::op_listen, sqe, fd, nullptr, static_cast<unsigned>(backlog), 0);
}
inline void prep_connect(io_uring_sqe* sqe, File fd, const sockaddr* addr, socklen_t addrlen) noexcept {
  prep_rw(IORING_OP_CONNECT, sqe, fd, addr, 0, addrlen);
}
inline void prep_accept(io_uring_sqe* sqe, File fd, sockaddr* addr, socklen_t* addrlen, int flags) noexcept {
  prep_rw(IORING_OP_ACCEPT, sqe, fd, addr, 0, detail::ptr64(addrlen));
  sqe->accept_flags = static_cast<std::uint32_t>(flags);
}
inline void prep_accept_direct(io_uring_sqe* sqe, File fd, sockaddr* addr, socklen_t* addrlen, int flags,
                               unsigned file_index) noexcept {
  prep_accept(sqe, fd, addr, addrlen, flags);
  set_target_fixed_file(sqe, file_index);
}
/// One CQE per accepted connection while IORING_CQE_F_MORE is set.
inline void prep_multishot_accept(io_uring_sqe* sqe, File fd, sockaddr* addr, socklen_t* addrlen,
                                  int flags) noexcept {
  prep_accept(sqe, fd, addr, addrlen, flags);
  sqe->ioprio |= IORING_ACCEPT_MULTISHOT;
}
inline void prep_multishot_accept_direct(io_uring_sqe* sqe, File fd, sockaddr* addr, socklen_t* addrlen,
                                         int flags) noexcept {
  prep_multishot_accept(sqe, fd, addr, addrlen, flags);
  set_target_fixed_file(sqe, IORING_FILE_INDEX_ALLOC);
}
inline void prep_shutdown(io_uring_sqe* sqe, File fd, int how) noexcept {
  prep_rw(IORING_OP_SHUTDOWN, sqe, fd, nullptr, static_cast<std::uint32_t>(how), 0);
}

// ---- sockets: data ----------------------------------------------------------------------
inline void prep_send(io_uring_sqe* sqe, File sockfd, ConstBuffer buf, int flags) noexcept {
  prep_rw(IORING_OP_SEND, sqe, sockfd, buf.data(), static_cast<std::uint32_t>(buf.size()), 0);
  sqe->msg_flags = static_cast<std::uint32_t>(flags);
}
/// Destination address for send / send_zc on an unconnected socket.
inline void prep_send_set_addr(io_uring_sqe* sqe, const sockaddr* dest_addr, std::uint16_t addr_len) noexcept {
  sqe->addr2 = detail::ptr64(dest_addr);
  sqe->addr_len = addr_len;
}
inline void prep_sendto(io_uring_sqe* sqe, File sockfd, ConstBuffer buf, int flags, const sockaddr* addr,
                        socklen_t addrlen) noexcept {
  prep_send(sqe, sockfd, buf, flags);
  prep_send_set_addr(sqe, addr, static_cast<std::uint16_t>(addrlen));
}
/// Send whose data comes from provided-buffer group `buf_group` (bundle, 6.10+).
inline void prep_send_bundle(io_uring_sqe* sqe, File sockfd, std::size_t len, int flags, int buf_group) noexcept {
  prep_rw(IORING_OP_SEND, sqe, sockfd, nullptr, static_cast<std::uint32_t>(len), 0);
  sqe->msg_flags = static_cast<std::uint32_t>(flags);
  sqe->ioprio |= IORING_RECVSEND_BUNDLE;
  sqe->buf_group = static_cast<std::uint16_t>(buf_group);
  sqe->flags = static_cast<std::uint8_t>(sqe->flags | IOSQE_BUFFER_SELECT);
}
/// Zero-copy send: a result CQE (with F_MORE), then a NOTIF CQE when `buf` may be reused.
inline void prep_send_zc(io_uring_sqe* sqe, File sockfd, ConstBuffer buf, int flags, unsigned zc_flags) noexcept {
  prep_rw(IORING_OP_SEND_ZC, sqe, sockfd, buf.data(), static_cast<std::uint32_t>(buf.size()), 0);
  sqe->msg_flags = static_cast<std::uint32_t>(flags);
  sqe->ioprio = static_cast<std::uint16_t>(zc_flags);
}
inline void prep_send_zc_fixed(io_uring_sqe* sqe, File sockfd, ConstBuffer buf, int flags, unsigned zc_flags,
                               unsigned buf_index) noexcept {
  prep_send_zc(sqe, sockfd, buf, flags, zc_flags);
  sqe->ioprio |= IORING_RECVSEND_FIXED_BUF;
  sqe->buf_index = static_cast<std::uint16_t>(buf_index);
}
inline void prep_sendmsg(io_uring_sqe* sqe, File fd, const msghdr* msg, unsigned flags) noexcept {
  prep_rw(IORING_OP_SENDMSG, sqe, fd, msg, 1, 0);
  sqe->msg_flags = flags;
}
inline void prep_sendmsg_zc(io_uring_sqe* sqe, File fd, const msghdr* msg, unsigned flags) noexcept {
  prep_sendmsg(sqe, fd, msg, flags);
  sqe->opcode = IORING_OP_SENDMSG_ZC;
}
inline void prep_recv(io_uring_sqe* sqe, File sockfd, MutableBuffer buf, int flags) noexcept {
  prep_rw(IORING_OP_RECV, sqe, sockfd, buf.data(), static_cast<std::uint32_t>(buf.size()), 0);
  sqe->msg_flags = static_cast<std::uint32_t>(flags);
}
/// Multishot recv. Pass an empty buffer and add IOSQE_BUFFER_SELECT with
/// sqe->buf_group (or use prep_recv_multishot_group) to take provided buffers.
inline void prep_recv_multishot(io_uring_sqe* sqe, File sockfd, MutableBuffer buf, int flags) noexcept {
  prep_recv(sqe, sockfd, buf, flags);
  sqe->ioprio |= IORING_RECV_MULTISHOT;
}
/// Multishot recv into provided-buffer group `buf_group`: the usual server shape.
inline void prep_recv_multishot_group(io_uring_sqe* sqe, File sockfd, int flags, int buf_group) noexcept {
  prep_recv_multishot(sqe, sockfd, MutableBuffer{}, flags);
  sqe->buf_group = static_cast<std::uint16_t>(buf_group);
  sqe->flags = static_cast<std::uint8_t>(sqe->flags | IOSQE_BUFFER_SELECT);
}
inline void prep_recvmsg(io_uring_sqe* sqe, File fd, msghdr* msg, unsigned flags) noexcept {
  prep_rw(IORING_OP_RECVMSG, sqe, fd, msg, 1, 0);
  sqe->msg_flags = flags;
}
/// Multishot recvmsg: needs a buffer group; each buffer starts with an
/// io_uring_recvmsg_out header, parsed by RecvmsgOut.
inline void prep_recvmsg_multishot(io_uring_sqe* sqe, File fd, msghdr* msg, unsigned flags) noexcept {
  prep_recvmsg(sqe, fd, msg, flags);
  sqe->ioprio |= IORING_RECV_MULTISHOT;
}
/// Zero-copy receive into a registered zcrx interface queue (6.15+; needs a NIC
/// with header split and flow steering).
inline void prep_recv_zc(io_uring_sqe* sqe, File sockfd, unsigned len, unsigned ioprio_flags,
                         unsigned zcrx_ifq_idx) noexcept {
  prep_rw(abi::op_recv_zc, sqe, sockfd, nullptr, len, 0);
  sqe->ioprio = static_cast<std::uint16_t>(ioprio_flags);
  sqe->file_index = zcrx_ifq_idx;
}

/// The layout of a buffer filled by multishot recvmsg: header, name, control, payload.
class RecvmsgOut {
 public:
  /// io_uring_recvmsg_validate: nullopt-like invalid() when `len` is too short
  /// for the header that `msgh` describes.
  RecvmsgOut(void* buf, int len, const msghdr& msgh) noexcept
      : out_(static_cast<io_uring_recvmsg_out*>(buf)), len_(len), msgh_(&msgh) {
    const unsigned long header = msgh.msg_controllen + msgh.msg_namelen + sizeof(io_uring_recvmsg_out);
    if (len < 0 || static_cast<unsigned long>(len) < header) out_ = nullptr;
  }
  [[nodiscard]] bool valid() const noexcept { return out_ != nullptr; }
  [[nodiscard]] const io_uring_recvmsg_out& header() const noexcept { return *out_; }
  /// io_uring_recvmsg_name: the peer address (out_->namelen bytes are meaningful).
  [[nodiscard]] void* name() const noexcept { return out_ + 1; }
  /// io_uring_recvmsg_cmsg_firsthdr.
  [[nodiscard]] cmsghdr* cmsg_firsthdr() const noexcept {
    if (out_->controllen < sizeof(cmsghdr)) return nullptr;
    return reinterpret_cast<cmsghdr*>(static_cast<unsigned char*>(name()) + msgh_->msg_namelen);
  }
  /// io_uring_recvmsg_cmsg_nexthdr.
  [[nodiscard]] cmsghdr* cmsg_nexthdr(cmsghdr* cmsg) const noexcept {
    if (cmsg->cmsg_len < sizeof(cmsghdr)) return nullptr;
    auto* end = reinterpret_cast<unsigned char*>(cmsg_firsthdr()) + out_->controllen;
    auto* next = reinterpret_cast<cmsghdr*>(reinterpret_cast<unsigned char*>(cmsg) + CMSG_ALIGN(cmsg->cmsg_len));
    if (reinterpret_cast<unsigned char*>(next + 1) > end) return nullptr;
    if (reinterpret_cast<unsigned char*>(next) + CMSG_ALIGN(next->cmsg_len) > end) return nullptr;
    return next;
  }
  /// io_uring_recvmsg_payload and _payload_length.
  [[nodiscard]] std::span<std::byte> payload() const noexcept {
    auto* start = static_cast<std::byte*>(name()) + msgh_->msg_namelen + msgh_->msg_controllen;
    auto* end = reinterpret_cast<std::byte*>(out_) + len_;
    return {start, static_cast<std::size_t>(end - start)};
  }

 private:
  io_uring_recvmsg_out* out_;
  int len_;
  const msghdr* msgh_;
};

// ---- provided buffers (legacy groups; see BufferRing for rings) -------------------------
inline void prep_provide_buffers(io_uring_sqe* sqe, void* addr, int len, int nr, int bgid, int bid) noexcept {
  prep_rw(IORING_OP_PROVIDE_BUFFERS, sqe, nr, addr, static_cast<std::uint32_t>(len), static_cast<std::uint64_t>(bid));
  sqe->buf_group = static_cast<std::uint16_t>(bgid);
}
inline void prep_remove_buffers(io_uring_sqe* sqe, int nr, int bgid) noexcept {
  prep_rw(IORING_OP_REMOVE_BUFFERS, sqe, nr, nullptr, 0, 0);
  sqe->buf_group = static_cast<std::uint16_t>(bgid);
}

// ---- cross-ring messages ------------------------------------------------------------------
/// Post a CQE {user_data = data, res = len} into the ring whose fd is `fd`.
inline void prep_msg_ring(io_uring_sqe* sqe, int fd, unsigned len, std::uint64_t data, unsigned flags) noexcept {
  prep_rw(IORING_OP_MSG_RING, sqe, fd, nullptr, len, data);
  sqe->msg_ring_flags = flags;
}
/// As prep_msg_ring, and the posted CQE carries `cqe_flags`.
inline void prep_msg_ring_cqe_flags(io_uring_sqe* sqe, int fd, unsigned len, std::uint64_t data, unsigned flags,
                                    unsigned cqe_flags) noexcept {
  prep_rw(IORING_OP_MSG_RING, sqe, fd, nullptr, len, data);
  sqe->msg_ring_flags = IORING_MSG_RING_FLAGS_PASS | flags;
  sqe->file_index = cqe_flags;
}
/// Pass this ring's registered file `source` into slot `target_index` of the
/// ring `fd` (IORING_FILE_INDEX_ALLOC: any free slot); that ring gets a CQE with `data`.
inline void prep_msg_ring_fd(io_uring_sqe* sqe, int fd, FixedFile source, unsigned target_index, std::uint64_t data,
                             unsigned flags) noexcept {
  prep_rw(IORING_OP_MSG_RING, sqe, fd, reinterpret_cast<const void*>(std::uintptr_t{IORING_MSG_SEND_FD}), 0, data);
  sqe->addr3 = source.index;
  set_target_fixed_file(sqe, target_index);
  sqe->msg_ring_flags = flags;
}
inline void prep_msg_ring_fd_alloc(io_uring_sqe* sqe, int fd, FixedFile source, std::uint64_t data,
                                   unsigned flags) noexcept {
  prep_msg_ring_fd(sqe, fd, source, IORING_FILE_INDEX_ALLOC, data, flags);
}

// ---- processes and futexes ------------------------------------------------------------
/// waitid(2) (6.7+): `infop` is filled when the CQE arrives.
inline void prep_waitid(io_uring_sqe* sqe, idtype_t idtype, id_t id, siginfo_t* infop, int options,
                        unsigned flags) noexcept {
  prep_rw(abi::op_waitid, sqe, static_cast<int>(id), nullptr, static_cast<unsigned>(idtype), 0);
  sqe->rw_flags = flags;  // waitid_flags
  sqe->file_index = static_cast<std::uint32_t>(options);
  sqe->addr2 = detail::ptr64(infop);
}
/// futex2 wait (6.7+): futex_flags are FUTEX2_SIZE_* | FUTEX2_PRIVATE; flags must be 0.
inline void prep_futex_wait(io_uring_sqe* sqe, const std::uint32_t* futex, std::uint64_t val, std::uint64_t mask,
                            std::uint32_t futex_flags, unsigned flags) noexcept {
  prep_rw(abi::op_futex_wait, sqe, static_cast<int>(futex_flags), futex, 0, val);
  sqe->rw_flags = flags;  // futex_flags
  sqe->addr3 = mask;
}
/// futex2 wake of up to `val` waiters; the CQE carries how many woke.
inline void prep_futex_wake(io_uring_sqe* sqe, const std::uint32_t* futex, std::uint64_t val, std::uint64_t mask,
                            std::uint32_t futex_flags, unsigned flags) noexcept {
  prep_rw(abi::op_futex_wake, sqe, static_cast<int>(futex_flags), futex, 0, val);
  sqe->rw_flags = flags;
  sqe->addr3 = mask;
}
/// Wait on several futexes; the CQE carries the index of the one that woke.
inline void prep_futex_waitv(io_uring_sqe* sqe, std::span<futex_waitv> futexes, unsigned flags) noexcept {
  prep_rw(abi::op_futex_waitv, sqe, 0, futexes.data(), static_cast<unsigned>(futexes.size()), 0);
  sqe->rw_flags = flags;
}

// ---- passthrough ------------------------------------------------------------------------
/// IORING_OP_URING_CMD with command `cmd_op` for `fd`'s driver; command data
/// goes into sqe->cmd (80 bytes with SQE128 rings).
inline void prep_uring_cmd(io_uring_sqe* sqe, std::uint32_t cmd_op, File fd) noexcept {
  prep_rw(IORING_OP_URING_CMD, sqe, fd, nullptr, 0, 0);
  sqe->cmd_op = cmd_op;
}
/// Socket commands (SOCKET_URING_OP_SIOCINQ/SIOCOUTQ/GETSOCKOPT/SETSOCKOPT, 6.7+).
inline void prep_cmd_sock(io_uring_sqe* sqe, std::uint32_t cmd_op, File fd, int level, int optname, void* optval,
                          int optlen) noexcept {
  prep_rw(IORING_OP_URING_CMD, sqe, fd, nullptr, 0, 0);
  sqe->cmd_op = cmd_op;
  // level and optname share the addr field; optval is addr3; optlen is file_index.
  sqe->addr = (static_cast<std::uint64_t>(static_cast<std::uint32_t>(optname)) << 32) |
              static_cast<std::uint32_t>(level);
  sqe->addr3 = detail::ptr64(optval);
  sqe->file_index = static_cast<std::uint32_t>(optlen);
}

}  // namespace ringshard::uring
