#include "ringshard/net/connection.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <system_error>

#include "ringshard/framework/log.hpp"

namespace ringshard::net {

const char* to_string(CloseReason reason) noexcept {
  switch (reason) {
    case CloseReason::closed: return "closed";
    case CloseReason::aborted: return "aborted";
    case CloseReason::peer_closed: return "peer closed";
    case CloseReason::peer_reset: return "peer reset";
    case CloseReason::error: return "error";
    case CloseReason::idle_timeout: return "idle timeout";
    case CloseReason::read_timeout: return "read timeout";
    case CloseReason::connect_failed: return "connect failed";
    case CloseReason::shutdown: return "shutdown";
  }
  return "unknown";
}

// ---- NetShard -----------------------------------------------------------------------

namespace {
const unsigned kNetKey = Shard::register_extension_key();
std::atomic<unsigned> g_buffer_count{4096};
std::atomic<unsigned> g_buffer_size{4096};
}  // namespace

NetShard& NetShard::of(Shard& shard) {
  return shard.extension<NetShard>(kNetKey, [&shard] { return std::make_unique<NetShard>(shard); });
}

void NetShard::configure_buffers(unsigned count, unsigned size) noexcept {
  g_buffer_count.store(count);
  g_buffer_size.store(size);
}

NetShard::~NetShard() = default;

void NetShard::ensure_buffers() {
  if (ring_) return;
  count_ = g_buffer_count.load();
  size_ = g_buffer_size.load();
  memory_ = std::make_unique_for_overwrite<std::byte[]>(std::size_t{count_} * size_);
  ring_ = std::make_unique<uring::BufferRing>(shard_->reactor().ring(), count_, kBufferGroup);
  for (unsigned i = 0; i < count_; ++i) ring_->add(buffer(static_cast<std::uint16_t>(i)), size_, static_cast<std::uint16_t>(i), static_cast<int>(i));
  ring_->advance(static_cast<int>(count_));
}

void NetShard::give_back(std::uint16_t bid) noexcept {
  ring_->add(buffer(bid), size_, bid);
  ring_->advance(1);
}

std::string NetShard::take_chunk() noexcept {
  if (spare_chunks_.empty()) return {};
  std::string chunk = std::move(spare_chunks_.back());
  spare_chunks_.pop_back();
  spare_chunk_bytes_ -= chunk.capacity();
  return chunk;
}

void NetShard::recycle_chunk(std::string&& chunk) noexcept {
  const std::size_t capacity = chunk.capacity();
  // Only heap-backed strings of a reasonable size are worth keeping, and only
  // up to a bounded total: a burst of huge sends does not pin its memory.
  if (capacity <= std::string().capacity() || capacity > kMaxSpareChunkCapacity ||
      spare_chunk_bytes_ + capacity > kMaxSpareChunkBytes) {
    return;
  }
  try {
    spare_chunks_.push_back(std::move(chunk));
  } catch (...) {
    return;
  }
  spare_chunks_.back().clear();
  spare_chunk_bytes_ += capacity;
}

// ---- Socket -----------------------------------------------------------------------

namespace detail {

struct Chunk {
  std::string data;
  std::size_t offset = 0;
};

// The send queue: a ring of chunks that allocates nothing until the first
// send and nothing per chunk afterwards (a deque allocates on construction
// and whenever its ends cross a block).
class ChunkQueue {
 public:
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  Chunk& operator[](std::size_t i) noexcept { return slots_[(head_ + i) & (capacity_ - 1)]; }
  Chunk& front() noexcept { return (*this)[0]; }
  Chunk& back() noexcept { return (*this)[size_ - 1]; }

  void push_back(Chunk&& chunk) {
    if (size_ == capacity_) grow();
    (*this)[size_] = std::move(chunk);
    ++size_;
  }
  /// Removes the front chunk and hands its string back for reuse.
  std::string pop_front() noexcept {
    std::string data = std::move(front().data);
    head_ = (head_ + 1) & (capacity_ - 1);
    --size_;
    return data;
  }
  /// Keeps the first n chunks.
  void truncate(std::size_t n) noexcept {
    while (size_ > n) {
      --size_;
      (*this)[size_] = Chunk{};
    }
  }
  void clear() noexcept {
    slots_.reset();
    capacity_ = head_ = size_ = 0;
  }

 private:
  void grow() {
    const std::size_t capacity = capacity_ == 0 ? 4 : capacity_ * 2;
    auto slots = std::make_unique<Chunk[]>(capacity);
    for (std::size_t i = 0; i < size_; ++i) slots[i] = std::move((*this)[i]);
    slots_ = std::move(slots);
    capacity_ = capacity;
    head_ = 0;
  }
  std::unique_ptr<Chunk[]> slots_;
  std::size_t capacity_ = 0;
  std::size_t head_ = 0;
  std::size_t size_ = 0;
};

// The socket and its in-flight operations. It outlives its connection actor
// when the actor goes away with operations still in the kernel, and deletes
// itself once the last completion has arrived and the fd is closed.
class Socket final : Timer {
 public:
  Socket(ConnectionCore* owner, Reactor& reactor, int fd, const ConnectionOptions& options)
      : owner_(owner), reactor_(&reactor), net_(&NetShard::of(*Shard::current())), fd_(fd), options_(options) {
    recv_.self = this;
    send_.self = this;
    close_.self = this;
    connect_.self = this;
    fallback_.self = this;
  }

  void open() {
    net_->ensure_buffers();
    last_read_ = last_activity_ = Clock::now();
    state_ = State::open;
    arm_recv();
    arm_timer();
  }

  void connect(const Address& target) {
    state_ = State::connecting;
    target_ = target;
    ++ops_;
    reactor_->submit(connect_, [this](io_uring_sqe* sqe) { uring::prep_connect(sqe, fd_, target_.get(), target_.length()); });
  }

  void send(std::string&& bytes) {
    if (state_ != State::open && state_ != State::connecting) return;
    if (bytes.empty()) return;
    pending_ += bytes.size();
    queue_.push_back(Chunk{std::move(bytes), 0});
    after_queue_grew();
  }

  void send_copy(std::span<const std::byte> bytes) {
    if (state_ != State::open && state_ != State::connecting) return;
    if (bytes.empty()) return;
    pending_ += bytes.size();
    // Small writes join the last queued chunk when it is not part of the
    // sendmsg in flight: fewer iovecs, fewer allocations.
    if (!queue_.empty() && queue_.size() > in_flight_chunks_ && queue_.back().data.size() < 64 * 1024) {
      queue_.back().data.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    } else {
      std::string data = net_->take_chunk();
      data.assign(reinterpret_cast<const char*>(bytes.data()), bytes.size());
      queue_.push_back(Chunk{std::move(data), 0});
    }
    after_queue_grew();
  }

  void close(CloseReason reason) {
    if (state_ == State::closing || state_ == State::closed) return;
    reason_ = reason;
    state_ = State::closing;
    stop_reading();
    maybe_finish();
  }

  void abort(CloseReason reason, int error = 0) {
    if (state_ == State::closed) return;
    if (state_ != State::closing) reason_ = reason;
    if (error) error_ = error;
    if (state_ == State::connecting) reactor_->cancel(connect_);  // may wait on SYN retries for minutes
    state_ = State::closing;
    aborting_ = true;
    stop_reading();
    if (send_in_flight_) {
      // The kernel reads the chunks of the send in flight until its CQE
      // arrives: they are freed then (on_send), the rest now.
      reactor_->cancel(send_);
      queue_.truncate(in_flight_chunks_);
    } else {
      queue_.clear();
      in_flight_chunks_ = 0;
    }
    pending_ = 0;
    maybe_finish();
  }

  /// The owning actor is going away: finish without telling it.
  void detach() noexcept {
    owner_ = nullptr;
    abort(CloseReason::shutdown);
    maybe_delete();
  }

  [[nodiscard]] std::string take_chunk() noexcept { return net_->take_chunk(); }
  /// NetShard's batched flush reached this socket.
  void run_scheduled_flush() {
    flush_pending_ = false;
    if (state_ == State::open) flush();
  }
  [[nodiscard]] bool is_open() const noexcept { return state_ == State::open; }
  [[nodiscard]] int fd() const noexcept { return fd_; }
  [[nodiscard]] std::size_t pending() const noexcept { return pending_; }
  [[nodiscard]] bool paused() const noexcept { return paused_; }
  void set_options(const ConnectionOptions& o) {
    if (!timed()) last_read_ = last_activity_ = Clock::now();  // the clocks were not kept
    options_ = o;
    if (state_ == State::open) arm_timer();
  }

 private:
  enum class State { connecting, open, closing, closed };
  [[nodiscard]] bool timed() const noexcept {
    return options_.idle_timeout.count() != 0 || options_.read_timeout.count() != 0;
  }
  // One completion type per operation, each bound to its handler.
  struct RecvOp final : Completion {
    Socket* self = nullptr;
    void complete(const io_uring_cqe& cqe) override { self->on_recv(cqe); }
  };
  struct FallbackOp final : Completion {
    Socket* self = nullptr;
    void complete(const io_uring_cqe& cqe) override { self->on_fallback(cqe); }
  };
  struct SendOp final : Completion {
    Socket* self = nullptr;
    void complete(const io_uring_cqe& cqe) override { self->on_send(cqe); }
  };
  struct CloseOp final : Completion {
    Socket* self = nullptr;
    void complete(const io_uring_cqe& cqe) override { self->on_closed(cqe); }
  };
  struct ConnectOp final : Completion {
    Socket* self = nullptr;
    void complete(const io_uring_cqe& cqe) override { self->on_connected(cqe); }
  };

  // ---- reception ----
  void arm_recv() {
    if (recv_armed_ || paused_ || peer_shut_ || state_ != State::open) return;
    recv_armed_ = true;
    ++ops_;
    reactor_->submit(recv_, [this](io_uring_sqe* sqe) {
      uring::prep_recv_multishot_group(sqe, fd_, 0, NetShard::kBufferGroup);
    });
  }

  void stop_reading() {
    if (recv_armed_ && !recv_cancelled_) {
      recv_cancelled_ = true;
      reactor_->cancel(recv_);
    }
  }

  void deliver(std::span<const std::byte> bytes) {
    if (timed()) last_read_ = last_activity_ = Clock::now();  // no clock read when nothing times out
    if (owner_ != nullptr && state_ == State::open) owner_->on_data(bytes);
  }

  void on_recv(const io_uring_cqe& cqe) {
    const bool more = cqe.flags & IORING_CQE_F_MORE;
    if (!more) {
      --ops_;
      recv_armed_ = false;
      recv_cancelled_ = false;
    }
    if (cqe.res > 0) {
      const auto bid = uring::cqe_buffer_id(&cqe);
      deliver(std::span<const std::byte>(net_->buffer(bid), static_cast<std::size_t>(cqe.res)));
      net_->give_back(bid);
    } else if (cqe.res == 0) {
      peer_shutdown();
    } else if (cqe.res == -ENOBUFS) {
      // The shard's buffers are all in use: one plain recv into our own
      // buffer keeps this connection moving; multishot resumes after it.
      if (state_ == State::open && !paused_) {
        net_->buffer_fallbacks.fetch_add(1, std::memory_order_relaxed);
        start_fallback();
        return;
      }
    } else if (cqe.res != -ECANCELED) {
      if (state_ == State::open) abort(cqe.res == -ECONNRESET ? CloseReason::peer_reset : CloseReason::error, -cqe.res);
    }
    if (!more) {
      if (state_ == State::open) arm_recv();
      maybe_finish();
    }
  }

  // End of stream: nothing more to read, but the owner may still answer.
  void peer_shutdown() {
    if (state_ != State::open || peer_shut_) return;
    peer_shut_ = true;
    if (owner_ != nullptr) {
      owner_->on_peer_shutdown();
    } else {
      close(CloseReason::peer_closed);
    }
  }

  void start_fallback() {
    if (!fallback_buf_) fallback_buf_ = std::make_unique_for_overwrite<std::byte[]>(kFallbackSize);
    ++ops_;
    recv_armed_ = true;  // a receive is in flight; no multishot until it ends
    reactor_->submit(fallback_, [this](io_uring_sqe* sqe) {
      uring::prep_recv(sqe, fd_, uring::MutableBuffer(fallback_buf_.get(), kFallbackSize), 0);
    });
  }

  void on_fallback(const io_uring_cqe& cqe) {
    --ops_;
    recv_armed_ = false;
    recv_cancelled_ = false;
    if (cqe.res > 0) {
      deliver(std::span<const std::byte>(fallback_buf_.get(), static_cast<std::size_t>(cqe.res)));
    } else if (cqe.res == 0) {
      peer_shutdown();
    } else if (cqe.res != -ECANCELED) {
      if (state_ == State::open) abort(cqe.res == -ECONNRESET ? CloseReason::peer_reset : CloseReason::error, -cqe.res);
    }
    if (state_ == State::open) arm_recv();
    maybe_finish();
  }

  // ---- sending ----
  void schedule_flush() {
    if (flush_pending_) return;
    flush_pending_ = true;
    net_->schedule_flush(this);
  }

  void after_queue_grew() {
    if (state_ == State::open) schedule_flush();
    if (pending_ > options_.high_watermark && !paused_) {
      paused_ = true;
      stop_reading();
    }
  }

  void flush() {
    if (send_in_flight_ || queue_.empty() || fd_ < 0) return;
    const std::size_t n = std::min<std::size_t>(queue_.size(), kMaxIov);
    in_flight_chunks_ = n;
    send_in_flight_ = true;
    ++ops_;
    if (n == 1) {  // the common case: a plain send, no message header
      reactor_->submit(send_, [this](io_uring_sqe* sqe) {
        Chunk& c = queue_.front();
        uring::prep_send(sqe, fd_, uring::ConstBuffer(c.data.data() + c.offset, c.data.size() - c.offset), MSG_NOSIGNAL);
      });
      return;
    }
    // Several chunks go out gathered in one sendmsg. The iovec array and the
    // header must live until the SQE is submitted; they are allocated on the
    // first gathered send, so that idle connections do not carry them.
    if (!gather_) gather_ = std::make_unique<Gather>();
    for (std::size_t i = 0; i < n; ++i) {
      Chunk& c = queue_[i];
      gather_->iov[i].iov_base = c.data.data() + c.offset;
      gather_->iov[i].iov_len = c.data.size() - c.offset;
    }
    gather_->msg = {};
    gather_->msg.msg_iov = gather_->iov;
    gather_->msg.msg_iovlen = n;
    reactor_->submit(send_, [this](io_uring_sqe* sqe) { uring::prep_sendmsg(sqe, fd_, &gather_->msg, MSG_NOSIGNAL); });
  }

  void on_send(const io_uring_cqe& cqe) {
    --ops_;
    send_in_flight_ = false;
    if (aborting_ || cqe.res < 0) {
      queue_.clear();
      in_flight_chunks_ = 0;
      if (cqe.res >= 0) {
        maybe_finish();
        return;
      }
      if (cqe.res != -ECANCELED || !aborting_) {
        abort(cqe.res == -EPIPE || cqe.res == -ECONNRESET ? CloseReason::peer_reset : CloseReason::error, -cqe.res);
      }
      maybe_finish();
      return;
    }
    if (timed()) last_activity_ = Clock::now();
    std::size_t sent = static_cast<std::size_t>(cqe.res);
    pending_ -= std::min(pending_, sent);
    while (sent > 0 && !queue_.empty()) {
      Chunk& c = queue_.front();
      const std::size_t left = c.data.size() - c.offset;
      if (sent >= left) {
        sent -= left;
        net_->recycle_chunk(queue_.pop_front());
      } else {
        c.offset += sent;
        sent = 0;
      }
    }
    in_flight_chunks_ = 0;
    if (state_ == State::open) schedule_flush();  // the rest, including what a short send left
    if (paused_ && pending_ <= options_.low_watermark) {
      paused_ = false;
      arm_recv();
      if (owner_ != nullptr && state_ == State::open) owner_->on_drain();
    }
    maybe_finish();
  }

  // ---- connect ----
  void on_connected(const io_uring_cqe& cqe) {
    --ops_;
    if (state_ != State::connecting) {  // aborted (or its actor gone) while connecting
      maybe_finish();
      maybe_delete();
      return;
    }
    if (cqe.res < 0) {
      error_ = -cqe.res;
      reason_ = CloseReason::connect_failed;
      state_ = State::closing;
      aborting_ = true;
      queue_.clear();
      pending_ = 0;
      maybe_finish();
      return;
    }
    if (options_.nodelay && target_.family() != AF_UNIX) {
      int one = 1;
      ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    open();
    if (owner_ != nullptr) owner_->on_open();
    if (state_ == State::open) flush();
  }

  // ---- closing ----
  void maybe_finish() {
    if (state_ != State::closing) return;
    if (recv_armed_ || send_in_flight_) return;
    if (!aborting_ && !queue_.empty()) {  // close(): drain the queue first
      flush();
      return;
    }
    if (fd_ >= 0 && !close_submitted_) {
      close_submitted_ = true;
      ++ops_;
      reactor_->cancel(static_cast<Timer&>(*this));
      reactor_->submit(close_, [this](io_uring_sqe* sqe) { uring::prep_close(sqe, fd_); });
    }
  }

  void on_closed(const io_uring_cqe&) {
    --ops_;
    if (peer_shut_ && reason_ == CloseReason::closed) reason_ = CloseReason::peer_closed;
    fd_ = -1;
    state_ = State::closed;
    net_->connections.fetch_sub(1, std::memory_order_relaxed);
    net_->closed.fetch_add(1, std::memory_order_relaxed);
    if (owner_ != nullptr) {
      ConnectionCore* owner = owner_;
      owner_ = nullptr;
      owner->closed_by_socket(reason_, error_);  // the owner forgets us
    }
    maybe_delete();
  }

  void maybe_delete() {
    if (owner_ == nullptr && ops_ == 0 && state_ == State::closed) {
      reactor_->cancel(static_cast<Timer&>(*this));
      if (flush_pending_) net_->cancel_flush(this);
      delete this;
    }
  }

  // ---- timeouts ----
  void arm_timer() {
    const auto idle = options_.idle_timeout;
    const auto read = options_.read_timeout;
    if (idle.count() == 0 && read.count() == 0) {
      reactor_->cancel(static_cast<Timer&>(*this));
      return;
    }
    Clock::time_point next = Clock::time_point::max();
    if (idle.count() > 0) next = std::min(next, last_activity_ + idle);
    if (read.count() > 0) next = std::min(next, last_read_ + read);
    reactor_->schedule(static_cast<Timer&>(*this), next);
  }

  void fire() override {
    if (state_ != State::open) return;
    const auto now = Clock::now();
    if (options_.read_timeout.count() > 0 && now >= last_read_ + options_.read_timeout) {
      abort(CloseReason::read_timeout);
      return;
    }
    if (options_.idle_timeout.count() > 0 && now >= last_activity_ + options_.idle_timeout) {
      abort(CloseReason::idle_timeout);
      return;
    }
    arm_timer();
  }

  static constexpr std::size_t kMaxIov = 64;
  static constexpr std::size_t kFallbackSize = 16 * 1024;

  ConnectionCore* owner_;
  Reactor* reactor_;
  NetShard* net_;
  int fd_;
  ConnectionOptions options_;
  State state_ = State::open;
  CloseReason reason_ = CloseReason::closed;
  int error_ = 0;
  unsigned ops_ = 0;
  bool recv_armed_ = false;
  bool recv_cancelled_ = false;
  bool paused_ = false;
  bool send_in_flight_ = false;
  bool aborting_ = false;
  bool close_submitted_ = false;
  bool peer_shut_ = false;
  bool flush_pending_ = false;  // in NetShard's flush list
  std::size_t pending_ = 0;
  std::size_t in_flight_chunks_ = 0;
  ChunkQueue queue_;
  struct Gather {
    iovec iov[kMaxIov];
    msghdr msg;
  };
  std::unique_ptr<Gather> gather_;
  Clock::time_point last_read_{};
  Clock::time_point last_activity_{};
  Address target_{};
  std::unique_ptr<std::byte[]> fallback_buf_;
  RecvOp recv_;
  FallbackOp fallback_;
  SendOp send_;
  CloseOp close_;
  ConnectOp connect_;
};

}  // namespace detail

void NetShard::schedule_flush(detail::Socket* socket) {
  flush_list_.push_back(socket);
  if (!flush_posted_) {
    flush_posted_ = true;
    shard_->post([this] { run_flushes(); });
  }
}

void NetShard::run_flushes() {
  flush_posted_ = false;
  flushing_.swap(flush_list_);  // sockets scheduled meanwhile wait for the next run
  for (detail::Socket* socket : flushing_) {
    if (socket != nullptr) socket->run_scheduled_flush();
  }
  flushing_.clear();
}

void NetShard::cancel_flush(detail::Socket* socket) noexcept {
  for (auto& s : flush_list_) {
    if (s == socket) s = nullptr;
  }
  for (auto& s : flushing_) {
    if (s == socket) s = nullptr;
  }
}

// ---- ConnectionCore -----------------------------------------------------------------

ConnectionCore::~ConnectionCore() {
  if (socket_ != nullptr) socket_->detach();
  if (pending_fd_ >= 0) ::close(pending_fd_);
}

void ConnectionCore::start_io(actors::ActorBase& self) {
  actor_ = &self;
  Reactor& reactor = self.reactor();
  NetShard& net = NetShard::of(self.shard());
  if (pending_fd_ >= 0) {
    const int fd = pending_fd_;
    pending_fd_ = -1;
    socket_ = new detail::Socket(this, reactor, fd, options_);
    socket_->open();
    on_open();
    return;
  }
  if (connect_to_.length() != 0) {
    const int fd = ::socket(connect_to_.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
    net.connections.fetch_add(1, std::memory_order_relaxed);
    if (fd < 0) {
      last_error_ = errno;
      net.connections.fetch_sub(1, std::memory_order_relaxed);
      closed_by_socket(CloseReason::connect_failed, errno);
      return;
    }
    peer_ = connect_to_;
    socket_ = new detail::Socket(this, reactor, fd, options_);
    socket_->connect(connect_to_);
    return;
  }
  RINGSHARD_LOG_WARN("connection actor started without a socket");
  self.stop();
}

void ConnectionCore::stop_io() noexcept {
  if (socket_ != nullptr) {
    detail::Socket* s = socket_;
    socket_ = nullptr;
    if (!close_reported_) {
      close_reported_ = true;
      on_close(CloseReason::shutdown);
    }
    s->detach();
  }
}

void ConnectionCore::closed_by_socket(CloseReason reason, int error) {
  socket_ = nullptr;
  last_error_ = error;
  if (!close_reported_) {
    close_reported_ = true;
    on_close(reason);
  }
  if (actor_ != nullptr) actor_->stop();
}

void ConnectionCore::send(std::span<const std::byte> bytes) {
  if (socket_ != nullptr) socket_->send_copy(bytes);
}
std::string ConnectionCore::send_buffer() noexcept { return socket_ != nullptr ? socket_->take_chunk() : std::string(); }

void ConnectionCore::send(std::string&& bytes) {
  if (socket_ != nullptr) socket_->send(std::move(bytes));
}
void ConnectionCore::close() {
  if (socket_ != nullptr) socket_->close(CloseReason::closed);
}
void ConnectionCore::abort() {
  if (socket_ != nullptr) socket_->abort(CloseReason::aborted);
}
bool ConnectionCore::is_open() const noexcept { return socket_ != nullptr && socket_->is_open(); }
const Address& ConnectionCore::peer() const {
  if (peer_.length() == 0 && socket_ != nullptr && socket_->fd() >= 0) {
    try {
      peer_ = Address::of_socket(socket_->fd(), true);
    } catch (const std::system_error&) {
      // the peer is gone already: leave it unspecified
    }
  }
  return peer_;
}

int ConnectionCore::fd() const noexcept { return socket_ != nullptr ? socket_->fd() : -1; }
std::size_t ConnectionCore::pending_send_bytes() const noexcept { return socket_ ? socket_->pending() : 0; }
bool ConnectionCore::reading_paused() const noexcept { return socket_ != nullptr && socket_->paused(); }
void ConnectionCore::set_options(const ConnectionOptions& options) {
  options_ = options;
  if (socket_ != nullptr) socket_->set_options(options);
}

}  // namespace ringshard::net
