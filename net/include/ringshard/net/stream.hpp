// Stream: a connection read and written by a coroutine, in sequence (the
// counterpart of Go's net.Conn), on the same shards, receive rings and
// listener policies as connection actors.
//
//   ringshard::net::serve(runtime, {.address = addr}, [](ringshard::net::Stream s) -> ringshard::Task<> {
//     for (;;) {
//       auto r = co_await s.read();            // a view into the receive buffer
//       if (!r) co_return;                     // end of stream (r.eof()) or an error (r.error)
//       co_await s.write(r.bytes);             // the received buffer itself goes out
//     }
//   });
//
// Reading. The connection receives into the shard's receive ring as an actor
// does, and keeps what arrived (up to a bound, then reception pauses) until
// the coroutine reads it. read() yields the next received chunk as a view,
// without a copy; read_exactly(n) and read_until(delim, max) yield a view
// too (into the chunk when it holds the whole of it, else into the stream's
// own buffer); read_some(span) copies. A view is valid until the next read
// on the stream. End of stream is a result (eof()), not an exception; so are
// errors (error: a std::error_code).
//
// Writing. write() queues the bytes in order with everything written before
// and resumes at once while the bytes queued for the kernel stay under the
// connection's high watermark; above it, the write waits until the kernel
// has taken them down to the low watermark (backpressure is the write
// waiting). A span is copied, except the view the last read() gave (its
// receive buffer is sent as it is); a std::string, a SharedBuffer or a kept
// RecvBuffer are sent without a copy.
//
// Deadlines, as Go's: an operation pending at its deadline, or started
// after it, fails with std::errc::timed_out. A read that timed out leaves the
// stream usable (set a new deadline); a write that timed out resets the
// connection. Clock::time_point::max() (the default) means no deadline.
//
// Lifetime. A served stream's coroutine is a root task (see task.hpp) on
// the connection's shard. When it returns, the stream closes (after what
// was written). When the connection ends on its own (the peer reset, a
// timeout), the pending read or write fails with the error and the task is
// cancelled (later awaits fail at once with operation_canceled); when its
// shard stops, the task is stopped and its frames destroyed. An exception
// escaping the coroutine is logged in one line and resets the connection.
// A Stream is used on its shard only; once its connection is gone every
// operation fails with StreamErrc::not_connected.
#pragma once

#include <chrono>
#include <coroutine>
#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

#include "ringshard/framework/task.hpp"
#include "ringshard/net/buffers.hpp"
#include "ringshard/net/connection.hpp"
#include "ringshard/net/listener.hpp"

namespace ringshard::net {

enum class StreamErrc {
  unexpected_eof = 1,  ///< the stream ended inside a read_exactly / read_until
  too_long,            ///< read_until found no delimiter within its maximum
  not_connected,       ///< the stream has no connection (closed, moved from, or gone)
};
const std::error_category& stream_category() noexcept;
inline std::error_code make_error_code(StreamErrc e) noexcept { return {static_cast<int>(e), stream_category()}; }

}  // namespace ringshard::net

template <>
struct std::is_error_code_enum<ringshard::net::StreamErrc> : std::true_type {};

namespace ringshard::net {

class Stream;
namespace detail {
class StreamConnection;
}

/// What a read gives: bytes (valid until the next read), or the end of the
/// stream (no bytes, no error), or an error.
struct ReadResult {
  std::span<const std::byte> bytes{};
  std::error_code error{};
  [[nodiscard]] bool eof() const noexcept { return bytes.empty() && !error; }
  /// True when there are bytes (and no error).
  explicit operator bool() const noexcept { return !bytes.empty() && !error; }
  [[nodiscard]] std::string_view text() const noexcept {
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
  }
};

/// What read_some gives: how many bytes were copied (0 and no error: the end).
struct ReadSomeResult {
  std::size_t size = 0;
  std::error_code error{};
  [[nodiscard]] bool eof() const noexcept { return size == 0 && !error; }
  explicit operator bool() const noexcept { return size > 0 && !error; }
};

namespace detail {

/// The await of a stream operation (read or write).
class StreamAwait : public Suspension {
 public:
  StreamAwait(const StreamAwait&) = delete;
  StreamAwait& operator=(const StreamAwait&) = delete;

  // From the connection.
  void finish(std::error_code error) noexcept;  // resumes the coroutine
  bool cancel() noexcept override;
  void resume_cancelled() noexcept override;

 protected:
  StreamAwait() = default;
  ~StreamAwait();
  bool suspend(std::coroutine_handle<> h, TaskRoot* root);
  StreamConnection* conn_ = nullptr;
  std::coroutine_handle<> h_{};
  TaskRoot* root_ = nullptr;
  std::error_code error_{};
  bool writer_ = false;
  bool waiting_ = false;
};

}  // namespace detail

class ReadAwait final : public detail::StreamAwait {
 public:
  enum class Kind { chunk, exactly, until, some };
  ReadAwait(detail::StreamConnection* conn, Kind kind, std::size_t n = 0, std::string_view delim = {}) noexcept
      : kind_(kind), n_(n), delim_(delim) {
    conn_ = conn;
  }
  bool await_ready();
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    return suspend(h, ringshard::detail::root_of(h));
  }
  ReadResult await_resume() noexcept { return {bytes_, error_}; }

 private:
  friend class Stream;
  friend class detail::StreamConnection;
  friend class ReadSomeAwait;
  bool try_complete();  // from the connection as bytes arrive
  Kind kind_;
  std::size_t n_ = 0;          // exactly: the count; until: the maximum
  std::string_view delim_{};   // until
  std::size_t searched_ = 0;   // until: held bytes already searched (no delimiter begins before)
  std::span<std::byte> out_{}; // some
  std::span<const std::byte> bytes_{};
};

/// read_some's await: as ReadAwait, giving a count.
class ReadSomeAwait {
 public:
  ReadSomeAwait(detail::StreamConnection* conn, std::span<std::byte> out) noexcept
      : inner_(conn, ReadAwait::Kind::some) {
    inner_.out_ = out;
  }
  bool await_ready() { return inner_.await_ready(); }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    return inner_.await_suspend(h);
  }
  ReadSomeResult await_resume() noexcept { return {inner_.bytes_.size(), inner_.error_}; }

 private:
  ReadAwait inner_;
};

class WriteAwait final : public detail::StreamAwait {
 public:
  WriteAwait(detail::StreamConnection* conn, std::span<const std::byte> bytes) noexcept : span_(bytes) { init(conn); }
  WriteAwait(detail::StreamConnection* conn, std::string&& bytes) noexcept : kind_(Kind::string), string_(std::move(bytes)) {
    init(conn);
  }
  WriteAwait(detail::StreamConnection* conn, SharedBuffer bytes) noexcept : kind_(Kind::shared), shared_(std::move(bytes)) {
    init(conn);
  }
  WriteAwait(detail::StreamConnection* conn, RecvBuffer&& bytes) noexcept : kind_(Kind::received), received_(std::move(bytes)) {
    init(conn);
  }
  bool await_ready();
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    return suspend(h, ringshard::detail::root_of(h));
  }
  std::error_code await_resume() noexcept { return error_; }

 private:
  friend class detail::StreamConnection;
  enum class Kind : unsigned char { span, string, shared, received };
  void init(detail::StreamConnection* conn) noexcept {
    conn_ = conn;
    writer_ = true;
  }
  Kind kind_ = Kind::span;
  std::span<const std::byte> span_{};
  std::string string_{};
  SharedBuffer shared_{};
  RecvBuffer received_{};
};

class Stream {
 public:
  Stream() noexcept = default;
  explicit Stream(detail::StreamConnection* conn) noexcept;
  Stream(Stream&& other) noexcept;
  Stream& operator=(Stream&& other) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  /// Closes the stream (after what was written).
  ~Stream();

  /// The next received chunk (a view into the receive buffer).
  [[nodiscard]] ReadAwait read() noexcept { return ReadAwait(conn_, ReadAwait::Kind::chunk); }
  /// Exactly `n` bytes (n > 0); the end of the stream before them is
  /// StreamErrc::unexpected_eof, with the bytes there were.
  [[nodiscard]] ReadAwait read_exactly(std::size_t n) noexcept { return {conn_, ReadAwait::Kind::exactly, n}; }
  /// The bytes up to and including the first `delim`, at most `max` bytes
  /// before it (StreamErrc::too_long otherwise; the bytes stay unread).
  [[nodiscard]] ReadAwait read_until(std::string_view delim, std::size_t max) noexcept {
    return {conn_, ReadAwait::Kind::until, max, delim};
  }
  /// Copies what is there (waiting for at least one byte) into `out`.
  [[nodiscard]] ReadSomeAwait read_some(std::span<std::byte> out) noexcept { return {conn_, out}; }

  [[nodiscard]] WriteAwait write(std::span<const std::byte> bytes) noexcept { return {conn_, bytes}; }
  [[nodiscard]] WriteAwait write(std::string_view bytes) noexcept {
    return {conn_, std::as_bytes(std::span(bytes.data(), bytes.size()))};
  }
  [[nodiscard]] WriteAwait write(const char* bytes) noexcept { return write(std::string_view(bytes)); }
  [[nodiscard]] WriteAwait write(std::string&& bytes) noexcept { return {conn_, std::move(bytes)}; }
  [[nodiscard]] WriteAwait write(SharedBuffer bytes) noexcept { return {conn_, std::move(bytes)}; }
  [[nodiscard]] WriteAwait write(RecvBuffer&& bytes) noexcept { return {conn_, std::move(bytes)}; }

  /// Shuts down the sending side once what was written is sent (the peer
  /// reads the end of the stream); reading goes on.
  void shutdown_write() noexcept;
  /// Closes after what was written is sent; pending and later operations fail.
  void close() noexcept;
  /// Resets the connection now, dropping what is queued.
  void abort() noexcept;

  void set_deadline(Clock::time_point t) noexcept;
  void set_read_deadline(Clock::time_point t) noexcept;
  void set_write_deadline(Clock::time_point t) noexcept;

  /// This side's address and the peer's (unspecified once closed).
  [[nodiscard]] Address local() const;
  [[nodiscard]] Address peer() const;
  /// True while the connection is open (the peer may have ended its side).
  [[nodiscard]] bool is_open() const noexcept;
  /// Bytes written and not yet taken by the kernel.
  [[nodiscard]] std::size_t pending_write_bytes() const noexcept;
  /// Why the connection closed (valid once !is_open()).
  [[nodiscard]] std::error_code close_error() const noexcept;

 private:
  friend class detail::StreamConnection;
  detail::StreamConnection* conn_ = nullptr;
};

/// The coroutine run for each accepted connection.
using StreamHandler = std::function<Task<>(Stream)>;

/// Accepts connections as listen() does (every policy) and runs `handler`
/// for each, on the shard the policy picks.
ListenerHandle serve(Runtime& rt, const ListenOptions& options, StreamHandler handler);

struct DialResult {
  Stream stream;
  std::error_code error{};
  explicit operator bool() const noexcept { return !error; }
};

/// co_await dial(address, timeout): a connection from the calling shard.
/// Fails with the connect error, or timed_out after `timeout` (0: none).
class DialAwait final : public Suspension {
 public:
  DialAwait(const Address& target, std::chrono::milliseconds timeout, ConnectionOptions options) noexcept
      : target_(target), timeout_(timeout), options_(options) {}
  DialAwait(const DialAwait&) = delete;
  DialAwait& operator=(const DialAwait&) = delete;
  ~DialAwait();
  bool await_ready() const noexcept { return false; }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    return suspend(h, ringshard::detail::root_of(h));
  }
  DialResult await_resume() noexcept;

  // From the connection.
  void connected(std::error_code error) noexcept;
  bool cancel() noexcept override;
  void resume_cancelled() noexcept override;

 private:
  class Deadline final : public Timer {
   public:
    DialAwait* self = nullptr;
    void fire() override;
  };
  bool suspend(std::coroutine_handle<> h, TaskRoot* root);
  Address target_;
  std::chrono::milliseconds timeout_;
  ConnectionOptions options_;
  detail::StreamConnection* conn_ = nullptr;
  std::coroutine_handle<> h_{};
  TaskRoot* root_ = nullptr;
  std::error_code error_{};
  Deadline deadline_{};
  bool timed_out_ = false;
  bool installing_ = false;
  bool done_ = false;
};

[[nodiscard]] inline DialAwait dial(const Address& target, std::chrono::milliseconds timeout = {},
                                    ConnectionOptions options = {}) noexcept {
  return {target, timeout, options};
}

// ---- a Go-style accept loop ---------------------------------------------------

/// An accepted socket not yet given to a shard; closes it unless handed on.
class Accepted {
 public:
  Accepted() noexcept = default;
  explicit Accepted(int fd) noexcept : fd_(fd) {}
  Accepted(Accepted&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Accepted& operator=(Accepted&& o) noexcept;
  Accepted(const Accepted&) = delete;
  Accepted& operator=(const Accepted&) = delete;
  ~Accepted();
  [[nodiscard]] int fd() const noexcept { return fd_; }
  /// The peer's address (getpeername).
  [[nodiscard]] Address peer() const;
  [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }

 private:
  int fd_ = -1;
};

struct AcceptResult {
  Accepted conn;
  std::error_code error{};
  explicit operator bool() const noexcept { return !error; }
};

/// A listening socket for an accept loop in a task:
///
///   net::StreamListener l(net::ListenOptions{.address = addr});
///   for (unsigned next = 0;; ++next) {
///     auto a = co_await l.accept();
///     if (!a) break;
///     net::start_stream(runtime, next % runtime.shard_count(), std::move(a.conn), handler);
///   }
///
/// accept() is one IORING_OP_ACCEPT through the calling shard's ring; it can
/// be cancelled like any await. ListenOptions::policy is not used here: the
/// loop decides where each connection goes.
class StreamListener {
 public:
  /// Binds and listens at once (throws std::system_error).
  explicit StreamListener(const ListenOptions& options);
  StreamListener(StreamListener&& o) noexcept : fd_(std::exchange(o.fd_, -1)), address_(o.address_) {}
  StreamListener& operator=(StreamListener&&) = delete;
  StreamListener(const StreamListener&) = delete;
  ~StreamListener();
  [[nodiscard]] const Address& address() const noexcept { return address_; }
  void close() noexcept;

  struct AcceptPrep {
    int fd;
    void operator()(io_uring_sqe* sqe) const noexcept;
  };
  class AcceptAwait {
   public:
    explicit AcceptAwait(int fd) noexcept : io_(AcceptPrep{fd}), fd_(fd) {}
    bool await_ready() noexcept { return fd_ < 0; }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
      return io_.await_suspend(h);
    }
    AcceptResult await_resume() noexcept;

   private:
    IoAwait<AcceptPrep> io_;
    int fd_;
  };
  /// co_await accept(): the next connection, or an error (EBADF once closed,
  /// operation_canceled when cancelled, EMFILE when out of descriptors).
  [[nodiscard]] AcceptAwait accept() noexcept { return AcceptAwait(fd_); }

 private:
  int fd_ = -1;
  Address address_{};
};

/// Runs `handler` for `conn` on shard `shard` (posted to it); options as
/// ListenOptions::connection.
void start_stream(Runtime& rt, unsigned shard, Accepted conn, StreamHandler handler,
                  const ConnectionOptions& options = {});

}  // namespace ringshard::net
