// HTTP/1.1 server: a connection actor that runs an http::Session over its
// socket, and serve() to listen with it.
//
//   auto router = std::make_shared<http::Router>();
//   router->get("/plaintext", [](http::Request&) { return http::Response::text(200, "Hello, World!"); });
//   auto l = http::serve(runtime, listen_options, router);
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ringshard/net/http/session.hpp"
#include "ringshard/net/net_shard.hpp"
#include "ringshard/net/listener.hpp"

namespace ringshard::net::http {

/// Timeouts and limits (0 turns a timeout off). The timeouts are checked on
/// each connection's tick, a quarter of the shortest of them, without reading
/// the clock per request: each one fires between its value and its value plus
/// a tick or two, never early.
struct ServerOptions {
  Limits limits{};
  /// The head of a request (request line and headers) must be complete
  /// within this time of the connection becoming ready for it: when it
  /// opened, or when the response before it was sent (nothing else owed).
  /// Over it the connection is cut: a client that connects and never sends
  /// a byte, or sends its head a few bytes at a time (slowloris).
  /// (nginx: client_header_timeout, 60 s.)
  std::chrono::milliseconds header_timeout{10000};
  /// Between requests on a keep-alive connection: nothing of the next
  /// request within this time of the previous response being sent, and the
  /// connection is closed (a FIN, nothing sent). The header timeout runs from
  /// the same moment, so an idle keep-alive connection lasts the shorter of
  /// the two. (nginx: keepalive_timeout, 75 s.)
  std::chrono::milliseconds keepalive_timeout{5000};
  /// A request whose bytes started arriving must be complete (head and body)
  /// within this time, or the connection is cut.
  std::chrono::milliseconds request_timeout{10000};
  /// Response bytes are queued and the client has taken none of them for
  /// this long (it does not read): the connection is aborted and its queue
  /// dropped. Applied as the connections' ConnectionOptions::send_timeout.
  /// (nginx: send_timeout, 60 s.)
  std::chrono::milliseconds send_timeout{30000};
  /// A deferred handler holding its Responder this long after its request
  /// was dispatched gets 504 sent for it (the error hook's body, if any), so
  /// that one stuck answer does not hold the responses pipelined behind it;
  /// its own answer, when it comes, is dropped. Checked on the connection's
  /// tick like the others: fires between this and this plus a tick or two.
  /// (nginx: proxy_read_timeout, 60 s.)
  std::chrono::milliseconds response_timeout{30000};
  /// A connection the server closes (after `Connection: close`, an error
  /// such as 413 or 400, a closing stream) closes lingeringly: the response
  /// goes out, the sending side is shut down, and what the client still
  /// sends is read and discarded until it closes, for at most `linger_time`
  /// in all, `linger_timeout` without input and `linger_bytes`; then the
  /// socket closes. Without it a client still sending (the body a 413
  /// refused) gets a reset that destroys the response before it is read,
  /// and a proxy in front reports 502. Applied as the connections'
  /// ConnectionOptions::linger_*. (nginx: lingering_time 30 s,
  /// lingering_timeout 5 s.)
  std::chrono::milliseconds linger_time{5000};
  std::chrono::milliseconds linger_timeout{2000};
  std::size_t linger_bytes = std::size_t{64} << 20;
};

/// Per-shard HTTP counters: counted by the shard's thread alone (no locked
/// instruction), readable from any thread.
struct HttpStats {
  StatCounter requests;
  /// Connections cut by a timeout: header (or idle before the first
  /// request), keep-alive idle, request.
  StatCounter header_timeouts;
  StatCounter keepalive_timeouts;
  StatCounter request_timeouts;
  /// Deferred answers replaced by a 504 (ServerOptions::response_timeout).
  StatCounter response_timeouts;
  /// Responses by status class: [0] 1xx ... [4] 5xx.
  std::array<StatCounter, 5> responses{};
  /// Handler latency (from the handler's call to its response, deferred
  /// answers included; answers handlers return are timed per batch of
  /// pipelined requests, see Output::on_handled), in seconds: latency[i]
  /// counts those at most kLatencyBounds[i] (and above the bound before),
  /// the last one the rest.
  static constexpr std::array<double, 8> kLatencyBounds = {25e-6, 100e-6, 500e-6, 2e-3, 10e-3, 50e-3, 250e-3, 1.0};
  std::array<StatCounter, kLatencyBounds.size() + 1> latency{};
  StatCounter latency_sum_ns;
  void count_response(int status) noexcept;
  /// `count` answers that took `each`.
  void count_handled(Clock::duration each, std::size_t count) noexcept;
};
HttpStats& stats_of(Shard& shard);
/// The shard's HttpStats if an HTTP server ever ran there, else nullptr. Any thread.
HttpStats* find_stats(Shard& shard) noexcept;

/// A graceful stop (SIGTERM, Runtime::stop; see RuntimeOptions::stop_timeout):
/// listeners stop accepting, and each HTTP connection reads no further
/// request, answers what it received (the last answer with
/// `Connection: close`) and closes, holding the stop meanwhile; an idle one
/// closes at once. Answers still owed when the drain ends (a Responder that
/// does not answer in time) get 503 with `Connection: close`.
class HttpConnection final : public Connection<HttpConnection>, private Output, private Drainable {
 public:
  HttpConnection(std::shared_ptr<const Router> router, ServerOptions options);
  ~HttpConnection() override;

  void on_open() override;
  void on_data(std::span<const std::byte> bytes) override;
  void on_close(CloseReason reason) override;
  /// A half-close: answer what was asked (deferred answers too), then close.
  void on_peer_shutdown() override;
  /// The send queue drained to the low watermark: a streamed response in
  /// progress writes more, and the session carries on with the pipelined
  /// requests it held back.
  void on_drain() override;
  /// The header, keep-alive, request and response timeouts.
  void on_tick(Clock::time_point now) override;

 private:
  void on_stop_requested() override;
  void on_drain_end() override;
  void release_stop() noexcept;
  void write(std::string_view bytes) override { out_.append(bytes); }
  void write_shared(SharedBuffer bytes) override;
  void flush() override;
  void close_after_flush() override { close_lingering(); }
  void pause_input(bool paused) override;
  void on_response(int status) override {
    if (stats_ != nullptr) stats_->count_response(status);
  }
  void on_handled(Clock::duration each, std::size_t count) override {
    if (stats_ != nullptr) stats_->count_handled(each, count);
  }
  /// Backpressure: no further request is dispatched while the unsent bytes
  /// (queued, or written but not flushed yet) are above the high watermark.
  [[nodiscard]] bool congested() const override {
    return pending_send_bytes() + out_.size() > options().high_watermark;
  }
  void after_input();

  std::shared_ptr<const Router> router_;
  ServerOptions options_;
  Session session_;
  std::string out_;
  HttpStats* stats_ = nullptr;
  std::uint64_t counted_ = 0;
  // The timeouts' state, kept by the tick alone: the request awaited
  // (requests() when the wait began), when the wait began, when the tick
  // first saw the request's bytes.
  std::uint64_t awaited_ = 0;
  Clock::time_point ready_at_{};
  Clock::time_point begun_at_{};
  bool waiting_ = false;
  bool begun_ = false;
  bool input_paused_ = false;
  Shard* holds_stop_ = nullptr;  // the shard whose stop this connection holds
};

/// Listens with HttpConnection actors on every shard the policy picks.
ListenerHandle serve(Runtime& rt, const ListenOptions& listen, std::shared_ptr<const Router> router,
                     ServerOptions options = {});

}  // namespace ringshard::net::http
