#include "ringshard/net/http/server.hpp"

#include <algorithm>

namespace ringshard::net::http {

namespace {
const unsigned kStatsKey = Shard::register_extension_key();
struct StatsExtension final : ShardExtension {
  HttpStats stats;
};

// A quarter of the shortest timeout: each fires at most a quarter late.
std::chrono::milliseconds tick_for(const ServerOptions& o) {
  std::chrono::milliseconds shortest = std::chrono::milliseconds::max();
  for (const auto t : {o.header_timeout, o.keepalive_timeout, o.request_timeout, o.response_timeout}) {
    if (t.count() > 0) shortest = std::min(shortest, t);
  }
  if (shortest == std::chrono::milliseconds::max()) return std::chrono::milliseconds(0);
  return std::max(shortest / 4, std::chrono::milliseconds(1));
}
}  // namespace

HttpStats* find_stats(Shard& shard) noexcept {
  ShardExtension* ext = shard.find_extension(kStatsKey);
  return ext != nullptr ? &static_cast<StatsExtension*>(ext)->stats : nullptr;
}

void HttpStats::count_response(int status) noexcept {
  if (status >= 100 && status < 600) ++responses[static_cast<std::size_t>(status / 100 - 1)];
}

void HttpStats::count_handled(Clock::duration each, std::size_t count) noexcept {
  const double seconds = std::chrono::duration<double>(each).count();
  std::size_t bucket = 0;
  while (bucket < kLatencyBounds.size() && seconds > kLatencyBounds[bucket]) ++bucket;
  latency[bucket] += count;
  latency_sum_ns += static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(each).count()) * count;
}

HttpStats& stats_of(Shard& shard) {
  return shard.extension<StatsExtension>(kStatsKey, [] { return std::make_unique<StatsExtension>(); }).stats;
}

HttpConnection::HttpConnection(std::shared_ptr<const Router> router, ServerOptions options)
    : router_(std::move(router)), options_(options), session_(*router_, options.limits, *this) {}

HttpConnection::~HttpConnection() { release_stop(); }

void HttpConnection::on_open() {
  stats_ = &stats_of(shard());
  if (shard().draining()) {  // accepted just before the stop: not served
    close();
    return;
  }
  enlist(NetShard::of(shard()));
  set_tick(tick_for(options_));
}

void HttpConnection::on_stop_requested() {
  const bool owes = session_.pending() > 0 || session_.paused() || !out_.empty() || pending_send_bytes() > 0;
  session_.stop_input();
  if (owes && holds_stop_ == nullptr && is_open()) {
    holds_stop_ = &shard();
    holds_stop_->hold_stop();
  }
}

void HttpConnection::on_drain_end() {
  // What has not come by now will not: 503, the last with Connection: close.
  session_.answer_owed(503);
}

void HttpConnection::release_stop() noexcept {
  if (holds_stop_ != nullptr) std::exchange(holds_stop_, nullptr)->release_stop();
}

void HttpConnection::on_data(std::span<const std::byte> bytes) {
  if (shard().stop_requested()) [[unlikely]] {
    // Stopping: requests already received are answered while the stop's
    // deadline allows; after it the connection goes, and no handler runs
    // for it (the stop does not wait for work it has no time for).
    if (Clock::now() >= shard().stop_deadline()) {
      abort();
      return;
    }
  }
  session_.feed(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  after_input();
}

void HttpConnection::on_drain() {
  session_.resume();
  after_input();
}

// After the session parsed input (fed, or resumed): count the requests.
void HttpConnection::after_input() {
  const std::uint64_t done = session_.requests();
  if (done != counted_ && stats_ != nullptr) {
    stats_->requests += done - counted_;
    counted_ = done;
  }
}

// The timeouts, from the session's state as the tick sees it (nothing is
// timed per request). While a response is owed or being sent, none runs
// (the send timeout watches a client that does not read). Otherwise the
// connection waits for request number requests() + 1: the wait began at the
// first tick that saw it, and the request's bytes at the first tick that saw
// the request begun. A phase seen late only makes the timeout later.
void HttpConnection::on_tick(Clock::time_point now) {
  if (options_.response_timeout.count() > 0 && session_.pending() > 0) {
    if (const std::size_t n = session_.expire(now, options_.response_timeout); n > 0)
      stats_->response_timeouts += n;
  }
  const bool busy = session_.pending() > 0 || session_.paused() || session_.closing() || !out_.empty() ||
                    pending_send_bytes() > 0;
  if (busy) {
    waiting_ = false;
    return;
  }
  const std::uint64_t done = session_.requests();
  if (!waiting_ || done != awaited_) {
    waiting_ = true;
    awaited_ = done;
    ready_at_ = now;
    begun_ = false;
  }
  const bool mid = session_.mid_request();
  if (mid && !begun_) {
    begun_ = true;
    begun_at_ = now;
  }
  const auto& o = options_;
  if (!mid) {
    if (done > 0 && o.keepalive_timeout.count() > 0 && now - ready_at_ >= o.keepalive_timeout) {
      ++stats_->keepalive_timeouts;
      close();  // idle: nothing unread, a plain FIN
      return;
    }
    if (o.header_timeout.count() > 0 && now - ready_at_ >= o.header_timeout) {
      ++stats_->header_timeouts;
      close();
    }
    return;
  }
  if (session_.reading_head() && o.header_timeout.count() > 0 && now - ready_at_ >= o.header_timeout) {
    ++stats_->header_timeouts;
    timed_out();
    return;
  }
  if (o.request_timeout.count() > 0 && now - begun_at_ >= o.request_timeout) {
    ++stats_->request_timeouts;
    timed_out();
  }
}

void HttpConnection::flush() {
  if (out_.empty()) return;
  send(std::move(out_));
  out_ = send_buffer();
}

void HttpConnection::write_shared(SharedBuffer bytes) {
  flush();  // what was written before goes first
  send(std::move(bytes));
}

void HttpConnection::pause_input(bool paused) {
  if (paused == input_paused_) return;
  input_paused_ = paused;
  if (paused) {
    pause_reading();
  } else {
    resume_reading();
  }
}

void HttpConnection::on_close(CloseReason) {
  session_.end_of_input();
  release_stop();
}

// While the session is paused for backpressure, the complete requests it
// holds are answered (on_drain resumes it) before it closes.
void HttpConnection::on_peer_shutdown() { session_.end_of_input(); }

ListenerHandle serve(Runtime& rt, const ListenOptions& listen, std::shared_ptr<const Router> router,
                     ServerOptions options) {
  ListenOptions lo = listen;
  lo.connection.send_timeout = options.send_timeout;
  lo.connection.linger_time = options.linger_time;
  lo.connection.linger_timeout = options.linger_timeout;
  lo.connection.linger_bytes = options.linger_bytes;
  return net::listen<HttpConnection>(rt, lo, std::move(router), options);
}

}  // namespace ringshard::net::http
