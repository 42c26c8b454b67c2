// Session: the HTTP/1.1 server side of one connection, independent of the
// transport. The connection feeds it the bytes it receives; the session
// parses them (several pipelined requests at once), runs the router's
// handlers and hands the serialised responses back through Output, strictly
// in request order.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "ringshard/framework/reactor.hpp"
#include "ringshard/net/http/message.hpp"
#include "ringshard/net/http/responder.hpp"
#include "ringshard/net/http/router.hpp"

namespace ringshard::net::http {

struct Limits {
  /// Request line plus header block, in bytes as received. Over it: 431
  /// (414 when the request-target alone is over it), then close. The
  /// trailer section of a chunked body has the same limit of its own.
  std::size_t max_header_bytes = 8192;
  /// Request body (declared Content-Length, a chunk's declared size, or the
  /// de-chunked size so far). Over it: 413 at once, then close. Memory for
  /// the body is never sized from a declared length: it grows as the bytes
  /// arrive, so a large limit costs nothing until a body that large comes.
  std::size_t max_body_bytes = std::size_t{1} << 20;
  /// Header fields in the header section; the trailer section of a chunked
  /// body has the same limit of its own. Over it: 431, then close.
  std::size_t max_headers = 100;
  /// Chunk extensions (`;name=value` after a chunk size), over one whole
  /// body: their count, and the bytes of their names and values. They are
  /// parsed and dropped. Over either: 400, then close.
  std::size_t max_chunk_extensions = 16;
  std::size_t max_chunk_extension_bytes = 1024;
};

/// Implemented by the connection. The session calls write() once per
/// response (the bytes are only valid during the call: copy them), then one
/// flush() when it is done with a batch: at the end of each feed() that wrote
/// something, after a deferred answer that let output move on, and right
/// after a `100 Continue`. close_after_flush() means: close the connection
/// once everything written so far is sent; the session writes nothing more.
///
/// congested() is backpressure: while it is true the session dispatches no
/// further request (the response being written still goes out whole, however
/// large); it keeps the input it has not parsed yet and carries on when the
/// connection calls Session::resume().
///
/// write_shared() queues the chunks of a streamed body that come as shared
/// buffers, in order with write() (the default copies them through write()).
/// pause_input(true) tells the connection that the session keeps further
/// input unparsed for now (congested, or a streamed response in progress):
/// it should stop reading until pause_input(false), so that what is kept
/// stays bounded.
struct Output {
  virtual void write(std::string_view bytes) = 0;
  virtual void flush() = 0;
  virtual void close_after_flush() = 0;
  [[nodiscard]] virtual bool congested() const { return false; }
  virtual void write_shared(SharedBuffer bytes) {
    write(std::string_view(reinterpret_cast<const char*>(bytes.bytes().data()), bytes.size()));
  }
  virtual void pause_input(bool /*paused*/) {}
  /// A response's head is being written (any answer form, errors too):
  /// its status. For metrics.
  virtual void on_response(int /*status*/) {}
  /// Handler latency, for metrics: `count` answers made by handlers took
  /// `each` from the handler's call. Answers a handler returns are timed
  /// per batch (the requests one feed() or resume() dispatches): one clock
  /// read at the batch's first dispatch and one at its end, the time split
  /// evenly over the answers made in it; so a pipelined batch costs two
  /// clock reads, not two per request. A deferred answer (Responder) counts
  /// alone, from its batch's first dispatch to the answer. Answers no
  /// handler made (404, 405, a malformed request) are not counted.
  virtual void on_handled(Clock::duration /*each*/, std::size_t /*count*/) {}
  virtual ~Output() = default;
};

/// One per connection; lives on the connection's shard. The router and the
/// output must outlive it. Destroying it makes all its Responders no-ops.
class Session {
 public:
  Session(const Router& router, Limits limits, Output& output);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  /// Parses `bytes` (any split: a part of a request, several requests),
  /// dispatches each complete request, writes the responses that are ready
  /// and flushes once. After a close (`Connection: close`, HTTP/1.0 without
  /// keep-alive, an error) further input is ignored. A complete request that
  /// finds the output congested is not dispatched: the session pauses, and
  /// keeps that request and every byte after it (later feeds are only
  /// appended) until resume().
  void feed(std::string_view bytes);

  /// Carries on after the output drained: a streamed response in progress
  /// gets to write first (its on_ready), then the kept requests are
  /// dispatched while the output is not congested (pausing again when it
  /// is); writes the responses that are ready and flushes once. Does nothing
  /// unless paused or streaming.
  void resume();

  /// The peer will send nothing more (it shut down its side). The responses
  /// still owed are written, then the connection is closed. While paused,
  /// the complete requests kept are answered first, on resume().
  void end_of_input();

  /// True while a request has begun but is not complete (the connection's
  /// cue for a slow-client timeout); false while paused, since the session
  /// is then the one holding the input back.
  [[nodiscard]] bool mid_request() const noexcept;
  /// True while a request has begun and its head (request line and header
  /// block) is not complete yet; false while paused.
  [[nodiscard]] bool reading_head() const noexcept;
  /// True while paused for congestion (see feed()).
  [[nodiscard]] bool paused() const noexcept;
  /// Complete requests dispatched so far.
  [[nodiscard]] std::uint64_t requests() const noexcept;
  /// Responses owed: dispatched requests whose response is not written yet.
  [[nodiscard]] std::size_t pending() const noexcept;
  /// The response deadline, called on a periodic tick: a deferred answer
  /// still owed `limit` after the first call that saw it owed is answered
  /// 504 (through the router's error hook), so the responses pipelined
  /// behind it go out; the Responder's own answer, when it comes, is
  /// dropped. Returns how many were answered so.
  std::size_t expire(std::chrono::steady_clock::time_point now, std::chrono::milliseconds limit);
  /// A graceful stop: no further request is read (one half received is
  /// dropped); the responses owed are written, the last of them carrying
  /// `Connection: close` when it is answered from now on, then the
  /// connection closes. Requests kept while paused are answered first.
  void stop_input();
  /// Answers every request still owed now with `status` (through the
  /// router's error hook), in order; their Responders' answers, when they
  /// come, are dropped. Returns how many were answered so.
  std::size_t answer_owed(int status);
  /// True once the session accepts no more input (it will close, or has
  /// asked the output to close).
  [[nodiscard]] bool closing() const noexcept;

 private:
  std::shared_ptr<detail::SessionCore> core_;
};

}  // namespace ringshard::net::http
