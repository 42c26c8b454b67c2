#include "ringshard/net/stream.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "ringshard/framework/log.hpp"
#include "listen_socket.hpp"

namespace ringshard::net {

// ---- errors ----------------------------------------------------------------

namespace {
class StreamCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "ringshard.stream"; }
  std::string message(int e) const override {
    switch (static_cast<StreamErrc>(e)) {
      case StreamErrc::unexpected_eof: return "the stream ended before the data asked for";
      case StreamErrc::too_long: return "no delimiter within the maximum";
      case StreamErrc::not_connected: return "the stream has no connection";
    }
    return "unknown stream error";
  }
};
}  // namespace

const std::error_category& stream_category() noexcept {
  static const StreamCategory category;
  return category;
}

namespace detail {

// One connection read and written by a coroutine. Served: it starts the
// handler's coroutine (a root task) when it opens. Dialed: a DialAwait waits
// for it to open.
class StreamConnection final : public Connection<StreamConnection>, private Timer {
 public:
  explicit StreamConnection(std::shared_ptr<const StreamHandler> handler) : handler_(std::move(handler)) {}
  ~StreamConnection() override;

  void on_open() override;
  void on_data(std::span<const std::byte> bytes) override;
  void on_peer_shutdown() override;
  void on_drain() override;
  void on_close(CloseReason reason) override;

  // ---- for Stream and the awaits ----
  bool fill(ReadAwait& r);  // true: complete (bytes, the end or an error)
  void begin_read() noexcept;
  void enqueue(WriteAwait& w);
  void wait_read(ReadAwait* r) {
    reader_ = r;
    flow();
    arm_deadline();
  }
  void wait_write(WriteAwait* w) {
    writer_ = w;
    arm_deadline();
  }
  void forget(StreamAwait* a) noexcept {
    if (reader_ == a) reader_ = nullptr;
    if (writer_ == a) writer_ = nullptr;
  }
  [[nodiscard]] bool write_closed() const noexcept { return closed_ || write_shut_by_stream_; }
  [[nodiscard]] std::error_code write_error() const noexcept {
    if (closed_ && close_error_) return close_error_;
    return std::make_error_code(std::errc::broken_pipe);
  }
  [[nodiscard]] bool read_late() const noexcept { return past(read_deadline_); }
  [[nodiscard]] bool write_late() const noexcept { return past(write_deadline_); }
  [[nodiscard]] bool over_high_watermark() const noexcept {
    return pending_send_bytes() > options().high_watermark;
  }
  void stream_close(bool abort_now) noexcept;
  void reset_for_write_timeout() noexcept;
  void stream_shutdown_write() noexcept;
  void set_read_deadline(Clock::time_point t) noexcept {
    read_deadline_ = t;
    arm_deadline();
  }
  void set_write_deadline(Clock::time_point t) noexcept {
    write_deadline_ = t;
    arm_deadline();
  }
  [[nodiscard]] bool closed() const noexcept { return closed_; }
  [[nodiscard]] std::error_code close_error() const noexcept { return close_error_; }

  Stream* handle_ = nullptr;
  DialAwait* dialer_ = nullptr;

 private:
  struct Chunk {
    RecvBuffer buf;
    std::size_t off = 0;
    [[nodiscard]] std::span<const std::byte> rest() const noexcept { return buf.bytes().subspan(off); }
  };
  static constexpr std::size_t kHoldBytes = 64 * 1024;  // held unread: reception pauses above it
  static constexpr std::size_t kHoldChunks = 32;

  static bool past(Clock::time_point t) noexcept { return t != Clock::time_point::max() && Clock::now() >= t; }
  static void task_ended(void* self, std::exception_ptr error) noexcept;
  void fire() override;
  void arm_deadline() noexcept;
  void wake_reader();
  void flow() noexcept;
  std::size_t copy_out(std::span<std::byte> out) noexcept;
  std::span<const std::byte> assemble(std::size_t n);
  [[nodiscard]] std::size_t find_held(std::string_view delim, std::size_t from, std::size_t limit) const noexcept;
  [[nodiscard]] bool held_matches(std::size_t chunk, std::size_t at, std::string_view delim) const noexcept;
  [[nodiscard]] std::error_code end_error() const noexcept;

  std::shared_ptr<const StreamHandler> handler_;
  TaskHandle task_;
  std::vector<Chunk> chunks_;
  std::size_t held_ = 0;
  std::string scratch_;
  ReadAwait* reader_ = nullptr;
  WriteAwait* writer_ = nullptr;
  Clock::time_point read_deadline_ = Clock::time_point::max();
  Clock::time_point write_deadline_ = Clock::time_point::max();
  std::error_code close_error_{};
  bool peer_eof_ = false;
  bool closed_ = false;
  bool closed_by_stream_ = false;
  bool write_shut_by_stream_ = false;
  bool paused_by_stream_ = false;
};

StreamConnection::~StreamConnection() {
  if (scheduled()) reactor().cancel(static_cast<Timer&>(*this));
  if (handle_ != nullptr) handle_->conn_ = nullptr;
  if (TaskRoot* root = task_.root()) root->on_end(nullptr, nullptr);
  if (dialer_ != nullptr) std::exchange(dialer_, nullptr)->connected(make_error_code(StreamErrc::not_connected));
}

void StreamConnection::on_open() {
  if (dialer_ != nullptr) {
    std::exchange(dialer_, nullptr)->connected({});
    return;
  }
  if (!handler_) return;
  Task<> task = (*handler_)(Stream(this));
  task_ = spawn(std::move(task), &StreamConnection::task_ended, this);
}

// The coroutine ended (before its frames are destroyed, so its Stream still
// refers to this connection): an exception resets the connection.
void StreamConnection::task_ended(void* self, std::exception_ptr error) noexcept {
  auto* c = static_cast<StreamConnection*>(self);
  c->task_ = {};
  if (error) c->stream_close(true);
}

void StreamConnection::on_data(std::span<const std::byte>) {
  RecvBuffer kept = keep_received();
  if (kept.empty()) return;
  held_ += kept.size();
  chunks_.push_back(Chunk{std::move(kept), 0});
  wake_reader();
  flow();
}

void StreamConnection::on_peer_shutdown() {
  peer_eof_ = true;
  wake_reader();
}

void StreamConnection::on_drain() {
  if (writer_ != nullptr && !over_high_watermark()) {
    WriteAwait* w = std::exchange(writer_, nullptr);
    arm_deadline();
    w->finish({});
  }
}

void StreamConnection::on_close(CloseReason reason) {
  closed_ = true;
  switch (reason) {
    case CloseReason::closed:
    case CloseReason::aborted: close_error_ = make_error_code(StreamErrc::not_connected); break;
    case CloseReason::peer_closed: break;  // the end of the stream
    case CloseReason::peer_reset: close_error_ = std::make_error_code(std::errc::connection_reset); break;
    case CloseReason::error:
      close_error_ = std::error_code(last_error() != 0 ? last_error() : EIO, std::generic_category());
      break;
    case CloseReason::connect_failed:
      close_error_ = std::error_code(last_error() != 0 ? last_error() : ECONNREFUSED, std::generic_category());
      break;
    case CloseReason::shutdown: close_error_ = std::make_error_code(std::errc::operation_canceled); break;
    case CloseReason::input_too_large: close_error_ = std::make_error_code(std::errc::message_size); break;
    case CloseReason::idle_timeout:
    case CloseReason::read_timeout:
    case CloseReason::send_timeout:
    case CloseReason::timeout: close_error_ = std::make_error_code(std::errc::timed_out); break;
  }
  if (scheduled()) reactor().cancel(static_cast<Timer&>(*this));
  if (dialer_ != nullptr) {
    std::exchange(dialer_, nullptr)->connected(close_error_ ? close_error_ : make_error_code(StreamErrc::not_connected));
    return;
  }
  if (WriteAwait* w = std::exchange(writer_, nullptr)) w->finish(write_error());
  wake_reader();
  // The connection ended on its own: the task is cancelled (stopped when the
  // shard stops). One that closed its stream itself goes on undisturbed.
  if (!closed_by_stream_) {
    if (reason == CloseReason::shutdown) {
      task_.stop();
    } else {
      task_.cancel();
    }
  }
}

std::error_code StreamConnection::end_error() const noexcept {
  if (closed_ && close_error_) return close_error_;
  return {};  // a clean end
}

void StreamConnection::wake_reader() {
  if (reader_ != nullptr && fill(*reader_)) {
    ReadAwait* r = std::exchange(reader_, nullptr);
    arm_deadline();
    r->finish(r->error_);
  }
}

// Reception pauses while much is held unread; a reader that needs more
// than that (read_exactly(n), read_until with a large maximum) raises it.
void StreamConnection::flow() noexcept {
  std::size_t limit = kHoldBytes;
  if (reader_ != nullptr && (reader_->kind_ == ReadAwait::Kind::exactly || reader_->kind_ == ReadAwait::Kind::until)) {
    limit = std::max(limit, reader_->n_ + reader_->delim_.size());
  }
  const bool over = held_ > limit || chunks_.size() >= kHoldChunks;
  if (over && !paused_by_stream_) {
    paused_by_stream_ = true;
    pause_reading();
  } else if (!over && paused_by_stream_ && held_ <= limit / 2 && chunks_.size() < kHoldChunks / 2) {
    paused_by_stream_ = false;
    resume_reading();
  }
}

// At the start of a read the view the last one gave is over: chunks read
// to their end go back to the receive ring.
void StreamConnection::begin_read() noexcept {
  std::size_t done = 0;
  while (done < chunks_.size() && chunks_[done].off >= chunks_[done].buf.size()) ++done;
  if (done > 0) chunks_.erase(chunks_.begin(), chunks_.begin() + static_cast<std::ptrdiff_t>(done));
  flow();
}

std::size_t StreamConnection::copy_out(std::span<std::byte> out) noexcept {
  std::size_t n = 0;
  for (Chunk& c : chunks_) {
    if (n == out.size()) break;
    const auto rest = c.rest();
    const std::size_t k = std::min(rest.size(), out.size() - n);
    std::memcpy(out.data() + n, rest.data(), k);
    c.off += k;
    n += k;
  }
  held_ -= n;
  return n;
}

// The next n held bytes as one view: inside the first chunk when it holds
// them all, else copied into the stream's buffer.
std::span<const std::byte> StreamConnection::assemble(std::size_t n) {
  if (n == 0) return {};
  Chunk& front = *std::find_if(chunks_.begin(), chunks_.end(), [](const Chunk& c) { return c.off < c.buf.size(); });
  if (front.rest().size() >= n) {
    const auto view = front.rest().first(n);
    front.off += n;
    held_ -= n;
    return view;
  }
  scratch_.resize(n);
  const std::size_t got = copy_out(std::as_writable_bytes(std::span(scratch_.data(), n)));
  return std::as_bytes(std::span(scratch_.data(), got));
}

// The offset of `delim` in the held bytes (counted from the first unread
// one), starting at `from`, ending within the first `limit` bytes; npos if
// it is not there.
std::size_t StreamConnection::find_held(std::string_view delim, std::size_t from, std::size_t limit) const noexcept {
  if (delim.empty()) return from <= limit ? from : std::string::npos;
  std::size_t base = 0;  // offset of this chunk's first unread byte
  for (std::size_t ci = 0; ci < chunks_.size() && base < limit; ++ci) {
    const auto rest = chunks_[ci].rest();
    const char* p = reinterpret_cast<const char*>(rest.data());
    const std::size_t n = rest.size();
    if (base + n <= from) {
      base += n;
      continue;
    }
    std::size_t i = from > base ? from - base : 0;
    while (i < n) {
      const void* hit = std::memchr(p + i, delim[0], n - i);
      if (hit == nullptr) break;
      i = static_cast<std::size_t>(static_cast<const char*>(hit) - p);
      if (base + i + delim.size() > limit) return std::string::npos;
      if (held_matches(ci, i, delim)) return base + i;
      ++i;
    }
    base += n;
  }
  return std::string::npos;
}

bool StreamConnection::held_matches(std::size_t chunk, std::size_t at, std::string_view delim) const noexcept {
  std::size_t k = 0;
  for (std::size_t ci = chunk; ci < chunks_.size() && k < delim.size(); ++ci, at = 0) {
    const auto rest = chunks_[ci].rest();
    const char* p = reinterpret_cast<const char*>(rest.data());
    for (std::size_t i = at; i < rest.size() && k < delim.size(); ++i, ++k) {
      if (p[i] != delim[k]) return false;
    }
  }
  return k == delim.size();
}

bool StreamConnection::fill(ReadAwait& r) {
  const bool ended = peer_eof_ || closed_;
  switch (r.kind_) {
    case ReadAwait::Kind::chunk:
      if (held_ > 0) {
        for (Chunk& c : chunks_) {
          if (c.off < c.buf.size()) {
            r.bytes_ = c.rest();
            held_ -= r.bytes_.size();
            c.off = c.buf.size();
            return true;
          }
        }
      }
      break;
    case ReadAwait::Kind::some:
      if (held_ > 0) {
        r.bytes_ = r.out_.first(copy_out(r.out_));
        begin_read();  // copied: the chunks read to their end can go now
        return true;
      }
      break;
    case ReadAwait::Kind::exactly:
      if (held_ >= r.n_) {
        r.bytes_ = assemble(r.n_);
        return true;
      }
      if (ended && held_ > 0) {
        r.bytes_ = assemble(held_);
        r.error_ = make_error_code(StreamErrc::unexpected_eof);
        return true;
      }
      break;
    case ReadAwait::Kind::until: {
      if (held_ == 0) break;
      // Search the held bytes (at most max + the delimiter of them).
      const std::size_t limit = std::min(held_, r.n_ + r.delim_.size());
      // Only the bytes that came since the last look (a delimiter may begin
      // in its last delim - 1 bytes), across chunks without a copy.
      const std::size_t found = find_held(r.delim_, r.searched_, limit);
      if (found == std::string::npos) r.searched_ = held_ >= r.delim_.size() ? held_ - r.delim_.size() + 1 : 0;
      if (found != std::string::npos) {
        r.bytes_ = assemble(found + r.delim_.size());
        return true;
      }
      if (held_ >= r.n_ + r.delim_.size()) {
        r.error_ = make_error_code(StreamErrc::too_long);  // the bytes stay unread
        return true;
      }
      if (ended) {
        r.bytes_ = assemble(held_);
        r.error_ = make_error_code(StreamErrc::unexpected_eof);
        return true;
      }
      break;
    }
  }
  if (ended) {
    r.error_ = end_error();
    return true;
  }
  return false;
}

void StreamConnection::enqueue(WriteAwait& w) {
  switch (w.kind_) {
    case WriteAwait::Kind::span: {
      const auto span = w.span_;
      // The view the last read() gave, read to its end: its receive buffer
      // goes out as it is.
      if (!chunks_.empty() && chunks_.front().off == chunks_.front().buf.size() && !span.empty()) {
        const auto whole = chunks_.front().buf.bytes();
        if (span.data() >= whole.data() && span.data() + span.size() <= whole.data() + whole.size()) {
          RecvBuffer buf = std::move(chunks_.front().buf);
          chunks_.erase(chunks_.begin());
          buf.narrow(static_cast<std::size_t>(span.data() - whole.data()), span.size());
          send(std::move(buf));
          return;
        }
      }
      send(span);
      return;
    }
    case WriteAwait::Kind::string: send(std::move(w.string_)); return;
    case WriteAwait::Kind::shared: send(std::move(w.shared_)); return;
    case WriteAwait::Kind::received: send(std::move(w.received_)); return;
  }
}

void StreamConnection::stream_close(bool abort_now) noexcept {
  if (closed_) return;
  closed_by_stream_ = true;
  if (abort_now) {
    abort();
  } else {
    close();
  }
}

// A write that timed out leaves the stream in no known state: the queue is
// dropped and the peer sees a reset, not a truncated end.
void StreamConnection::reset_for_write_timeout() noexcept {
  if (closed_) return;
  closed_by_stream_ = true;
  const linger reset{1, 0};
  if (fd() >= 0) (void)::setsockopt(fd(), SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
  timed_out();
}

void StreamConnection::stream_shutdown_write() noexcept {
  if (closed_ || write_shut_by_stream_) return;
  write_shut_by_stream_ = true;
  shutdown_write();
}

void StreamConnection::arm_deadline() noexcept {
  Clock::time_point t = Clock::time_point::max();
  if (reader_ != nullptr) t = std::min(t, read_deadline_);
  if (writer_ != nullptr) t = std::min(t, write_deadline_);
  if (t == Clock::time_point::max() || closed_) {
    if (scheduled()) reactor().cancel(static_cast<Timer&>(*this));
    return;
  }
  if (scheduled() && deadline() == t) return;
  reactor().schedule(static_cast<Timer&>(*this), t);
}

void StreamConnection::fire() {
  const auto now = Clock::now();
  if (reader_ != nullptr && now >= read_deadline_) {
    ReadAwait* r = std::exchange(reader_, nullptr);
    r->finish(std::make_error_code(std::errc::timed_out));
  }
  if (writer_ != nullptr && now >= write_deadline_) {
    // A write that timed out leaves the stream in no known state: reset.
    WriteAwait* w = std::exchange(writer_, nullptr);
    reset_for_write_timeout();
    w->finish(std::make_error_code(std::errc::timed_out));
  }
  arm_deadline();
}

}  // namespace detail

// ---- awaits ----------------------------------------------------------------

namespace detail {

StreamAwait::~StreamAwait() {
  if (waiting_ && conn_ != nullptr) conn_->forget(this);
}

bool StreamAwait::suspend(std::coroutine_handle<> h, TaskRoot* root) {
  root_ = root;
  if (root_ != nullptr) {
    const TaskRoot::Admit admit = root_->suspend_in(*this);
    if (admit == TaskRoot::Admit::cancelled) {
      error_ = std::make_error_code(std::errc::operation_canceled);
      return false;
    }
    if (admit == TaskRoot::Admit::parked) return true;
  }
  h_ = h;
  waiting_ = true;
  if (writer_) {
    conn_->wait_write(static_cast<WriteAwait*>(this));
  } else {
    conn_->wait_read(static_cast<ReadAwait*>(this));
  }
  return true;
}

void StreamAwait::finish(std::error_code error) noexcept {
  waiting_ = false;
  if (!error_) error_ = error;
  if (root_ != nullptr) root_->resumed();
  h_.resume();
}

bool StreamAwait::cancel() noexcept {
  // Nothing of a read or write wait is in the kernel: the bytes of a write
  // are the connection's already.
  if (waiting_ && conn_ != nullptr) conn_->forget(this);
  waiting_ = false;
  return true;
}

void StreamAwait::resume_cancelled() noexcept {
  error_ = std::make_error_code(std::errc::operation_canceled);
  h_.resume();
}

}  // namespace detail

bool ReadAwait::await_ready() {
  if (conn_ == nullptr) {
    error_ = make_error_code(StreamErrc::not_connected);
    return true;
  }
  conn_->begin_read();
  if (conn_->read_late()) {
    error_ = std::make_error_code(std::errc::timed_out);
    return true;
  }
  return conn_->fill(*this);
}

bool WriteAwait::await_ready() {
  if (conn_ == nullptr) {
    error_ = make_error_code(StreamErrc::not_connected);
    return true;
  }
  if (conn_->write_closed()) {
    error_ = conn_->write_error();
    return true;
  }
  if (conn_->write_late()) {
    error_ = std::make_error_code(std::errc::timed_out);
    conn_->reset_for_write_timeout();
    return true;
  }
  conn_->enqueue(*this);
  return !conn_->over_high_watermark();
}

// ---- Stream ----------------------------------------------------------------

Stream::Stream(detail::StreamConnection* conn) noexcept : conn_(conn) {
  if (conn_ != nullptr) conn_->handle_ = this;
}

Stream::Stream(Stream&& other) noexcept : conn_(std::exchange(other.conn_, nullptr)) {
  if (conn_ != nullptr) conn_->handle_ = this;
}

Stream& Stream::operator=(Stream&& other) noexcept {
  if (this != &other) {
    if (conn_ != nullptr) {
      conn_->handle_ = nullptr;
      conn_->stream_close(false);
    }
    conn_ = std::exchange(other.conn_, nullptr);
    if (conn_ != nullptr) conn_->handle_ = this;
  }
  return *this;
}

Stream::~Stream() {
  if (conn_ != nullptr) {
    conn_->handle_ = nullptr;
    conn_->stream_close(false);
  }
}

void Stream::shutdown_write() noexcept {
  if (conn_ != nullptr) conn_->stream_shutdown_write();
}
void Stream::close() noexcept {
  if (conn_ != nullptr) conn_->stream_close(false);
}
void Stream::abort() noexcept {
  if (conn_ != nullptr) conn_->stream_close(true);
}
void Stream::set_deadline(Clock::time_point t) noexcept {
  set_read_deadline(t);
  set_write_deadline(t);
}
void Stream::set_read_deadline(Clock::time_point t) noexcept {
  if (conn_ != nullptr) conn_->set_read_deadline(t);
}
void Stream::set_write_deadline(Clock::time_point t) noexcept {
  if (conn_ != nullptr) conn_->set_write_deadline(t);
}
Address Stream::local() const {
  if (conn_ == nullptr || conn_->fd() < 0) return {};
  try {
    return Address::of_socket(conn_->fd(), false);
  } catch (const std::system_error&) {
    return {};
  }
}
Address Stream::peer() const { return conn_ != nullptr ? conn_->peer() : Address{}; }
bool Stream::is_open() const noexcept { return conn_ != nullptr && !conn_->closed(); }
std::size_t Stream::pending_write_bytes() const noexcept { return conn_ != nullptr ? conn_->pending_send_bytes() : 0; }
std::error_code Stream::close_error() const noexcept {
  return conn_ != nullptr ? conn_->close_error() : make_error_code(StreamErrc::not_connected);
}

// ---- serve and dial --------------------------------------------------------

ListenerHandle serve(Runtime& rt, const ListenOptions& options, StreamHandler handler) {
  auto shared = std::make_shared<const StreamHandler>(std::move(handler));
  return listen<detail::StreamConnection>(rt, options, shared);
}

DialAwait::~DialAwait() {
  if (deadline_.scheduled()) current_reactor().cancel(deadline_);
  if (conn_ != nullptr && conn_->dialer_ == this) {
    conn_->dialer_ = nullptr;
    conn_->abort();
  }
}

bool DialAwait::suspend(std::coroutine_handle<> h, TaskRoot* root) {
  root_ = root;
  if (root_ != nullptr) {
    const TaskRoot::Admit admit = root_->suspend_in(*this);
    if (admit == TaskRoot::Admit::cancelled) {
      error_ = std::make_error_code(std::errc::operation_canceled);
      return false;
    }
    if (admit == TaskRoot::Admit::parked) return true;
  }
  Shard* shard = Shard::current();
  if (shard == nullptr) throw std::logic_error("ringshard: dial outside a shard thread");
  auto conn = std::make_unique<detail::StreamConnection>(nullptr);
  conn->set_options(options_);
  conn->attach_connect(target_);
  conn->dialer_ = this;
  conn_ = conn.get();
  h_ = h;
  auto& table = actors::ActorTable::of(*shard);
  actors::RawRef ref = table.reserve();
  ref.shard = shard->id();
  installing_ = true;
  table.install(ref, std::move(conn));  // starts connecting; may end at once
  installing_ = false;
  if (done_) {
    if (root_ != nullptr) root_->resumed();
    return false;
  }
  if (timeout_.count() > 0) {
    deadline_.self = this;
    shard->reactor().schedule(deadline_, timeout_);
  }
  return true;
}

void DialAwait::connected(std::error_code error) noexcept {
  done_ = true;
  if (error) {
    error_ = timed_out_ ? std::make_error_code(std::errc::timed_out) : error;
    conn_ = nullptr;
  }
  if (deadline_.scheduled()) current_reactor().cancel(deadline_);
  if (installing_) return;  // await_suspend goes on without suspending
  if (root_ != nullptr) root_->resumed();
  h_.resume();
}

void DialAwait::Deadline::fire() {
  self->timed_out_ = true;
  if (self->conn_ != nullptr) self->conn_->abort();
}

bool DialAwait::cancel() noexcept {
  if (deadline_.scheduled()) current_reactor().cancel(deadline_);
  if (conn_ != nullptr) {
    conn_->dialer_ = nullptr;
    conn_->abort();
    conn_ = nullptr;
  }
  return true;
}

void DialAwait::resume_cancelled() noexcept {
  error_ = std::make_error_code(std::errc::operation_canceled);
  h_.resume();
}

DialResult DialAwait::await_resume() noexcept {
  if (error_ || conn_ == nullptr) {
    return DialResult{Stream(), error_ ? error_ : make_error_code(StreamErrc::not_connected)};
  }
  return DialResult{Stream(conn_), {}};
}

}  // namespace ringshard::net

namespace ringshard::net {

// ---- the accept loop ---------------------------------------------------------

Accepted& Accepted::operator=(Accepted&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

Accepted::~Accepted() {
  if (fd_ >= 0) ::close(fd_);
}

Address Accepted::peer() const {
  if (fd_ < 0) return {};
  try {
    return Address::of_socket(fd_, true);
  } catch (const std::system_error&) {
    return {};
  }
}

StreamListener::StreamListener(const ListenOptions& options)
    : fd_(detail::open_listening_socket(options, options.address, false)),
      address_(options.address.is_unix() ? options.address : Address::of_socket(fd_)) {}

StreamListener::~StreamListener() { close(); }

void StreamListener::close() noexcept {
  if (fd_ >= 0) ::close(std::exchange(fd_, -1));
}

void StreamListener::AcceptPrep::operator()(io_uring_sqe* sqe) const noexcept {
  uring::prep_accept(sqe, fd, nullptr, nullptr, SOCK_CLOEXEC);
}

AcceptResult StreamListener::AcceptAwait::await_resume() noexcept {
  if (fd_ < 0) return {Accepted(), std::make_error_code(std::errc::bad_file_descriptor)};
  const int res = io_.await_resume();
  if (res < 0) return {Accepted(), std::error_code(-res, std::generic_category())};
  return {Accepted(res), {}};
}

namespace {
// An accepted socket on its way to a shard: closed if the job never runs.
struct FdInFlight {
  int fd;
  explicit FdInFlight(int f) noexcept : fd(f) {}
  FdInFlight(FdInFlight&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
  FdInFlight& operator=(FdInFlight&&) = delete;
  ~FdInFlight() {
    if (fd >= 0) ::close(fd);
  }
};
}  // namespace

void start_stream(Runtime& rt, unsigned shard, Accepted conn, StreamHandler handler, const ConnectionOptions& options) {
  if (conn.fd() < 0) return;
  NetShard& net = NetShard::of(rt.shard(shard));
  net.connections.fetch_add(1, std::memory_order_relaxed);  // as the listener counts its accepts
  net.accepted.fetch_add(1, std::memory_order_relaxed);
  auto shared = std::make_shared<const StreamHandler>(std::move(handler));
  rt.post(shard, [fd = FdInFlight(conn.release()), shared = std::move(shared), options]() mutable {
    auto actor = std::make_unique<detail::StreamConnection>(shared);
    actor->set_options(options);
    actor->attach_accepted(std::exchange(fd.fd, -1), Address{});
    Shard& here = *Shard::current();
    auto& table = actors::ActorTable::of(here);
    actors::RawRef ref = table.reserve();
    ref.shard = here.id();
    table.install(ref, std::move(actor));
  });
}

}  // namespace ringshard::net
