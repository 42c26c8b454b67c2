#include "ringshard/net/http/metrics.hpp"

#include <array>
#include <cstdio>
#include <functional>

#include "ringshard/actors/actor.hpp"
#include "ringshard/net/connection.hpp"
#include "ringshard/net/net_shard.hpp"

namespace ringshard::net::http {

namespace {

// One metric family: its HELP and TYPE lines, then a sample per shard (and
// per value of the second label, if any).
class Page {
 public:
  explicit Page(Runtime& runtime) : runtime_(runtime) { out_.reserve(16 * 1024); }

  void family(const char* name, const char* type, const char* help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  void sample(const char* name, unsigned shard, const char* label, const char* value_of_label, double value) {
    out_ += name;
    out_ += "{shard=\"";
    out_ += std::to_string(shard);
    if (label != nullptr) {
      out_ += "\",";
      out_ += label;
      out_ += "=\"";
      out_ += value_of_label;
    }
    out_ += "\"} ";
    char number[32];
    const int n = std::snprintf(number, sizeof number, "%.17g", value);
    out_.append(number, static_cast<std::size_t>(n));
    out_ += '\n';
  }
  /// A family with one sample per shard: value(shard).
  void per_shard(const char* name, const char* type, const char* help, const std::function<double(Shard&)>& value) {
    family(name, type, help);
    for (unsigned i = 0; i < runtime_.shard_count(); ++i) sample(name, i, nullptr, nullptr, value(runtime_.shard(i)));
  }
  std::string take() { return std::move(out_); }

 private:
  Runtime& runtime_;
  std::string out_;
};

constexpr std::array kCloseReasons = {
    CloseReason::closed,       CloseReason::aborted,        CloseReason::peer_closed,     CloseReason::peer_reset,
    CloseReason::error,        CloseReason::idle_timeout,   CloseReason::read_timeout,    CloseReason::connect_failed,
    CloseReason::shutdown,     CloseReason::input_too_large, CloseReason::send_timeout,   CloseReason::timeout,
};

const char* label_of(CloseReason r) noexcept {
  switch (r) {
    case CloseReason::closed: return "closed";
    case CloseReason::aborted: return "aborted";
    case CloseReason::peer_closed: return "peer_closed";
    case CloseReason::peer_reset: return "peer_reset";
    case CloseReason::error: return "error";
    case CloseReason::idle_timeout: return "idle_timeout";
    case CloseReason::read_timeout: return "read_timeout";
    case CloseReason::connect_failed: return "connect_failed";
    case CloseReason::shutdown: return "shutdown";
    case CloseReason::input_too_large: return "input_too_large";
    case CloseReason::send_timeout: return "send_timeout";
    case CloseReason::timeout: return "timeout";
  }
  return "unknown";
}

}  // namespace

std::string render_metrics(Runtime& runtime) {
  Page page(runtime);
  const unsigned shards = runtime.shard_count();

  // ---- the shard's loop ----
  page.per_shard("ringshard_ring_enters_total", "counter", "io_uring_enter calls (submit, wait, or both).",
                 [](Shard& s) { return double(s.stats().ring.enters.get()); });
  page.per_shard("ringshard_ring_completions_total", "counter",
                 "Completions (CQEs) reaped; divided by ring enters: completions per enter.",
                 [](Shard& s) { return double(s.stats().ring.completions.get()); });
  page.per_shard("ringshard_sleeps_total", "counter", "Times the shard went to sleep in io_uring_enter.",
                 [](Shard& s) { return double(s.stats().sleeps.get()); });
  page.family("ringshard_wakeups_sent_total", "counter",
              "Sleeping shards woken by this shard, by IORING_OP_MSG_RING or by their eventfd.");
  for (unsigned i = 0; i < shards; ++i) {
    const ShardStats& st = runtime.shard(i).stats();
    page.sample("ringshard_wakeups_sent_total", i, "kind", "msg_ring", double(st.wakeups_msg_ring.get()));
    page.sample("ringshard_wakeups_sent_total", i, "kind", "eventfd", double(st.wakeups_eventfd.get()));
  }
  page.per_shard("ringshard_mailbox_depth", "gauge", "Messages from other shards and threads waiting in the inbox.",
                 [](Shard& s) { return double(s.inbox_depth()); });

  // ---- actors ----
  page.per_shard("ringshard_actors_live", "gauge", "Actors alive (connections included).",
                 [](Shard& s) { return double(actors::ActorTable::of(s).live()); });
  page.per_shard("ringshard_dead_letters_total", "counter", "Messages to actors that were no longer there.",
                 [](Shard& s) { return double(actors::ActorTable::of(s).dead_letters()); });
  page.per_shard("ringshard_asks_outstanding", "gauge", "Asks from this shard waiting for their answer.",
                 [](Shard& s) { return double(actors::ActorTable::of(s).pending_asks()); });
  page.per_shard("ringshard_asks_failed_total", "counter",
                 "Asks from this shard that completed without an answer (timed out, target gone, dropped).",
                 [](Shard& s) { return double(actors::ActorTable::of(s).failed_asks()); });

  // ---- connections ----
  page.per_shard("ringshard_connections_open", "gauge", "Connections open on the shard.", [](Shard& s) {
    const NetShard* n = NetShard::find(s);
    return n ? double(n->connections.load(std::memory_order_relaxed)) : 0.0;
  });
  page.per_shard("ringshard_connections_accepted_total", "counter", "Accepted connections that started on the shard.",
                 [](Shard& s) {
                   const NetShard* n = NetShard::find(s);
                   return n ? double(n->accepted.load(std::memory_order_relaxed)) : 0.0;
                 });
  page.family("ringshard_connections_closed_total", "counter", "Connections closed, by reason.");
  for (unsigned i = 0; i < shards; ++i) {
    const NetShard* n = NetShard::find(runtime.shard(i));
    for (CloseReason r : kCloseReasons) {
      page.sample("ringshard_connections_closed_total", i, "reason", label_of(r),
                  n ? double(n->closed_by(r)) : 0.0);
    }
  }
  const auto net_counter = [](StatCounter NetShard::*field) {
    return [field](Shard& s) {
      const NetShard* n = NetShard::find(s);
      return n ? double((n->*field).get()) : 0.0;
    };
  };
  page.per_shard("ringshard_received_bytes_total", "counter", "Bytes received on connections.",
                 net_counter(&NetShard::bytes_in));
  page.per_shard("ringshard_sent_bytes_total", "counter", "Bytes sent on connections.", net_counter(&NetShard::bytes_out));
  page.per_shard("ringshard_recv_completions_total", "counter", "Receive completions with data.",
                 net_counter(&NetShard::recv_completions));
  page.per_shard("ringshard_send_completions_total", "counter", "Send completions.",
                 net_counter(&NetShard::send_completions));
  page.per_shard("ringshard_recv_buffer_fallbacks_total", "counter",
                 "Plain recvs made because the shard's buffer ring was empty or low.",
                 net_counter(&NetShard::buffer_fallbacks));
  page.per_shard("ringshard_kept_copies_total", "counter",
                 "keep_received() calls that copied because the shard's buffer ring was running low.",
                 net_counter(&NetShard::kept_copies));
  page.per_shard("ringshard_direct_fallbacks_total", "counter",
                 "Connections that found the fixed file table full and kept a plain descriptor.",
                 net_counter(&NetShard::direct_fallbacks));

  // ---- HTTP ----
  page.per_shard("ringshard_http_requests_total", "counter", "HTTP requests parsed.", [](Shard& s) {
    const HttpStats* h = find_stats(s);
    return h ? double(h->requests.get()) : 0.0;
  });
  static constexpr const char* kClasses[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
  page.family("ringshard_http_responses_total", "counter", "HTTP responses, by status class.");
  for (unsigned i = 0; i < shards; ++i) {
    const HttpStats* h = find_stats(runtime.shard(i));
    for (unsigned c = 0; c < 5; ++c) {
      page.sample("ringshard_http_responses_total", i, "code", kClasses[c], h ? double(h->responses[c].get()) : 0.0);
    }
  }
  page.family("ringshard_http_handler_seconds", "histogram",
              "Time from a request's dispatch to its handler's response (deferred answers included).");
  for (unsigned i = 0; i < shards; ++i) {
    const HttpStats* h = find_stats(runtime.shard(i));
    // Cumulative from one read of each bucket, so that the buckets never
    // decrease and +Inf equals the count, even while the shard counts.
    std::uint64_t cumulative = 0;
    for (std::size_t b = 0; b < HttpStats::kLatencyBounds.size(); ++b) {
      if (h) cumulative += h->latency[b].get();
      char le[32];
      std::snprintf(le, sizeof le, "%g", HttpStats::kLatencyBounds[b]);
      page.sample("ringshard_http_handler_seconds_bucket", i, "le", le, double(cumulative));
    }
    if (h) cumulative += h->latency[HttpStats::kLatencyBounds.size()].get();
    const std::uint64_t count = cumulative;
    page.sample("ringshard_http_handler_seconds_bucket", i, "le", "+Inf", double(count));
    page.sample("ringshard_http_handler_seconds_sum", i, nullptr, nullptr,
                h ? double(h->latency_sum_ns.get()) / 1e9 : 0.0);
    page.sample("ringshard_http_handler_seconds_count", i, nullptr, nullptr, double(count));
  }
  return page.take();
}

void mount_metrics(Router& router, Runtime& runtime, std::string path) {
  router.get(std::move(path), [&runtime](Request&) {
    Response r(200, render_metrics(runtime));
    r.content_type = kMetricsContentType;
    return r;
  });
}

ListenerHandle serve_metrics(Runtime& runtime, ListenOptions listen) {
  auto router = std::make_shared<Router>();
  mount_metrics(*router, runtime);
  return serve(runtime, listen, std::move(router));
}

}  // namespace ringshard::net::http
