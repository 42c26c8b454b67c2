// Per-shard metrics in the Prometheus text exposition format (0.0.4).
//
//   auto router = std::make_shared<http::Router>();
//   http::mount_metrics(*router, runtime);           // GET /metrics on an existing server
//   auto m = http::serve_metrics(runtime, address);  // or a listener of its own
//
// Every series carries one label, `shard`; a few are split once more by a
// small fixed set (the reason a connection closed, the HTTP status class,
// the kind of wake-up, the latency buckets). The values are the shards' own
// counters (framework, actors, net, HTTP), written by each shard's thread
// alone without locked instructions and read here relaxed: a scrape costs
// the shards nothing.
#pragma once

#include <string>

#include "ringshard/net/http/router.hpp"
#include "ringshard/net/http/server.hpp"
#include "ringshard/net/listener.hpp"

namespace ringshard::net::http {

/// The metrics of every shard of `runtime`, as a Prometheus text page. Any thread.
[[nodiscard]] std::string render_metrics(Runtime& runtime);

/// The content type of that page.
inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

/// Adds GET `path` (default /metrics) answering render_metrics(runtime).
void mount_metrics(Router& router, Runtime& runtime, std::string path = "/metrics");

/// A small HTTP server of its own that answers GET /metrics, for an
/// application whose port speaks another protocol. It accepts on shard
/// `listen.accept_shard` and spreads its (few) connections like any listener.
ListenerHandle serve_metrics(Runtime& runtime, ListenOptions listen);

}  // namespace ringshard::net::http
