// Ring: one io_uring instance (liburing's `struct io_uring` and the functions
// that take it). Setup throws std::system_error; everything after setup
// returns the kernel's -errno and never throws.
#pragma once

#include <sched.h>
#include <signal.h>
#include <sys/uio.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "ringshard/framework/uring/abi.hpp"
#include "ringshard/framework/uring/probe.hpp"
#include "ringshard/framework/uring/syscall.hpp"
#include "ringshard/framework/uring/types.hpp"

namespace ringshard::uring {

/// Everything io_uring_setup(2) takes besides the entry count.
struct SetupOptions {
  unsigned flags = 0;           ///< IORING_SETUP_* flags
  unsigned cq_entries = 0;      ///< with IORING_SETUP_CQSIZE (set automatically when non-zero)
  unsigned sq_thread_cpu = 0;   ///< with IORING_SETUP_SQ_AFF
  std::chrono::milliseconds sq_thread_idle{0};  ///< SQPOLL idle time before the thread sleeps
  int attach_wq_fd = -1;        ///< with IORING_SETUP_ATTACH_WQ (set automatically when >= 0)
};

/// Human-readable name of one IORING_SETUP_* bit, or of a set of them ("SQPOLL|CQSIZE").
std::string setup_flags_name(unsigned flags);

namespace detail {
template <class T>
inline T load_acquire(const T* p) noexcept {
  return std::atomic_ref<T>(*const_cast<T*>(p)).load(std::memory_order_acquire);
}
template <class T>
inline void store_release(T* p, T v) noexcept {
  std::atomic_ref<T>(*p).store(v, std::memory_order_release);
}
template <class T>
inline T load_relaxed(const T* p) noexcept {
  return std::atomic_ref<T>(*const_cast<T*>(p)).load(std::memory_order_relaxed);
}
}  // namespace detail

class Ring {
 public:
  /// io_uring_queue_init: `entries` SQ entries (a power of two is not required;
  /// the kernel rounds up). Throws std::system_error naming the refused flag.
  explicit Ring(unsigned entries, const SetupOptions& options = {});
  /// io_uring_queue_init_params: raw parameters, updated with what the kernel returned.
  Ring(unsigned entries, io_uring_params& params);
  ~Ring();
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;
  Ring(Ring&& other) noexcept;
  Ring& operator=(Ring&& other) noexcept;

  // ---- identity and parameters ---------------------------------------------
  [[nodiscard]] int fd() const noexcept { return ring_fd_; }
  [[nodiscard]] unsigned flags() const noexcept { return setup_flags_; }
  [[nodiscard]] unsigned features() const noexcept { return features_; }
  [[nodiscard]] bool has_feature(unsigned feat) const noexcept { return (features_ & feat) == feat; }
  [[nodiscard]] const io_uring_params& params() const noexcept { return params_; }
  [[nodiscard]] unsigned sq_entries() const noexcept { return sq_.ring_entries; }
  [[nodiscard]] unsigned cq_entries() const noexcept { return cq_.ring_entries; }

  // ---- submission ------------------------------------------------------------
  /// io_uring_get_sqe: the next free SQE, or nullptr when the SQ is full.
  /// The SQE's contents are stale; every prep_* function overwrites them.
  [[nodiscard]] io_uring_sqe* get_sqe() noexcept {
    const unsigned head = (setup_flags_ & IORING_SETUP_SQPOLL) ? detail::load_acquire(sq_.khead)
                                                                : detail::load_relaxed(sq_.khead);
    const unsigned next = sq_.sqe_tail + 1;
    if (next - head > sq_.ring_entries) return nullptr;
    io_uring_sqe* sqe = &sq_.sqes[(sq_.sqe_tail & sq_.ring_mask) << sqe_shift_];
    sq_.sqe_tail = next;
    return sqe;
  }
  /// SQEs prepared (got) but not yet consumed by the kernel.
  [[nodiscard]] unsigned sq_ready() const noexcept {
    const unsigned head = (setup_flags_ & IORING_SETUP_SQPOLL) ? detail::load_acquire(sq_.khead)
                                                                : detail::load_relaxed(sq_.khead);
    return sq_.sqe_tail - head;
  }
  [[nodiscard]] unsigned sq_space_left() const noexcept { return sq_.ring_entries - sq_ready(); }

  /// io_uring_submit: hands prepared SQEs to the kernel. Returns how many were
  /// submitted or -errno. With SQPOLL, enters only to wake the poller.
  int submit() noexcept { return submit_and_wait(0); }
  /// io_uring_submit_and_wait: submit, then wait for at least `wait_nr` CQEs.
  int submit_and_wait(unsigned wait_nr) noexcept {
    const unsigned submitted = flush_sq();
    unsigned enter_flags = 0;
    if (sq_ring_needs_enter(submitted, enter_flags) || wait_nr != 0) {
      if (wait_nr != 0 || (setup_flags_ & IORING_SETUP_IOPOLL)) enter_flags |= IORING_ENTER_GETEVENTS;
      enter_flags |= enter_ring_flags_;
      return sys::io_uring_enter(enter_ring_fd_, submitted, wait_nr, enter_flags, nullptr, _NSIG / 8);
    }
    return static_cast<int>(submitted);
  }
  /// io_uring_submit_and_wait_timeout: submit, wait for `wait_nr` CQEs or the
  /// timeout (-ETIME), optionally with a signal mask. Needs IORING_FEAT_EXT_ARG
  /// (-EOPNOTSUPP without it). On success *cqe_ptr is the first ready CQE.
  int submit_and_wait_timeout(io_uring_cqe** cqe_ptr, unsigned wait_nr,
                              std::chrono::nanoseconds timeout,
                              const sigset_t* sigmask = nullptr) noexcept;
  /// io_uring_submit_and_wait_min_timeout (6.12, IORING_FEAT_MIN_TIMEOUT;
  /// -EINVAL without it): submit, then wait for `wait_nr` CQEs for at most
  /// `min_wait_usec`; once that has passed, return as soon as at least one
  /// CQE has come (at once if one came meanwhile). `timeout` (when given)
  /// bounds the whole wait (-ETIME). On success *cqe_ptr is the first ready CQE.
  int submit_and_wait_min_timeout(io_uring_cqe** cqe_ptr, unsigned wait_nr,
                                  std::optional<std::chrono::nanoseconds> timeout, unsigned min_wait_usec,
                                  const sigset_t* sigmask = nullptr) noexcept;
  /// io_uring_submit_and_wait_reg (6.13): submit, then wait for `wait_nr` CQEs
  /// as registered wait `index` of the ring's wait region says (its timeout,
  /// min_wait_usec and signal mask, read by the kernel in place, not copied
  /// in). -EINVAL without a registered wait region (register_wait_region) or
  /// for an index outside it; otherwise as submit_and_wait_min_timeout.
  int submit_and_wait_reg(io_uring_cqe** cqe_ptr, unsigned wait_nr, unsigned index) noexcept;
  /// The registered wait region, empty when none is registered: the caller
  /// writes an entry (abi::RegWait) before it names the entry in a wait. It
  /// is one entry shorter than the memory registered: the kernel reads the
  /// last entry of a region as its first.
  [[nodiscard]] std::span<abi::RegWait> wait_region() const noexcept { return wait_region_; }
  /// io_uring_sqring_wait: with SQPOLL, wait until the SQ has room.
  int sqring_wait() noexcept;

  // ---- completion ------------------------------------------------------------
  /// CQEs ready to be reaped.
  [[nodiscard]] unsigned cq_ready() const noexcept {
    return detail::load_acquire(cq_.ktail) - detail::load_relaxed(cq_.khead);
  }
  /// io_uring_peek_cqe: the next CQE without waiting, or -EAGAIN. Flushes the
  /// kernel's overflow list (or runs deferred task work) when the SQ flags ask for it.
  int peek_cqe(io_uring_cqe** cqe_ptr) noexcept {
    if (peek_one(cqe_ptr)) return 0;
    if (!cq_needs_flush()) return -EAGAIN;
    const int ret = get_events();
    if (ret < 0) return ret;
    return peek_one(cqe_ptr) ? 0 : -EAGAIN;
  }
  /// io_uring_wait_cqe.
  int wait_cqe(io_uring_cqe** cqe_ptr) noexcept { return wait_cqe_nr(cqe_ptr, 1); }
  /// io_uring_wait_cqe_nr: wait until `wait_nr` CQEs are ready; *cqe_ptr is the first.
  int wait_cqe_nr(io_uring_cqe** cqe_ptr, unsigned wait_nr) noexcept;
  /// io_uring_wait_cqes: submit what is pending and wait for `wait_nr` CQEs or
  /// the timeout (-ETIME).
  int wait_cqes(io_uring_cqe** cqe_ptr, unsigned wait_nr, std::chrono::nanoseconds timeout,
                const sigset_t* sigmask = nullptr) noexcept {
    return submit_and_wait_timeout(cqe_ptr, wait_nr, timeout, sigmask);
  }
  /// io_uring_wait_cqe_timeout.
  int wait_cqe_timeout(io_uring_cqe** cqe_ptr, std::chrono::nanoseconds timeout) noexcept {
    return submit_and_wait_timeout(cqe_ptr, 1, timeout);
  }
  /// io_uring_peek_batch_cqe: fills `out` with up to out.size() ready CQEs
  /// without consuming them; returns the count. Call cq_advance(count) after.
  unsigned peek_batch_cqe(std::span<io_uring_cqe*> out) noexcept {
    unsigned n = fill_batch(out);
    if (n == 0 && cq_needs_flush()) {
      if (get_events() >= 0) n = fill_batch(out);
    }
    return n;
  }
  /// io_uring_for_each_cqe + io_uring_cq_advance: calls f(const io_uring_cqe&)
  /// for every ready CQE, then publishes the new head once. Returns the count.
  /// If f throws, the CQEs up to and including the one it threw on are
  /// consumed (the head is published past it) before the exception leaves.
  template <class F>
  unsigned for_each_cqe(F&& f) noexcept(noexcept(f(std::declval<const io_uring_cqe&>()))) {
    const unsigned first = detail::load_relaxed(cq_.khead);
    const unsigned tail = detail::load_acquire(cq_.ktail);
    if (first == tail) return 0;
    if constexpr (noexcept(f(std::declval<const io_uring_cqe&>()))) {
      for (unsigned head = first; head != tail; ++head) f(cq_.cqes[(head & cq_.ring_mask) << cqe_shift_]);
    } else {
      // Publishes on the way out, normal or not; the CQE being handled stays
      // ours (unpublished) until f is done with it.
      struct Publish {
        unsigned* khead;
        unsigned head;
        ~Publish() { detail::store_release(khead, head); }
      } pub{cq_.khead, first};
      while (pub.head != tail) {
        const io_uring_cqe& cqe = cq_.cqes[(pub.head & cq_.ring_mask) << cqe_shift_];
        ++pub.head;
        f(cqe);
      }
      return tail - first;
    }
    detail::store_release(cq_.khead, tail);
    return tail - first;
  }
  /// io_uring_cqe_seen.
  void cqe_seen(const io_uring_cqe* /*cqe*/) noexcept { cq_advance(1); }
  /// io_uring_cq_advance.
  void cq_advance(unsigned nr) noexcept {
    if (nr) detail::store_release(cq_.khead, detail::load_relaxed(cq_.khead) + nr);
  }
  /// io_uring_cq_has_overflow: the kernel holds CQEs that did not fit.
  [[nodiscard]] bool cq_has_overflow() const noexcept {
    return detail::load_relaxed(sq_.kflags) & IORING_SQ_CQ_OVERFLOW;
  }
  /// io_uring_get_events: flush overflowed CQEs and run deferred task work.
  int get_events() noexcept {
    return sys::io_uring_enter(enter_ring_fd_, 0, 0, IORING_ENTER_GETEVENTS | enter_ring_flags_,
                               nullptr, _NSIG / 8);
  }
  /// io_uring_submit_and_get_events.
  int submit_and_get_events() noexcept {
    const unsigned submitted = flush_sq();
    unsigned enter_flags = IORING_ENTER_GETEVENTS | enter_ring_flags_;
    unsigned ignored = 0;
    if (sq_ring_needs_enter(submitted, ignored)) enter_flags |= ignored;
    return sys::io_uring_enter(enter_ring_fd_, submitted, 0, enter_flags, nullptr, _NSIG / 8);
  }
  /// The kernel holds completions that only an enter with GETEVENTS delivers:
  /// overflowed CQEs, or (with TASKRUN_FLAG) pending deferred task work.
  [[nodiscard]] bool cq_needs_flush() const noexcept {
    return detail::load_relaxed(sq_.kflags) & (IORING_SQ_CQ_OVERFLOW | IORING_SQ_TASKRUN);
  }
  [[nodiscard]] bool cq_eventfd_enabled() const noexcept {
    return !cq_.kflags || !(detail::load_relaxed(cq_.kflags) & IORING_CQ_EVENTFD_DISABLED);
  }
  int cq_eventfd_toggle(bool enabled) noexcept;

  // ---- registration (io_uring_register_*) ----------------------------------
  int register_buffers(std::span<const iovec> iovecs) noexcept;
  int register_buffers_tags(std::span<const iovec> iovecs, std::span<const std::uint64_t> tags) noexcept;
  int register_buffers_sparse(unsigned nr) noexcept;
  int register_buffers_update_tag(unsigned offset, std::span<const iovec> iovecs,
                                  std::span<const std::uint64_t> tags) noexcept;
  int unregister_buffers() noexcept;
  int register_files(std::span<const int> fds) noexcept;
  int register_files_tags(std::span<const int> fds, std::span<const std::uint64_t> tags) noexcept;
  int register_files_sparse(unsigned nr) noexcept;
  /// Returns the number of slots updated or -errno.
  int register_files_update(unsigned offset, std::span<const int> fds) noexcept;
  int register_files_update_tag(unsigned offset, std::span<const int> fds,
                                std::span<const std::uint64_t> tags) noexcept;
  int unregister_files() noexcept;
  int register_file_alloc_range(unsigned offset, unsigned len) noexcept;
  int register_eventfd(int efd) noexcept;
  int register_eventfd_async(int efd) noexcept;
  int unregister_eventfd() noexcept;
  /// Returns the personality id or -errno.
  int register_personality() noexcept;
  int unregister_personality(int id) noexcept;
  int register_iowq_aff(const cpu_set_t& mask) noexcept;
  int unregister_iowq_aff() noexcept;
  /// values[0] bounded, values[1] unbounded; 0 reads the current value. Both
  /// entries are updated with the previous limits.
  int register_iowq_max_workers(unsigned (&values)[2]) noexcept;
  /// io_uring_register_ring_fd: later enters use the registered index.
  int register_ring_fd() noexcept;
  int unregister_ring_fd() noexcept;
  [[nodiscard]] bool ring_fd_registered() const noexcept {
    return enter_ring_flags_ & IORING_ENTER_REGISTERED_RING;
  }
  int register_sync_cancel(io_uring_sync_cancel_reg& reg) noexcept;
  int register_buf_ring(io_uring_buf_reg& reg, unsigned flags = 0) noexcept;
  int unregister_buf_ring(int bgid) noexcept;
  /// io_uring_buf_ring_head: the kernel's head of buffer group `bgid`.
  int buf_ring_head(int bgid, std::uint16_t& head) noexcept;
  int register_restrictions(std::span<const io_uring_restriction> res) noexcept;
  /// io_uring_register_napi / io_uring_unregister_napi (6.9+): NAPI busy polling
  /// while waiting; the kernel writes the previous settings into `napi`.
  int register_napi(abi::Napi& napi) noexcept;
  int unregister_napi(abi::Napi& napi) noexcept;
  int enable_rings() noexcept;
  /// io_uring_register_region (6.13): IORING_REGISTER_MEM_REGION with a raw
  /// argument (one region; the kernel writes the region's mmap offset back).
  int register_region(abi::MemRegionReg& reg) noexcept;
  /// Registers `waits` as the ring's wait region for submit_and_wait_reg: the
  /// memory must be page-aligned and whole pages, and stay mapped (the kernel
  /// pins it) until the ring is destroyed. Entries 0 .. size - 2 can be named
  /// (wait_region()). Only on a ring created with
  /// IORING_SETUP_R_DISABLED and not enabled yet; -EINVAL otherwise, and on
  /// kernels before 6.13 (no IORING_REGISTER_MEM_REGION).
  int register_wait_region(std::span<abi::RegWait> waits) noexcept;
  /// io_uring_register_probe / io_uring_get_probe_ring.
  [[nodiscard]] Probe probe() const;
  /// Raw io_uring_register(2) on this ring.
  int register_raw(unsigned opcode, const void* arg, unsigned nr_args) noexcept {
    return sys::io_uring_register(register_fd(), opcode | register_flags(), arg, nr_args);
  }

 private:
  /// Submits and waits through io_uring_enter with an IORING_ENTER_EXT_ARG
  /// argument: a GeteventsArg, or with IORING_ENTER_EXT_ARG_REG in `flags`
  /// the offset of a registered wait.
  int enter_ext_arg(io_uring_cqe** cqe_ptr, unsigned wait_nr, unsigned flags, const void* arg,
                    std::size_t argsz) noexcept;

  struct SubmissionQueue {
    unsigned* khead = nullptr;
    unsigned* ktail = nullptr;
    unsigned* kflags = nullptr;
    unsigned* kdropped = nullptr;
    unsigned* array = nullptr;
    io_uring_sqe* sqes = nullptr;
    unsigned sqe_head = 0;
    unsigned sqe_tail = 0;
    unsigned ring_mask = 0;
    unsigned ring_entries = 0;
    std::size_t ring_sz = 0;
    void* ring_ptr = nullptr;
    std::size_t sqes_sz = 0;
  };
  struct CompletionQueue {
    unsigned* khead = nullptr;
    unsigned* ktail = nullptr;
    unsigned* kflags = nullptr;
    unsigned* koverflow = nullptr;
    io_uring_cqe* cqes = nullptr;
    unsigned ring_mask = 0;
    unsigned ring_entries = 0;
    std::size_t ring_sz = 0;
    void* ring_ptr = nullptr;
  };

  void setup(unsigned entries, io_uring_params& p);
  void map_rings(const io_uring_params& p);
  void release() noexcept;

  /// Publishes prepared SQEs to the kernel (tail store with release ordering)
  /// and returns how many the kernel has not consumed yet.
  unsigned flush_sq() noexcept {
    const unsigned tail = sq_.sqe_tail;
    if (sq_.sqe_head != tail) {
      sq_.sqe_head = tail;
      detail::store_release(sq_.ktail, tail);
    }
    return tail - detail::load_relaxed(sq_.khead);
  }
  bool sq_ring_needs_enter(unsigned submitted, unsigned& enter_flags) const noexcept {
    if (submitted == 0) return false;
    if (!(setup_flags_ & IORING_SETUP_SQPOLL)) return true;
    // The kernel's poller sets NEED_WAKEUP before sleeping; order our tail
    // store before reading the flag.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (detail::load_relaxed(sq_.kflags) & IORING_SQ_NEED_WAKEUP) {
      enter_flags |= IORING_ENTER_SQ_WAKEUP;
      return true;
    }
    return false;
  }
  bool peek_one(io_uring_cqe** cqe_ptr) noexcept {
    const unsigned head = detail::load_relaxed(cq_.khead);
    if (detail::load_acquire(cq_.ktail) == head) return false;
    *cqe_ptr = &cq_.cqes[(head & cq_.ring_mask) << cqe_shift_];
    return true;
  }
  unsigned fill_batch(std::span<io_uring_cqe*> out) noexcept {
    const unsigned head = detail::load_relaxed(cq_.khead);
    unsigned ready = detail::load_acquire(cq_.ktail) - head;
    if (ready > out.size()) ready = static_cast<unsigned>(out.size());
    for (unsigned i = 0; i < ready; ++i) out[i] = &cq_.cqes[((head + i) & cq_.ring_mask) << cqe_shift_];
    return ready;
  }
  [[nodiscard]] int register_fd() const noexcept { return enter_ring_fd_; }
  [[nodiscard]] unsigned register_flags() const noexcept {
    return ring_fd_registered() ? IORING_REGISTER_USE_REGISTERED_RING : 0U;
  }

  SubmissionQueue sq_{};
  CompletionQueue cq_{};
  io_uring_params params_{};
  unsigned setup_flags_ = 0;
  unsigned features_ = 0;
  unsigned sqe_shift_ = 0;  // 1 with SQE128: SQE slots are two io_uring_sqe wide
  unsigned cqe_shift_ = 0;  // 1 with CQE32
  int ring_fd_ = -1;
  int enter_ring_fd_ = -1;
  unsigned enter_ring_flags_ = 0;
  std::span<abi::RegWait> wait_region_{};
};

// ---- SQE / CQE accessors (io_uring_sqe_set_*, io_uring_cqe_get_*) -----------
inline void sqe_set_data64(io_uring_sqe* sqe, std::uint64_t data) noexcept { sqe->user_data = data; }
inline void sqe_set_data(io_uring_sqe* sqe, const void* data) noexcept {
  sqe->user_data = reinterpret_cast<std::uintptr_t>(data);
}
inline void sqe_set_flags(io_uring_sqe* sqe, unsigned flags) noexcept {
  sqe->flags = static_cast<std::uint8_t>(flags);
}
inline void sqe_add_flags(io_uring_sqe* sqe, unsigned flags) noexcept {
  sqe->flags = static_cast<std::uint8_t>(sqe->flags | flags);
}
inline std::uint64_t cqe_get_data64(const io_uring_cqe* cqe) noexcept { return cqe->user_data; }
template <class T = void>
inline T* cqe_get_data(const io_uring_cqe* cqe) noexcept {
  return reinterpret_cast<T*>(static_cast<std::uintptr_t>(cqe->user_data));
}
/// IORING_CQE_F_MORE: the multishot request that produced this CQE stays armed.
inline bool cqe_has_more(const io_uring_cqe* cqe) noexcept { return cqe->flags & IORING_CQE_F_MORE; }
/// IORING_CQE_F_BUFFER: a provided buffer was consumed; see cqe_buffer_id.
inline bool cqe_has_buffer(const io_uring_cqe* cqe) noexcept { return cqe->flags & IORING_CQE_F_BUFFER; }
inline std::uint16_t cqe_buffer_id(const io_uring_cqe* cqe) noexcept {
  return static_cast<std::uint16_t>(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
}
/// IORING_CQE_F_NOTIF: a zero-copy send's buffer may be reused now.
inline bool cqe_is_notif(const io_uring_cqe* cqe) noexcept { return cqe->flags & IORING_CQE_F_NOTIF; }
/// IORING_CQE_F_SOCK_NONEMPTY: more data was waiting in the socket.
inline bool cqe_sock_nonempty(const io_uring_cqe* cqe) noexcept {
  return cqe->flags & IORING_CQE_F_SOCK_NONEMPTY;
}
/// IORING_CQE_F_BUF_MORE: an incrementally consumed buffer is not finished yet.
inline bool cqe_buf_more(const io_uring_cqe* cqe) noexcept { return cqe->flags & IORING_CQE_F_BUF_MORE; }

}  // namespace ringshard::uring
