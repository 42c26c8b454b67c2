// HTTP/1.1 server: a connection actor that runs an http::Session over its
// socket, and serve() to listen with it.
//
//   auto router = std::make_shared<http::Router>();
//   router->get("/plaintext", [](http::Request&) { return http::Response::text(200, "Hello, World!"); });
//   auto l = http::serve(runtime, listen_options, router);
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ringshard/net/http/session.hpp"
#include "ringshard/net/listener.hpp"

namespace ringshard::net::http {

struct ServerOptions {
  Limits limits{};
  /// A request whose bytes started arriving must be complete within this
  /// time, or the connection is closed (slow clients that never finish).
  std::chrono::milliseconds request_timeout{10000};
};

/// Per-shard HTTP counters (readable from any thread).
struct HttpStats {
  std::atomic<std::uint64_t> requests{0};
};
HttpStats& stats_of(Shard& shard);

class HttpConnection final : public Connection<HttpConnection>, private Output {
 public:
  HttpConnection(std::shared_ptr<const Router> router, ServerOptions options);

  void on_data(std::span<const std::byte> bytes) override;
  void on_close(CloseReason reason) override;
  /// A half-close: answer what was asked (deferred answers too), then close.
  void on_peer_shutdown() override;
  /// The send queue drained to the low watermark: the session carries on
  /// with the pipelined requests it held back.
  void on_drain() override;

  struct CheckTimeout {};
  void on_message(const CheckTimeout&);

 private:
  void write(std::string_view bytes) override { out_.append(bytes); }
  void flush() override;
  void close_after_flush() override { close(); }
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
  std::uint64_t timed_request_ = 0;  // requests() when the pending one started
  Clock::time_point request_started_{};
  bool timing_ = false;
  bool timer_armed_ = false;
};

/// Listens with HttpConnection actors on every shard the policy picks.
ListenerHandle serve(Runtime& rt, const ListenOptions& listen, std::shared_ptr<const Router> router,
                     ServerOptions options = {});

}  // namespace ringshard::net::http
