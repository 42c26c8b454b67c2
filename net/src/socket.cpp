#include "socket.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <algorithm>
#include <cstring>
#include <exception>

namespace ringshard::net::detail {

Socket::Socket(ConnectionCore* owner, Reactor& reactor, int fd, const ConnectionOptions& options)
    : owner_(owner),
      reactor_(&reactor),
      net_(&NetShard::of(*Shard::current())),
      fd_(fd),
      options_(options),
      queue_(net_->state().blocks) {
  recv_.self = this;
  send_.self = this;
  close_.self = this;
  connect_.self = this;
  fallback_.self = this;
}

void Socket::open() {
  net_->ensure_buffers();
  last_read_ = last_activity_ = Clock::now();
  state_ = State::open;
  arm_recv();
  arm_timer();
}

void Socket::connect(const Address& target) {
  state_ = State::connecting;
  target_ = target;  // the kernel reads the address: it lives here until the CQE
  ++ops_;
  reactor_->submit(connect_, [this](io_uring_sqe* sqe) { uring::prep_connect(sqe, fd_, target_.get(), target_.length()); });
}

// ---- sending -----------------------------------------------------------------------

void Socket::send(std::string&& bytes) {
  if (!sending() || bytes.empty()) return;
  const std::size_t n = bytes.size();
  queue_.push_back().body.emplace<std::string>(std::move(bytes));
  after_queue_grew(n);
}

void Socket::send_copy(std::span<const std::byte> bytes) {
  if (!sending() || bytes.empty()) return;
  // Small writes join the last queued string when it is not part of the send
  // in flight: fewer iovecs, fewer allocations. The entry itself stays put,
  // so a send prepared for the entries before it is not disturbed.
  if (queue_.size() > in_flight_entries_) {
    SendEntry& last = queue_.back();
    if (auto* s = std::get_if<std::string>(&last.body); s != nullptr && s->size() < 64 * 1024) {
      s->append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
      after_queue_grew(bytes.size());
      return;
    }
  }
  std::string data = net_->take_chunk();
  data.assign(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  queue_.push_back().body.emplace<std::string>(std::move(data));
  after_queue_grew(bytes.size());
}

void Socket::send(SharedBuffer&& bytes) {
  if (!sending() || bytes.empty()) return;
  const std::size_t n = bytes.size();
  queue_.push_back().body.emplace<SharedBuffer>(std::move(bytes));
  after_queue_grew(n);
}

void Socket::send(RecvBuffer&& bytes) {
  if (!sending() || bytes.empty()) return;
  const std::size_t n = bytes.size();
  queue_.push_back().body.emplace<RecvBuffer>(std::move(bytes));
  after_queue_grew(n);
}

void Socket::send(std::span<const std::byte> bytes, SendDone&& done) {
  if (!sending() || bytes.empty()) {
    if (done) done(bytes.empty() && sending());
    return;
  }
  queue_.push_back().body.emplace<External>(External{bytes.data(), bytes.size(), std::move(done)});
  after_queue_grew(bytes.size());
}

void Socket::schedule_flush() {
  if (flush_pending_) return;
  flush_pending_ = true;
  net_->state().schedule_flush(net_->shard(), this);
}

void Socket::after_queue_grew(std::size_t bytes) {
  pending_ += bytes;
  if (state_ == State::open) schedule_flush();
  if (pending_ > options_.high_watermark && !paused_) {
    paused_ = true;
    stop_reading();
  }
}

void Socket::run_scheduled_flush() {
  flush_pending_ = false;
  if (state_ == State::open) flush();
}

void Socket::flush() {
  if (send_in_flight_ || queue_.empty() || fd_ < 0) return;
  const std::size_t n = std::min<std::size_t>(queue_.size(), kMaxIov);
  in_flight_entries_ = n;
  send_in_flight_ = true;
  ++ops_;
  if (n == 1) {  // the common case: a plain send, no message header
    const iovec v = queue_.front().unsent();
    reactor_->submit(send_, [this, v](io_uring_sqe* sqe) {
      uring::prep_send(sqe, fd_, uring::ConstBuffer(v.iov_base, v.iov_len), MSG_NOSIGNAL);
    });
    return;
  }
  // Several entries go out gathered in one sendmsg. The iovec array and the
  // header live until the CQE; they are allocated on the first gathered send,
  // so that idle connections do not carry them.
  if (!gather_) gather_ = std::make_unique<Gather>();
  std::size_t i = 0;
  queue_.for_first(n, [&](const SendEntry& e) { gather_->iov[i++] = e.unsent(); });
  gather_->msg = {};
  gather_->msg.msg_iov = gather_->iov;
  gather_->msg.msg_iovlen = n;
  reactor_->submit(send_, [this](io_uring_sqe* sqe) { uring::prep_sendmsg(sqe, fd_, &gather_->msg, MSG_NOSIGNAL); });
}

void Socket::on_send(const io_uring_cqe& cqe) {
  --ops_;
  send_in_flight_ = false;
  if (aborting_ || cqe.res < 0) {
    in_flight_entries_ = 0;
    queue_.clear();
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
  in_flight_entries_ = 0;
  while (sent > 0 && !queue_.empty()) {
    SendEntry& e = queue_.front();
    const std::size_t left = e.left();
    if (sent >= left) {
      sent -= left;
      e.offset = e.size();
      if (auto* s = std::get_if<std::string>(&e.body)) net_->recycle_chunk(std::move(*s));
      queue_.pop_front(true);
    } else {
      e.offset += sent;
      sent = 0;
    }
  }
  if (state_ == State::open) schedule_flush();  // the rest, including what a short send left
  if (paused_ && pending_ <= options_.low_watermark) {
    paused_ = false;
    arm_recv();
    if (owner_ != nullptr && state_ == State::open) {
      try {
        owner_->on_drain();
      } catch (...) {
        owner_->handler_threw();
      }
    }
  }
  maybe_finish();
}

// ---- reception -----------------------------------------------------------------------

void Socket::arm_recv() {
  if (recv_armed_ || paused_ || user_paused_ || peer_shut_ || state_ != State::open) return;
  recv_armed_ = true;
  ++ops_;
  reactor_->submit(recv_, [this](io_uring_sqe* sqe) {
    uring::prep_recv_multishot_group(sqe, fd_, 0, NetShard::kBufferGroup);
  });
}

void Socket::stop_reading() {
  if (recv_armed_ && !recv_cancelled_) {
    recv_cancelled_ = true;
    reactor_->cancel(recv_);
  }
}

void Socket::set_user_paused(bool paused) {
  if (user_paused_ == paused) return;
  user_paused_ = paused;
  if (paused) {
    stop_reading();
  } else {
    arm_recv();
  }
}

void Socket::deliver(std::span<const std::byte> bytes, std::uint16_t bid, bool from_ring) {
  if (timed()) last_read_ = last_activity_ = Clock::now();  // no clock read when nothing times out
  bool kept = false;
  if (owner_ != nullptr && state_ == State::open) {
    try {
      kept = owner_->receive(bytes, bid, from_ring);
    } catch (...) {
      owner_->handler_threw();
    }
  }
  if (from_ring && !kept) net_->give_back(bid);
}

void Socket::on_recv(const io_uring_cqe& cqe) {
  const bool more = cqe.flags & IORING_CQE_F_MORE;
  if (!more) {
    --ops_;
    recv_armed_ = false;
    recv_cancelled_ = false;
  }
  if (cqe.res > 0) {
    const auto bid = uring::cqe_buffer_id(&cqe);
    net_->took(bid);
    deliver(std::span<const std::byte>(net_->buffer(bid), static_cast<std::size_t>(cqe.res)), bid, true);
  } else if (cqe.res == 0) {
    peer_shutdown();
  } else if (cqe.res == -ENOBUFS) {
    // The shard's buffers are all in use: one plain recv into our own buffer
    // keeps this connection moving; multishot resumes after it.
    if (state_ == State::open && !paused()) {
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

void Socket::peer_shutdown() {
  if (state_ != State::open || peer_shut_) return;
  peer_shut_ = true;
  if (owner_ != nullptr) {
    try {
      owner_->on_peer_shutdown();
    } catch (...) {
      owner_->handler_threw();
    }
  } else {
    close(CloseReason::peer_closed);
  }
}

void Socket::start_fallback() {
  if (!fallback_buf_) fallback_buf_ = std::make_unique_for_overwrite<std::byte[]>(kFallbackSize);
  ++ops_;
  recv_armed_ = true;  // a receive is in flight; no multishot until it ends
  reactor_->submit(fallback_, [this](io_uring_sqe* sqe) {
    uring::prep_recv(sqe, fd_, uring::MutableBuffer(fallback_buf_.get(), kFallbackSize), 0);
  });
}

void Socket::on_fallback(const io_uring_cqe& cqe) {
  --ops_;
  recv_armed_ = false;
  recv_cancelled_ = false;
  if (cqe.res > 0) {
    deliver(std::span<const std::byte>(fallback_buf_.get(), static_cast<std::size_t>(cqe.res)), 0, false);
  } else if (cqe.res == 0) {
    peer_shutdown();
  } else if (cqe.res != -ECANCELED) {
    if (state_ == State::open) abort(cqe.res == -ECONNRESET ? CloseReason::peer_reset : CloseReason::error, -cqe.res);
  }
  if (state_ == State::open) arm_recv();
  maybe_finish();
}

// ---- connect -----------------------------------------------------------------------

void Socket::on_connected(const io_uring_cqe& cqe) {
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
  if (owner_ != nullptr) {
    try {
      owner_->on_open();
    } catch (...) {
      owner_->handler_threw();
    }
  }
  if (state_ == State::open) flush();
}

// ---- closing -----------------------------------------------------------------------

void Socket::close(CloseReason reason) {
  if (state_ == State::closing || state_ == State::closed) return;
  reason_ = reason;
  state_ = State::closing;
  stop_reading();
  maybe_finish();
}

void Socket::abort(CloseReason reason, int error) {
  if (state_ == State::closed) return;
  if (state_ != State::closing) reason_ = reason;
  if (error) error_ = error;
  if (state_ == State::connecting) reactor_->cancel(connect_);  // may wait on SYN retries for minutes
  state_ = State::closing;
  aborting_ = true;
  stop_reading();
  if (send_in_flight_) {
    // The kernel reads the entries of the send in flight until its CQE
    // arrives: they are released then (on_send), the rest now.
    reactor_->cancel(send_);
    queue_.truncate(in_flight_entries_);
  } else {
    queue_.clear();
    in_flight_entries_ = 0;
  }
  pending_ = 0;
  maybe_finish();
}

void Socket::detach() noexcept {
  owner_ = nullptr;
  abort(CloseReason::shutdown);
  maybe_delete();
}

void Socket::maybe_finish() {
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

void Socket::on_closed(const io_uring_cqe&) {
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

void Socket::maybe_delete() {
  if (owner_ == nullptr && ops_ == 0 && state_ == State::closed) {
    reactor_->cancel(static_cast<Timer&>(*this));
    if (flush_pending_) net_->state().cancel_flush(this);
    delete this;
  }
}

// ---- timeouts -----------------------------------------------------------------------

void Socket::set_options(const ConnectionOptions& o) {
  if (!timed()) last_read_ = last_activity_ = Clock::now();  // the clocks were not kept
  options_ = o;
  if (state_ == State::open) arm_timer();
}

void Socket::arm_timer() {
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

void Socket::fire() {
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

// ---- the shard's batched flush ------------------------------------------------------

void NetShardState::schedule_flush(Shard& shard, Socket* socket) {
  flush_list.push_back(socket);
  if (!flush_posted) {
    flush_posted = true;
    shard.post([this] { run_flushes(); });
  }
}

void NetShardState::run_flushes() {
  flush_posted = false;
  flushing.swap(flush_list);  // sockets scheduled meanwhile wait for the next run
  for (Socket* socket : flushing) {
    if (socket != nullptr) socket->run_scheduled_flush();
  }
  flushing.clear();
}

void NetShardState::cancel_flush(Socket* socket) noexcept {
  for (auto& s : flush_list) {
    if (s == socket) s = nullptr;
  }
  for (auto& s : flushing) {
    if (s == socket) s = nullptr;
  }
}

}  // namespace ringshard::net::detail
