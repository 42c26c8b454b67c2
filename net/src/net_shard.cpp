#include "ringshard/net/net_shard.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <system_error>
#include <vector>

#include "ringshard/framework/log.hpp"
#include "socket.hpp"

namespace ringshard::net {

namespace {
const unsigned kNetKey = Shard::register_extension_key();
}  // namespace

void RecvBuffer::release() noexcept {
  if (net_ != nullptr) std::exchange(net_, nullptr)->release(bid_);
  heap_.reset();
  data_ = nullptr;
  size_ = 0;
}

NetShard& NetShard::of(Shard& shard) {
  return shard.extension<NetShard>(kNetKey, [&shard] { return std::make_unique<NetShard>(shard); });
}

NetShard* NetShard::find(Shard& shard) noexcept { return static_cast<NetShard*>(shard.find_extension(kNetKey)); }

NetShard::NetShard(Shard& shard) : shard_(&shard), state_(std::make_unique<detail::NetShardState>()) {}

NetShard::~NetShard() {
  // Whatever is still enlisted outlives the list: it no longer belongs to one.
  while (drainables_ != nullptr) drainables_->delist();
}

void Drainable::link(Drainable** list) noexcept {
  list_ = list;
  prev_ = nullptr;
  next_ = *list;
  if (next_ != nullptr) next_->prev_ = this;
  *list = this;
}

void Drainable::enlist(NetShard& net) noexcept {
  delist();
  link(&net.drainables_);
}

void Drainable::delist() noexcept {
  if (list_ == nullptr) return;
  if (prev_ != nullptr) prev_->next_ = next_;
  else *list_ = next_;
  if (next_ != nullptr) next_->prev_ = prev_;
  prev_ = next_ = nullptr;
  list_ = nullptr;
}

// A hook may close its object, or others on the list: each is moved back to
// the list before its hook runs, from a list of those still to go.
void NetShard::each_drainable(void (Drainable::*hook)()) {
  Drainable* pending = std::exchange(drainables_, nullptr);
  for (Drainable* d = pending; d != nullptr; d = d->next_) d->list_ = &pending;
  while (pending != nullptr) {
    Drainable* d = pending;
    d->delist();
    d->link(&drainables_);
    try {
      (d->*hook)();
    } catch (...) {
      log_current_exception("a drain hook");
    }
  }
}

void NetShard::on_stop_requested() { each_drainable(&Drainable::on_stop_requested); }
void NetShard::on_drain_end() { each_drainable(&Drainable::on_drain_end); }

void NetShard::set_receive_buffers(const ReceiveBuffers& buffers) {
  if (buffers.count == 0 || buffers.count > 32768 || (buffers.count & (buffers.count - 1)) != 0) {
    throw std::invalid_argument("receive buffer count must be a power of two from 1 to 32768, not " +
                                std::to_string(buffers.count));
  }
  if (buffers.size == 0) throw std::invalid_argument("receive buffer size must not be 0");
  if (buffers.incremental_size == 0) throw std::invalid_argument("incremental receive buffer size must not be 0");
  want_count_.store(buffers.count, std::memory_order_relaxed);
  want_size_.store(buffers.size, std::memory_order_relaxed);
  want_incremental_.store(buffers.incremental, std::memory_order_relaxed);
  want_incremental_size_.store(buffers.incremental_size, std::memory_order_relaxed);
  want_bundles_.store(buffers.bundles, std::memory_order_relaxed);
}

ReceiveBuffers NetShard::receive_buffers() const noexcept {
  return ReceiveBuffers{want_count_.load(std::memory_order_relaxed), want_size_.load(std::memory_order_relaxed),
                        want_incremental_.load(std::memory_order_relaxed),
                        want_incremental_size_.load(std::memory_order_relaxed),
                        want_bundles_.load(std::memory_order_relaxed)};
}

namespace {
// What the kernel lacks is said once per process, not once per shard.
std::atomic<bool> g_said_no_incremental{false};
std::atomic<bool> g_said_no_bundles{false};
std::atomic<bool> g_said_no_direct{false};

}  // namespace

void NetShard::ensure_files() {
  const unsigned slots = want_fixed_files_.load(std::memory_order_relaxed);
  if (slots == 0) return;
  const int ret = shard_->reactor().ring().register_files_sparse(slots);
  if (ret < 0) {
    if (!g_said_no_direct.exchange(true)) {
      RINGSHARD_LOG_WARN("direct descriptors unavailable (registering a sparse file table: {}): plain descriptors",
                         std::strerror(-ret));
    }
    return;
  }
  fixed_slots_ = slots;
  fixed_free_.reserve(slots);  // uninstalled() never allocates
}

int NetShard::install(int fd) noexcept {
  if (fixed_slots_ == 0) return -1;
  unsigned slot;
  if (!fixed_free_.empty()) {
    slot = fixed_free_.back();
  } else if (fixed_next_ < fixed_slots_) {
    slot = fixed_next_;
  } else {
    ++direct_fallbacks;
    return -1;
  }
  const int ret = shard_->reactor().ring().register_files_update(slot, std::span<const int>(&fd, 1));
  if (ret != 1) {
    ++direct_fallbacks;
    return -1;
  }
  if (!fixed_free_.empty()) fixed_free_.pop_back();
  else ++fixed_next_;
  return static_cast<int>(slot);
}

void NetShard::uninstalled(unsigned slot) noexcept {
  fixed_free_.push_back(slot);  // room reserved when the table was registered
}

void NetShard::ensure_buffers() {
  if (ring_) return;
  ensure_files();
  const ReceiveBuffers want = receive_buffers();
  uring::Ring& ring = shard_->reactor().ring();
  count_ = want.count;
  size_ = want.size;
  if (want.incremental) {
    const std::size_t memory = std::size_t{want.count} * want.size;
    unsigned count = want.count;
    unsigned size = want.size;
    if (want.size < want.incremental_size && memory / want.incremental_size >= 8) {
      count = static_cast<unsigned>(std::min<std::size_t>(std::bit_floor(memory / want.incremental_size), 32768));
      size = want.incremental_size;
    }
    try {
      ring_ = std::make_unique<uring::BufferRing>(ring, count, kBufferGroup, IOU_PBUF_RING_INC);
      incremental_ = true;
      count_ = count;
      size_ = size;
    } catch (const std::system_error& e) {
      if (!g_said_no_incremental.exchange(true)) {
        RINGSHARD_LOG_WARN("incremental receive buffers unavailable ({}): each receive uses whole buffers",
                           e.what());
      }
    }
  }
  if (!ring_) ring_ = std::make_unique<uring::BufferRing>(ring, count_, kBufferGroup);
  // With incremental buffers a receive fits in one buffer: a bundle would
  // only join the end of one buffer to the start of the next, and could take
  // up to 256 buffers (16 MiB of 64 KiB buffers) in one completion.
  if (want.bundles && !incremental_) {
    bundles_ = ring.has_feature(IORING_FEAT_RECVSEND_BUNDLE);
    if (!bundles_ && !g_said_no_bundles.exchange(true)) {
      RINGSHARD_LOG_WARN("receive bundles unavailable (no IORING_FEAT_RECVSEND_BUNDLE): one buffer per receive");
    }
  }
  tracked_ = incremental_ || bundles_;
  memory_ = std::make_unique_for_overwrite<std::byte[]>(std::size_t{count_} * size_);
  if (tracked_) {
    ring_bids_.resize(count_);
    kept_.assign(count_, 0);
    out_.assign(count_, 0);
  }
  for (unsigned i = 0; i < count_; ++i) {
    ring_->add(buffer(static_cast<std::uint16_t>(i)), size_, static_cast<std::uint16_t>(i), static_cast<int>(i));
    if (tracked_) ring_bids_[i] = static_cast<std::uint16_t>(i);
  }
  filled_ = count_;
  ring_->advance(static_cast<int>(count_));
}

void NetShard::give_back(std::uint16_t bid) noexcept {
  --held_;
  ring_->add(buffer(bid), size_, bid);
  ring_->advance(1);
  if (tracked_) {
    out_[bid] = 0;
    ring_bids_[filled_ & (count_ - 1)] = bid;
    ++filled_;
  }
}

void NetShard::release(std::uint16_t bid) noexcept {
  if (!tracked_) {
    give_back(bid);
    return;
  }
  --slices_;
  if (--kept_[bid] == 0 && out_[bid] != 0) give_back(bid);
}

void NetShard::out_of_step(const char* what) noexcept {
  // The record of which buffer holds which bytes no longer matches the
  // kernel's: going on would hand connections other connections' bytes.
  RINGSHARD_LOG_ERROR("receive ring out of step: {}", what);
  std::abort();
}

RecvBuffer NetShard::keep(std::uint16_t bid, std::span<const std::byte> bytes) {
  if (ring_low()) {  // keep a copy, the buffer goes back
    ++kept_copies;
    return copy_of(bytes);
  }
  if (tracked_) {
    ++kept_[bid];
    ++slices_;
  }
  return RecvBuffer(this, bid, bytes.data(), bytes.size());
}

RecvBuffer NetShard::adopt(std::unique_ptr<std::byte[]> heap, std::size_t size) noexcept {
  return RecvBuffer(std::move(heap), size);
}

RecvBuffer NetShard::copy_of(std::span<const std::byte> bytes) {
  auto heap = std::make_unique_for_overwrite<std::byte[]>(bytes.size());
  std::memcpy(heap.get(), bytes.data(), bytes.size());
  return RecvBuffer(std::move(heap), bytes.size());
}

std::string NetShard::take_chunk() noexcept {
  auto& spare = state_->spare_chunks;
  if (spare.empty()) return {};
  std::string chunk = std::move(spare.back());
  spare.pop_back();
  state_->spare_chunk_bytes -= chunk.capacity();
  return chunk;
}

void NetShard::recycle_chunk(std::string&& chunk) noexcept {
  static constexpr std::size_t kMaxSpareChunkBytes = std::size_t{1} << 20;
  static constexpr std::size_t kMaxSpareChunkCapacity = std::size_t{64} << 10;
  const std::size_t capacity = chunk.capacity();
  // Only heap-backed strings of a reasonable size are worth keeping, and only
  // up to a bounded total: a burst of huge sends does not pin its memory.
  if (capacity <= std::string().capacity() || capacity > kMaxSpareChunkCapacity ||
      state_->spare_chunk_bytes + capacity > kMaxSpareChunkBytes) {
    return;
  }
  try {
    state_->spare_chunks.push_back(std::move(chunk));
  } catch (...) {
    return;
  }
  state_->spare_chunks.back().clear();
  state_->spare_chunk_bytes += capacity;
}

std::size_t NetShard::release_idle_memory() noexcept {
  std::size_t released = state_->spare_chunk_bytes;
  std::vector<std::string>().swap(state_->spare_chunks);
  state_->spare_chunk_bytes = 0;
  released += state_->blocks.release();
  released += shard_->shrink_run_queue();  // a burst's peak of queued jobs
  // No connection on the shard means no receive is armed on the ring (a
  // socket closes only once its receive has ended, and the connection count
  // goes up before a new socket's first receive), and none of its buffers is
  // held: nothing reads or writes the ring's memory now. Its whole pages go
  // back; the kernel's next write into one faults in a zeroed page.
  if (ring_ && held_ == 0 && slices_ == 0 && connections.load(std::memory_order_relaxed) == 0) {
    const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    const auto begin = reinterpret_cast<std::uintptr_t>(memory_.get());
    const std::uintptr_t first = (begin + page - 1) & ~(page - 1);
    const std::uintptr_t last = (begin + std::size_t{count_} * size_) & ~(page - 1);
    if (last > first && ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED) == 0) {
      released += last - first;
    }
  }
  return released;
}

}  // namespace ringshard::net
