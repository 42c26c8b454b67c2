// ringshard-http: the sharded HTTP/1.1 server sample.
//
//   ringshard-http [--host 127.0.0.1] [--port 0] [--shards N] [--policy round-robin|least-connections|reuse-port]
//                  [--buffers 4096] [--metrics-port P] [--max-body BYTES] [--header-timeout MS] [--keepalive-timeout MS] [--request-timeout MS]
//                  [--send-timeout MS] [--linger-time MS] [--linger-timeout MS] [--stop-timeout MS]
//
//   GET  /plaintext  Hello, World!
//   GET  /json       {"message":"Hello, World!"}
//   POST /echo       the request body
//   GET  /stats      per-shard live connections and requests served, as JSON
//   GET  /metrics    every shard's counters in the Prometheus text format
//   GET  /visits     a visit counter kept by one actor on shard 0: the handler
//                    asks it and answers later, without blocking its shard
//   GET  /bytes?n=N  N bytes of 'x' (at most 64 MiB), streamed: written 64 KiB
//                    at a time as the connection drains, from one shared
//                    buffer, so a client that does not read costs the server
//                    no more than the connection's high watermark (1 MiB)
//
// Timeouts (milliseconds, 0 turns one off; see http::ServerOptions):
//   --header-timeout     a request head complete within this of the connection
//                        being ready for it (opened, or the last response sent) (10000)
//   --keepalive-timeout  an idle keep-alive connection is closed after this (5000)
//   --request-timeout    a request complete within this of its first byte (10000)
//   --send-timeout       a client that takes no response byte for this long is
//                        cut off (30000)
//   --linger-time, --linger-timeout
//                        a connection the server closes (after a 413, say) reads
//                        and discards what the client still sends for at most
//                        this long in all, and this long without input (5000, 2000)
//   --stop-timeout       SIGINT/SIGTERM: the whole stop within this (2000)
//
// The first line on stdout is `listening on HOST:PORT`; SIGINT/SIGTERM stop it.
#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "common/cli.hpp"
#include "ringshard/net/http/http.hpp"

using namespace ringshard;
namespace http = ringshard::net::http;

namespace {

struct Visit {
  using Response = std::uint64_t;
};
struct Visits : actors::Actor<Visits> {
  std::uint64_t count = 0;
  std::uint64_t on_message(const Visit&) { return ++count; }
};

std::shared_ptr<http::Router> make_router(Runtime& runtime, actors::ActorRef<Visits> visits) {
  auto router = std::make_shared<http::Router>();
  router->get("/plaintext", [](http::Request&) { return http::Response::text(200, "Hello, World!"); });
  http::mount_metrics(*router, runtime);  // GET /metrics: every shard's counters, for Prometheus
  router->get("/json", [](http::Request&) { return http::Response::json(200, R"({"message":"Hello, World!"})"); });
  router->post("/echo", [](http::Request& req) {
    http::Response r(200, std::move(req.body));
    r.content_type = "application/octet-stream";
    return r;
  });
  router->get("/stats", [&runtime](http::Request&) {
    std::string body = "{\"shards\":[";
    for (unsigned i = 0; i < runtime.shard_count(); ++i) {
      Shard& s = runtime.shard(i);
      if (i) body += ',';
      body += "{\"shard\":" + std::to_string(i) +
              ",\"connections\":" + std::to_string(net::NetShard::of(s).connections.load()) +
              ",\"requests\":" + std::to_string(http::stats_of(s).requests.get()) + "}";
    }
    body += "]}";
    return http::Response::json(200, std::move(body));
  });
  // The body is produced as the connection drains: each call writes shared
  // 64 KiB pieces of one buffer (no copy) while the connection takes more,
  // and the stream ends by itself at n bytes (the Content-Length).
  static const net::SharedBuffer pattern = [] {
    net::SharedBuffer b(64 * 1024);
    std::memset(b.writable().data(), 'x', b.size());
    return b;
  }();
  router->get("/bytes", [](http::Request& req, http::Responder respond) {
    std::size_t n = 0;
    if (req.query.rfind("n=", 0) == 0) {
      const std::string_view digits = req.query.substr(2);
      const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
      if (error != std::errc() || end != digits.data() + digits.size()) {
        return respond(http::Response::text(400, "n must be a number of bytes\n"));
      }
    }
    if (n > (std::size_t{64} << 20)) return respond(http::Response::text(400, "n too large\n"));
    respond.stream(http::Response::text(200, {}), n, [n](http::BodyStream& body) {
      while (body.ready()) {
        const std::size_t left = n - body.written();
        if (left >= pattern.size()) {
          body.write(pattern);
        } else {
          body.write(std::string_view(reinterpret_cast<const char*>(pattern.bytes().data()), left));
          break;  // the last piece: the stream has ended
        }
      }
    });
  });
  router->get("/visits", [visits](http::Request&, http::Responder respond) {
    actors::ask(visits, Visit{}, [respond = std::move(respond)](actors::AskResult<std::uint64_t> n) mutable {
      if (!n) return respond(http::Response::text(503, "visit counter " + std::string(to_string(n.status())) + "\n"));
      respond(http::Response::text(200, "visit " + std::to_string(*n) + "\n"));
    });
  });
  return router;
}

}  // namespace

int main(int argc, char** argv) {
  samples::CommandLine app("ringshard-http: the sharded HTTP/1.1 server sample", "ringshard-http");
  samples::ServerFlags flags;
  flags.add_to(app, {});
  http::ServerOptions server;
  std::chrono::milliseconds stop_timeout{2000};
  app.size("--max-body", server.limits.max_body_bytes, "the largest request body (bytes, K/M/G)");
  app.millis("--header-timeout", server.header_timeout, "a request head complete within this");
  app.millis("--keepalive-timeout", server.keepalive_timeout, "an idle keep-alive connection closes after this");
  app.millis("--request-timeout", server.request_timeout, "a request complete within this of its first byte");
  app.millis("--send-timeout", server.send_timeout, "a client that takes no byte this long is reset");
  app.millis("--linger-time", server.linger_time, "a closing connection discards input at most this long");
  app.millis("--linger-timeout", server.linger_timeout, "... and this long without input");
  app.millis("--stop-timeout", stop_timeout, "SIGINT/SIGTERM: the whole stop within this");
  app.parse_or_exit(argc, argv);
  net::ListenOptions listen;
  listen.address = flags.address(app);
  listen.policy = flags.policy;
  flags.configure(listen);
  try {
    RuntimeOptions options;
    flags.configure(options);
    options.stop_timeout = stop_timeout;
    Runtime runtime(options);
    runtime.start();
    auto visits = actors::spawn<Visits>(runtime, 0);
    auto listener = http::serve(runtime, listen, make_router(runtime, visits), server);
    flags.run(app, runtime, listener);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ringshard-http: %s\n", e.what());
    return 1;
  }
}
