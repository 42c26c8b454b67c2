// Responder: the right to answer one request, now or later, with a whole
// Response or with a body streamed in pieces (BodyStream).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>

#include "ringshard/net/buffers.hpp"
#include "ringshard/net/http/message.hpp"

namespace ringshard::net::http {

namespace detail {
class SessionCore;
struct StreamState;
}

/// The body of a streamed response (Responder::stream), written in pieces as
/// the connection drains: memory stays bounded by the connection's high
/// watermark however large the body, and nothing is produced for a
/// connection that is gone. A cheap handle (copies refer to the same
/// stream); shard-local: use it on the shard thread that owns the connection.
///
/// - write() queues a piece (copied, or a SharedBuffer without a copy);
///   write while ready() is true and wait for the stream's on_ready
///   otherwise. Writes made while not ready are kept, not lost, but nothing
///   bounds them.
/// - With a declared length the stream ends by itself once that many bytes
///   are written (more is refused); end() before that, or a stream given up
///   (below), closes the connection after what was written, since the
///   response cannot be completed. Without a length the body goes chunked
///   (HTTP/1.0: until the connection closes) and end() writes the last chunk.
/// - A stream is given up when it cannot go on: its on_ready throws, or
///   makes no progress (writes nothing, does not end) while no BodyStream
///   copy is left outside it, or every copy is dropped and it has no
///   on_ready. A producer waiting for data from elsewhere keeps a copy and
///   writes when the data comes.
/// - Responses to the requests after a streamed one go out after it ends;
///   those requests are not dispatched while it streams.
class BodyStream {
 public:
  BodyStream() noexcept = default;
  BodyStream(const BodyStream& other) noexcept;
  BodyStream& operator=(const BodyStream& other) noexcept;
  BodyStream(BodyStream&& other) noexcept;
  BodyStream& operator=(BodyStream&& other) noexcept;
  ~BodyStream();

  /// Queues `bytes` (copied). False when nothing more goes out (the
  /// connection is gone, the stream ended, a HEAD request, or past the
  /// declared length: the bytes are dropped).
  bool write(std::string_view bytes);
  /// Queues shared bytes without a copy (once the stream's turn has come).
  bool write(SharedBuffer bytes);
  /// Ends the body (no effect once ended).
  void end();
  /// True while a write goes out now without queuing past the connection's
  /// high watermark (the stream's turn has come and the output drained).
  [[nodiscard]] bool ready() const noexcept;
  /// True while writing still reaches the connection (not ended, not gone).
  [[nodiscard]] bool alive() const noexcept;
  /// Body bytes written so far.
  [[nodiscard]] std::size_t written() const noexcept;

 private:
  friend class detail::SessionCore;
  BodyStream(std::weak_ptr<detail::SessionCore> core, const std::shared_ptr<detail::StreamState>& state) noexcept;
  void release() noexcept;

  std::weak_ptr<detail::SessionCore> core_;
  std::weak_ptr<detail::StreamState> state_;
};

/// Called whenever a stream can take more (see Responder::stream).
using StreamProducer = std::function<void(BodyStream&)>;

/// Move-only handle a handler receives to answer its request, at once or
/// later (for instance after asking an actor on another shard). Responses
/// still go out in request order: an answer to a later request waits for the
/// earlier ones.
///
/// - Answering after the session is gone (connection closed) does nothing.
/// - A Responder dropped without answering answers 500, so the responses
///   pipelined behind it are not held forever; one held longer than the
///   server's response_timeout has a 504 sent for it, and its own answer
///   then does nothing (session_alive() turns false).
/// - Not thread-safe: call it on the shard thread that owns the connection.
class Responder {
 public:
  Responder() noexcept = default;
  Responder(Responder&& other) noexcept;
  /// Answers 500 for the request this one still owed, then takes `other`'s.
  Responder& operator=(Responder&& other) noexcept;
  Responder(const Responder&) = delete;
  Responder& operator=(const Responder&) = delete;
  ~Responder();

  /// Answers the request. Only the first call counts; later calls and calls
  /// after the session is gone do nothing.
  void operator()(Response response);

  /// Answers with a streamed body. `head` gives the status, content type and
  /// headers (its body is ignored). `length` is the body's size when known
  /// (sent as Content-Length); without it the body is sent chunked (to an
  /// HTTP/1.0 client: until the connection closes).
  ///
  /// `on_ready` runs (on the connection's shard) whenever the stream can
  /// take more: when its turn comes (at once if no earlier response is still
  /// owed: before stream() returns), again while a call wrote something and
  /// the output is not congested, and each time the connection has drained
  /// to its low watermark. It writes what it has, ideally while ready(), and
  /// ends the stream when the body is complete. It never runs for a
  /// connection that is gone, nor for a HEAD request (only the head goes out).
  ///
  /// Returns the stream (for writing from elsewhere, e.g. as data arrives
  /// from another actor); an empty one if this Responder no longer owes an
  /// answer or the session is gone. Consumes the Responder.
  BodyStream stream(Response head, std::optional<std::size_t> length = std::nullopt, StreamProducer on_ready = {});

  /// True while this Responder still owes an answer.
  [[nodiscard]] explicit operator bool() const noexcept { return owed_; }
  /// True while answering would still reach the connection (the session
  /// lives and the request was not answered for it, by a 504).
  [[nodiscard]] bool session_alive() const noexcept;

 private:
  friend class detail::SessionCore;
  Responder(std::weak_ptr<detail::SessionCore> core, std::uint64_t seq) noexcept
      : core_(std::move(core)), seq_(seq), owed_(true) {}
  void answer_internal_error() noexcept;

  std::weak_ptr<detail::SessionCore> core_;
  std::uint64_t seq_ = 0;
  bool owed_ = false;
};

}  // namespace ringshard::net::http
