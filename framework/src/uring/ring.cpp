#include "ringshard/framework/uring/ring.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace ringshard::uring {

namespace {

struct FlagName {
  unsigned bit;
  const char* name;
};

constexpr FlagName kSetupFlags[] = {
    {IORING_SETUP_IOPOLL, "IOPOLL"},
    {IORING_SETUP_SQPOLL, "SQPOLL"},
    {IORING_SETUP_SQ_AFF, "SQ_AFF"},
    {IORING_SETUP_CQSIZE, "CQSIZE"},
    {IORING_SETUP_CLAMP, "CLAMP"},
    {IORING_SETUP_ATTACH_WQ, "ATTACH_WQ"},
    {IORING_SETUP_R_DISABLED, "R_DISABLED"},
    {IORING_SETUP_SUBMIT_ALL, "SUBMIT_ALL"},
    {IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN"},
    {IORING_SETUP_TASKRUN_FLAG, "TASKRUN_FLAG"},
    {IORING_SETUP_SQE128, "SQE128"},
    {IORING_SETUP_CQE32, "CQE32"},
    {IORING_SETUP_SINGLE_ISSUER, "SINGLE_ISSUER"},
    {IORING_SETUP_DEFER_TASKRUN, "DEFER_TASKRUN"},
    {IORING_SETUP_NO_MMAP, "NO_MMAP"},
    {IORING_SETUP_REGISTERED_FD_ONLY, "REGISTERED_FD_ONLY"},
    {IORING_SETUP_NO_SQARRAY, "NO_SQARRAY"},
    {IORING_SETUP_HYBRID_IOPOLL, "HYBRID_IOPOLL"},
};

// Flags whose memory layout this Ring does not manage (the application would
// have to supply the ring memory or give up the ring fd).
constexpr unsigned kUnsupportedFlags = IORING_SETUP_NO_MMAP | IORING_SETUP_REGISTERED_FD_ONLY;

int try_setup(unsigned entries, io_uring_params p) noexcept {
  const int fd = sys::io_uring_setup(entries, &p);
  if (fd >= 0) ::close(fd);
  return fd < 0 ? fd : 0;
}

// When setup fails, find the first flag (in bit order) whose addition makes
// the kernel refuse, so that the error names it.
std::string diagnose(unsigned entries, const io_uring_params& requested, int err) {
  std::string what = "io_uring_setup(entries=" + std::to_string(entries) +
                     ", flags=" + setup_flags_name(requested.flags) + ")";
  if (try_setup(entries, io_uring_params{}) < 0) {
    return what + ": io_uring itself is unavailable (kernel.io_uring_disabled, seccomp or an old kernel)";
  }
  io_uring_params trial = requested;
  trial.flags = 0;
  for (const auto& f : kSetupFlags) {
    if (!(requested.flags & f.bit)) continue;
    trial.flags |= f.bit;
    if (try_setup(entries, trial) < 0) {
      unsigned before = trial.flags & ~f.bit;
      return what + ": the kernel refused IORING_SETUP_" + f.name +
             (before ? " (together with " + setup_flags_name(before) + ")" : std::string()) +
             "; drop that flag or pick a fallback";
    }
  }
  (void)err;
  return what + ": refused for entries or parameters (check entries, cq_entries, sq_thread_cpu, wq_fd)";
}

}  // namespace

std::string setup_flags_name(unsigned flags) {
  if (flags == 0) return "0";
  std::string out;
  for (const auto& f : kSetupFlags) {
    if (flags & f.bit) {
      if (!out.empty()) out += '|';
      out += f.name;
      flags &= ~f.bit;
    }
  }
  if (flags) {
    if (!out.empty()) out += '|';
    out += "0x" + [&] {
      char buf[16];
      std::snprintf(buf, sizeof buf, "%x", flags);
      return std::string(buf);
    }();
  }
  return out;
}

Ring::Ring(unsigned entries, const SetupOptions& options) {
  io_uring_params p{};
  p.flags = options.flags;
  if (options.cq_entries) {
    p.flags |= IORING_SETUP_CQSIZE;
    p.cq_entries = options.cq_entries;
  }
  if (options.attach_wq_fd >= 0) {
    p.flags |= IORING_SETUP_ATTACH_WQ;
    p.wq_fd = static_cast<unsigned>(options.attach_wq_fd);
  }
  p.sq_thread_cpu = options.sq_thread_cpu;
  p.sq_thread_idle = static_cast<unsigned>(options.sq_thread_idle.count());
  setup(entries, p);
}

Ring::Ring(unsigned entries, io_uring_params& params) { setup(entries, params); }

void Ring::setup(unsigned entries, io_uring_params& p) {
  if (p.flags & kUnsupportedFlags) {
    throw std::system_error(EINVAL, std::generic_category(),
                            "ringshard::uring::Ring does not support " +
                                setup_flags_name(p.flags & kUnsupportedFlags) +
                                " (the ring maps its own memory and keeps its fd)");
  }
  const int fd = sys::io_uring_setup(entries, &p);
  if (fd < 0) throw std::system_error(-fd, std::generic_category(), diagnose(entries, p, -fd));
  ring_fd_ = fd;
  enter_ring_fd_ = fd;
  params_ = p;
  setup_flags_ = p.flags;
  features_ = p.features;
  sqe_shift_ = (p.flags & IORING_SETUP_SQE128) ? 1 : 0;
  cqe_shift_ = (p.flags & IORING_SETUP_CQE32) ? 1 : 0;
  try {
    map_rings(p);
  } catch (...) {
    release();
    throw;
  }
}

void Ring::map_rings(const io_uring_params& p) {
  const std::size_t cqe_size = sizeof(io_uring_cqe) << cqe_shift_;
  // Without the SQ index array the SQ ring ends at its last header field.
  sq_.ring_sz = (p.flags & IORING_SETUP_NO_SQARRAY) ? p.sq_off.flags + sizeof(unsigned)
                                                     : p.sq_off.array + p.sq_entries * sizeof(unsigned);
  cq_.ring_sz = p.cq_off.cqes + p.cq_entries * cqe_size;
  const bool single = p.features & IORING_FEAT_SINGLE_MMAP;
  if (single) {
    sq_.ring_sz = cq_.ring_sz = std::max(sq_.ring_sz, cq_.ring_sz);
  }
  void* sq_ptr = ::mmap(nullptr, sq_.ring_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                        ring_fd_, IORING_OFF_SQ_RING);
  if (sq_ptr == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap of the SQ ring");
  sq_.ring_ptr = sq_ptr;
  if (single) {
    cq_.ring_ptr = sq_ptr;
  } else {
    void* cq_ptr = ::mmap(nullptr, cq_.ring_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                          ring_fd_, IORING_OFF_CQ_RING);
    if (cq_ptr == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap of the CQ ring");
    cq_.ring_ptr = cq_ptr;
  }
  auto* sqb = static_cast<char*>(sq_.ring_ptr);
  sq_.khead = reinterpret_cast<unsigned*>(sqb + p.sq_off.head);
  sq_.ktail = reinterpret_cast<unsigned*>(sqb + p.sq_off.tail);
  sq_.ring_mask = *reinterpret_cast<unsigned*>(sqb + p.sq_off.ring_mask);
  sq_.ring_entries = *reinterpret_cast<unsigned*>(sqb + p.sq_off.ring_entries);
  sq_.kflags = reinterpret_cast<unsigned*>(sqb + p.sq_off.flags);
  sq_.kdropped = reinterpret_cast<unsigned*>(sqb + p.sq_off.dropped);
  if (!(p.flags & IORING_SETUP_NO_SQARRAY)) sq_.array = reinterpret_cast<unsigned*>(sqb + p.sq_off.array);

  sq_.sqes_sz = (sizeof(io_uring_sqe) << sqe_shift_) * p.sq_entries;
  void* sqes = ::mmap(nullptr, sq_.sqes_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_fd_,
                      IORING_OFF_SQES);
  if (sqes == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap of the SQE array");
  sq_.sqes = static_cast<io_uring_sqe*>(sqes);

  auto* cqb = static_cast<char*>(cq_.ring_ptr);
  cq_.khead = reinterpret_cast<unsigned*>(cqb + p.cq_off.head);
  cq_.ktail = reinterpret_cast<unsigned*>(cqb + p.cq_off.tail);
  cq_.ring_mask = *reinterpret_cast<unsigned*>(cqb + p.cq_off.ring_mask);
  cq_.ring_entries = *reinterpret_cast<unsigned*>(cqb + p.cq_off.ring_entries);
  cq_.koverflow = reinterpret_cast<unsigned*>(cqb + p.cq_off.overflow);
  cq_.cqes = reinterpret_cast<io_uring_cqe*>(cqb + p.cq_off.cqes);
  if (p.cq_off.flags) cq_.kflags = reinterpret_cast<unsigned*>(cqb + p.cq_off.flags);

  // SQ slot i always carries SQE i: the indirection array is an identity map.
  if (sq_.array) {
    for (unsigned i = 0; i < sq_.ring_entries; ++i) sq_.array[i] = i;
  }
  sq_.sqe_head = sq_.sqe_tail = detail::load_relaxed(sq_.khead);
}

void Ring::release() noexcept {
  // A registered ring fd holds a reference to the ring: drop it (this works
  // from the registering thread; other threads' slots go when they exit).
  if (ring_fd_ >= 0 && ring_fd_registered()) (void)unregister_ring_fd();
  if (sq_.sqes) ::munmap(sq_.sqes, sq_.sqes_sz);
  if (cq_.ring_ptr && cq_.ring_ptr != sq_.ring_ptr) ::munmap(cq_.ring_ptr, cq_.ring_sz);
  if (sq_.ring_ptr) ::munmap(sq_.ring_ptr, sq_.ring_sz);
  if (ring_fd_ >= 0) ::close(ring_fd_);
  sq_ = {};
  cq_ = {};
  ring_fd_ = enter_ring_fd_ = -1;
  enter_ring_flags_ = 0;
  wait_region_ = {};
}

Ring::~Ring() { release(); }

Ring::Ring(Ring&& other) noexcept
    : sq_(std::exchange(other.sq_, {})),
      cq_(std::exchange(other.cq_, {})),
      params_(other.params_),
      setup_flags_(other.setup_flags_),
      features_(other.features_),
      sqe_shift_(other.sqe_shift_),
      cqe_shift_(other.cqe_shift_),
      ring_fd_(std::exchange(other.ring_fd_, -1)),
      enter_ring_fd_(std::exchange(other.enter_ring_fd_, -1)),
      enter_ring_flags_(std::exchange(other.enter_ring_flags_, 0)),
      wait_region_(std::exchange(other.wait_region_, {})) {}

Ring& Ring::operator=(Ring&& other) noexcept {
  if (this != &other) {
    release();
    sq_ = std::exchange(other.sq_, {});
    cq_ = std::exchange(other.cq_, {});
    params_ = other.params_;
    setup_flags_ = other.setup_flags_;
    features_ = other.features_;
    sqe_shift_ = other.sqe_shift_;
    cqe_shift_ = other.cqe_shift_;
    ring_fd_ = std::exchange(other.ring_fd_, -1);
    enter_ring_fd_ = std::exchange(other.enter_ring_fd_, -1);
    enter_ring_flags_ = std::exchange(other.enter_ring_flags_, 0);
    wait_region_ = std::exchange(other.wait_region_, {});
  }
  return *this;
}

int Ring::submit_and_wait_timeout(io_uring_cqe** cqe_ptr, unsigned wait_nr,
                                  std::chrono::nanoseconds timeout, const sigset_t* sigmask) noexcept {
  if (!(features_ & IORING_FEAT_EXT_ARG)) return -EOPNOTSUPP;
  const Timespec ts(timeout);
  abi::GeteventsArg arg;
  arg.sigmask = reinterpret_cast<std::uintptr_t>(sigmask);
  arg.sigmask_sz = _NSIG / 8;
  arg.ts = reinterpret_cast<std::uintptr_t>(&ts);
  return enter_ext_arg(cqe_ptr, wait_nr, 0, &arg, sizeof arg);
}

int Ring::submit_and_wait_min_timeout(io_uring_cqe** cqe_ptr, unsigned wait_nr,
                                      std::optional<std::chrono::nanoseconds> timeout, unsigned min_wait_usec,
                                      const sigset_t* sigmask) noexcept {
  if (!(features_ & IORING_FEAT_MIN_TIMEOUT)) return -EINVAL;
  Timespec ts;
  abi::GeteventsArg arg;
  arg.sigmask = reinterpret_cast<std::uintptr_t>(sigmask);
  arg.sigmask_sz = _NSIG / 8;
  arg.min_wait_usec = min_wait_usec;
  if (timeout) {
    ts = Timespec(*timeout);
    arg.ts = reinterpret_cast<std::uintptr_t>(&ts);
  }
  return enter_ext_arg(cqe_ptr, wait_nr, 0, &arg, sizeof arg);
}

int Ring::submit_and_wait_reg(io_uring_cqe** cqe_ptr, unsigned wait_nr, unsigned index) noexcept {
  if (index >= wait_region_.size()) return -EINVAL;
  // The argument is the entry's byte offset in the region, not a pointer.
  const auto offset = static_cast<std::uintptr_t>(index) * sizeof(abi::RegWait);
  return enter_ext_arg(cqe_ptr, wait_nr, IORING_ENTER_EXT_ARG_REG, reinterpret_cast<const void*>(offset),
                       sizeof(abi::RegWait));
}

int Ring::enter_ext_arg(io_uring_cqe** cqe_ptr, unsigned wait_nr, unsigned flags, const void* arg,
                        std::size_t argsz) noexcept {
  const unsigned submitted = flush_sq();
  unsigned enter_flags = IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG | flags | enter_ring_flags_;
  unsigned wake = 0;
  if (sq_ring_needs_enter(submitted, wake)) enter_flags |= wake;
  // Already satisfied: no need to sleep, but still submit.
  if (wait_nr != 0 && cq_ready() >= wait_nr && submitted == 0) {
    return peek_one(cqe_ptr) ? 0 : -EAGAIN;
  }
  const int ret = sys::io_uring_enter(enter_ring_fd_, submitted, wait_nr, enter_flags, arg, argsz);
  if (peek_one(cqe_ptr)) return 0;
  if (ret < 0) return ret;
  return wait_nr == 0 ? -EAGAIN : -ETIME;
}

int Ring::wait_cqe_nr(io_uring_cqe** cqe_ptr, unsigned wait_nr) noexcept {
  for (;;) {
    const unsigned ready = cq_ready();
    if (ready >= wait_nr && ready > 0) return peek_one(cqe_ptr) ? 0 : -EAGAIN;
    if (wait_nr == 0) return peek_cqe(cqe_ptr);
    // Submit anything pending as well: a waiter that forgot to submit would
    // otherwise sleep forever.
    const unsigned submitted = flush_sq();
    unsigned enter_flags = IORING_ENTER_GETEVENTS | enter_ring_flags_;
    unsigned wake = 0;
    if (sq_ring_needs_enter(submitted, wake)) enter_flags |= wake;
    const int ret = sys::io_uring_enter(enter_ring_fd_, submitted, wait_nr - ready, enter_flags, nullptr,
                                        _NSIG / 8);
    if (ret < 0) return ret;
  }
}

int Ring::cq_eventfd_toggle(bool enabled) noexcept {
  if (enabled == cq_eventfd_enabled()) return 0;
  if (!cq_.kflags) return -EOPNOTSUPP;
  unsigned f = detail::load_relaxed(cq_.kflags);
  f = enabled ? (f & ~IORING_CQ_EVENTFD_DISABLED) : (f | IORING_CQ_EVENTFD_DISABLED);
  std::atomic_ref<unsigned>(*cq_.kflags).store(f, std::memory_order_relaxed);
  return 0;
}

// ---- registration ------------------------------------------------------------

int Ring::register_buffers(std::span<const iovec> iovecs) noexcept {
  return register_raw(IORING_REGISTER_BUFFERS, iovecs.data(), static_cast<unsigned>(iovecs.size()));
}

int Ring::register_buffers_tags(std::span<const iovec> iovecs, std::span<const std::uint64_t> tags) noexcept {
  io_uring_rsrc_register reg{};
  reg.nr = static_cast<unsigned>(iovecs.size());
  reg.data = reinterpret_cast<std::uintptr_t>(iovecs.data());
  reg.tags = reinterpret_cast<std::uintptr_t>(tags.data());
  return register_raw(IORING_REGISTER_BUFFERS2, &reg, sizeof reg);
}

int Ring::register_buffers_sparse(unsigned nr) noexcept {
  io_uring_rsrc_register reg{};
  reg.flags = IORING_RSRC_REGISTER_SPARSE;
  reg.nr = nr;
  return register_raw(IORING_REGISTER_BUFFERS2, &reg, sizeof reg);
}

int Ring::register_buffers_update_tag(unsigned offset, std::span<const iovec> iovecs,
                                      std::span<const std::uint64_t> tags) noexcept {
  io_uring_rsrc_update2 up{};
  up.offset = offset;
  up.data = reinterpret_cast<std::uintptr_t>(iovecs.data());
  up.tags = reinterpret_cast<std::uintptr_t>(tags.data());
  up.nr = static_cast<unsigned>(iovecs.size());
  return register_raw(IORING_REGISTER_BUFFERS_UPDATE, &up, sizeof up);
}

int Ring::unregister_buffers() noexcept { return register_raw(IORING_UNREGISTER_BUFFERS, nullptr, 0); }

int Ring::register_files(std::span<const int> fds) noexcept {
  return register_raw(IORING_REGISTER_FILES, fds.data(), static_cast<unsigned>(fds.size()));
}

int Ring::register_files_tags(std::span<const int> fds, std::span<const std::uint64_t> tags) noexcept {
  io_uring_rsrc_register reg{};
  reg.nr = static_cast<unsigned>(fds.size());
  reg.data = reinterpret_cast<std::uintptr_t>(fds.data());
  reg.tags = reinterpret_cast<std::uintptr_t>(tags.data());
  return register_raw(IORING_REGISTER_FILES2, &reg, sizeof reg);
}

int Ring::register_files_sparse(unsigned nr) noexcept {
  io_uring_rsrc_register reg{};
  reg.flags = IORING_RSRC_REGISTER_SPARSE;
  reg.nr = nr;
  return register_raw(IORING_REGISTER_FILES2, &reg, sizeof reg);
}

int Ring::register_files_update(unsigned offset, std::span<const int> fds) noexcept {
  io_uring_files_update up{};
  up.offset = offset;
  up.fds = reinterpret_cast<std::uintptr_t>(fds.data());
  return register_raw(IORING_REGISTER_FILES_UPDATE, &up, static_cast<unsigned>(fds.size()));
}

int Ring::register_files_update_tag(unsigned offset, std::span<const int> fds,
                                    std::span<const std::uint64_t> tags) noexcept {
  io_uring_rsrc_update2 up{};
  up.offset = offset;
  up.data = reinterpret_cast<std::uintptr_t>(fds.data());
  up.tags = reinterpret_cast<std::uintptr_t>(tags.data());
  up.nr = static_cast<unsigned>(fds.size());
  return register_raw(IORING_REGISTER_FILES_UPDATE2, &up, sizeof up);
}

int Ring::unregister_files() noexcept { return register_raw(IORING_UNREGISTER_FILES, nullptr, 0); }

int Ring::register_file_alloc_range(unsigned offset, unsigned len) noexcept {
  io_uring_file_index_range range{};
  range.off = offset;
  range.len = len;
  return register_raw(IORING_REGISTER_FILE_ALLOC_RANGE, &range, 0);
}

int Ring::register_eventfd(int efd) noexcept { return register_raw(IORING_REGISTER_EVENTFD, &efd, 1); }
int Ring::register_eventfd_async(int efd) noexcept {
  return register_raw(IORING_REGISTER_EVENTFD_ASYNC, &efd, 1);
}
int Ring::unregister_eventfd() noexcept { return register_raw(IORING_UNREGISTER_EVENTFD, nullptr, 0); }

int Ring::register_personality() noexcept { return register_raw(IORING_REGISTER_PERSONALITY, nullptr, 0); }
int Ring::unregister_personality(int id) noexcept {
  return register_raw(IORING_UNREGISTER_PERSONALITY, nullptr, static_cast<unsigned>(id));
}

int Ring::register_iowq_aff(const cpu_set_t& mask) noexcept {
  return register_raw(IORING_REGISTER_IOWQ_AFF, &mask, sizeof mask);
}
int Ring::unregister_iowq_aff() noexcept { return register_raw(IORING_UNREGISTER_IOWQ_AFF, nullptr, 0); }

int Ring::register_iowq_max_workers(unsigned (&values)[2]) noexcept {
  return register_raw(IORING_REGISTER_IOWQ_MAX_WORKERS, values, 2);
}

int Ring::register_ring_fd() noexcept {
  if (ring_fd_registered()) return -EEXIST;
  io_uring_rsrc_update up{};
  up.offset = -1U;  // let the kernel pick a slot
  up.data = static_cast<std::uint64_t>(ring_fd_);
  const int ret = sys::io_uring_register(ring_fd_, IORING_REGISTER_RING_FDS, &up, 1);
  if (ret == 1) {
    enter_ring_fd_ = static_cast<int>(up.offset);
    enter_ring_flags_ |= IORING_ENTER_REGISTERED_RING;
  }
  return ret;
}

int Ring::unregister_ring_fd() noexcept {
  if (!ring_fd_registered()) return -EINVAL;
  io_uring_rsrc_update up{};
  up.offset = static_cast<unsigned>(enter_ring_fd_);
  const int ret = sys::io_uring_register(ring_fd_, IORING_UNREGISTER_RING_FDS, &up, 1);
  if (ret == 1) {
    enter_ring_fd_ = ring_fd_;
    enter_ring_flags_ &= ~IORING_ENTER_REGISTERED_RING;
  }
  return ret;
}

int Ring::register_sync_cancel(io_uring_sync_cancel_reg& reg) noexcept {
  return register_raw(IORING_REGISTER_SYNC_CANCEL, &reg, 1);
}

int Ring::register_buf_ring(io_uring_buf_reg& reg, unsigned flags) noexcept {
  reg.pad = static_cast<std::uint16_t>(reg.pad | flags);  // "flags" in 6.3+ headers
  return register_raw(IORING_REGISTER_PBUF_RING, &reg, 1);
}

int Ring::unregister_buf_ring(int bgid) noexcept {
  io_uring_buf_reg reg{};
  reg.bgid = static_cast<std::uint16_t>(bgid);
  return register_raw(IORING_UNREGISTER_PBUF_RING, &reg, 1);
}

int Ring::buf_ring_head(int bgid, std::uint16_t& head) noexcept {
  // struct io_uring_buf_status (6.8): buf_group, head, resv[8].
  struct {
    std::uint32_t buf_group;
    std::uint32_t head;
    std::uint32_t resv[8];
  } status{};
  status.buf_group = static_cast<std::uint32_t>(bgid);
  const int ret = register_raw(abi::register_pbuf_status, &status, 1);
  if (ret == 0) head = static_cast<std::uint16_t>(status.head);
  return ret;
}

int Ring::register_restrictions(std::span<const io_uring_restriction> res) noexcept {
  return register_raw(IORING_REGISTER_RESTRICTIONS, res.data(), static_cast<unsigned>(res.size()));
}

int Ring::register_napi(abi::Napi& napi) noexcept { return register_raw(abi::register_napi, &napi, 1); }

int Ring::unregister_napi(abi::Napi& napi) noexcept { return register_raw(abi::unregister_napi, &napi, 1); }

int Ring::enable_rings() noexcept { return register_raw(IORING_REGISTER_ENABLE_RINGS, nullptr, 0); }

int Ring::register_region(abi::MemRegionReg& reg) noexcept {
  return register_raw(abi::register_mem_region, &reg, 1);
}

int Ring::register_wait_region(std::span<abi::RegWait> waits) noexcept {
  if (!wait_region_.empty()) return -EEXIST;
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto addr = reinterpret_cast<std::uintptr_t>(waits.data());
  const std::size_t bytes = waits.size_bytes();
  if (waits.empty() || addr % page != 0 || bytes % page != 0) return -EINVAL;
  abi::RegionDesc desc;
  desc.user_addr = addr;
  desc.size = bytes;
  desc.flags = abi::mem_region_type_user;
  abi::MemRegionReg reg;
  reg.region_uptr = reinterpret_cast<std::uintptr_t>(&desc);
  reg.flags = abi::mem_region_reg_wait_arg;
  const int ret = register_region(reg);
  // The region's last entry is not offered: Linux 6.18 reads it as entry 0
  // (its bound for the entry's offset is the region's size less one entry,
  // exclusive, and an offset at the bound is clamped to 0). Measured here: a
  // wait naming the last entry of a page waited for entry 0's timeout.
  if (ret == 0) wait_region_ = waits.first(waits.size() - 1);
  return ret;
}

}  // namespace ringshard::uring
