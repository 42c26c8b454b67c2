#include "ringshard/framework/uring/buffer_ring.hpp"

#include <sys/mman.h>

#include <string>
#include <system_error>

namespace ringshard::uring {

BufferRing::BufferRing(Ring& ring, unsigned entries, std::uint16_t bgid, unsigned flags)
    : ring_(&ring), entries_(entries), bgid_(bgid) {
  if (entries == 0 || (entries & (entries - 1)) != 0 || entries > 32768) {
    throw std::system_error(EINVAL, std::generic_category(),
                            "BufferRing entries must be a power of two in [1, 32768], got " +
                                std::to_string(entries));
  }
  size_ = entries * sizeof(io_uring_buf);
  void* mem = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mem == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap of a buffer ring");
  br_ = static_cast<io_uring_buf_ring*>(mem);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<std::uintptr_t>(mem);
  reg.ring_entries = entries;
  reg.bgid = bgid;
  const int ret = ring.register_buf_ring(reg, flags);
  if (ret < 0) {
    ::munmap(mem, size_);
    throw std::system_error(-ret, std::generic_category(),
                            "IORING_REGISTER_PBUF_RING for buffer group " + std::to_string(bgid));
  }
  buf_ring_init(br_);
}

BufferRing::~BufferRing() {
  if (br_) {
    ring_->unregister_buf_ring(bgid_);
    ::munmap(br_, size_);
  }
}

int BufferRing::available(Ring& ring) const noexcept {
  std::uint16_t head = 0;
  const int ret = ring.buf_ring_head(bgid_, head);
  if (ret < 0) return ret;
  const auto tail = std::atomic_ref<std::uint16_t>(br_->tail).load(std::memory_order_relaxed);
  return static_cast<std::uint16_t>(tail - head);
}

}  // namespace ringshard::uring
