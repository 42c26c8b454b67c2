#include "ringshard/net/http/server.hpp"

namespace ringshard::net::http {

namespace {
const unsigned kStatsKey = Shard::register_extension_key();
struct StatsExtension final : ShardExtension {
  HttpStats stats;
};
}  // namespace

HttpStats& stats_of(Shard& shard) {
  return shard.extension<StatsExtension>(kStatsKey, [] { return std::make_unique<StatsExtension>(); }).stats;
}

HttpConnection::HttpConnection(std::shared_ptr<const Router> router, ServerOptions options)
    : router_(std::move(router)), options_(options), session_(*router_, options.limits, *this) {}

void HttpConnection::on_data(std::span<const std::byte> bytes) {
  if (stats_ == nullptr) stats_ = &stats_of(shard());
  session_.feed(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  after_input();
}

void HttpConnection::on_drain() {
  if (stats_ == nullptr) stats_ = &stats_of(shard());
  session_.resume();
  after_input();
}

// After the session parsed input (fed, or resumed): count the requests and
// run the slow-client clock.
void HttpConnection::after_input() {
  const std::uint64_t done = session_.requests();
  if (done != counted_) {
    stats_->requests.fetch_add(done - counted_, std::memory_order_relaxed);
    counted_ = done;
  }
  // The slow-client clock runs while a request is incomplete; a new request
  // starts it afresh.
  if (session_.mid_request()) {
    if (!timing_ || timed_request_ != done) {
      timing_ = true;
      timed_request_ = done;
      request_started_ = Clock::now();
    }
    if (!timer_armed_ && options_.request_timeout.count() > 0) {
      timer_armed_ = true;
      after(options_.request_timeout, CheckTimeout{});
    }
  } else {
    timing_ = false;
  }
}

void HttpConnection::on_message(const CheckTimeout&) {
  timer_armed_ = false;
  if (!timing_ || !session_.mid_request()) return;
  const auto deadline = request_started_ + options_.request_timeout;
  const auto now = Clock::now();
  if (now >= deadline) {
    abort();
    return;
  }
  timer_armed_ = true;
  after(deadline - now, CheckTimeout{});
}

void HttpConnection::flush() {
  if (out_.empty()) return;
  send(std::move(out_));
  out_ = send_buffer();
}

void HttpConnection::on_close(CloseReason) { session_.end_of_input(); }

// While the session is paused for backpressure, the complete requests it
// holds are answered (on_drain resumes it) before it closes.
void HttpConnection::on_peer_shutdown() { session_.end_of_input(); }

ListenerHandle serve(Runtime& rt, const ListenOptions& listen, std::shared_ptr<const Router> router,
                     ServerOptions options) {
  return net::listen<HttpConnection>(rt, listen, std::move(router), options);
}

}  // namespace ringshard::net::http
