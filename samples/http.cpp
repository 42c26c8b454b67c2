// ringshard-http: the sharded HTTP/1.1 server sample.
//
//   ringshard-http [--host 127.0.0.1] [--port 0] [--shards N] [--policy round-robin|least-connections|reuse-port]
//                  [--max-body BYTES]
//
//   GET  /plaintext  Hello, World!
//   GET  /json       {"message":"Hello, World!"}
//   POST /echo       the request body
//   GET  /stats      per-shard live connections and requests served, as JSON
//   GET  /visits     a visit counter kept by one actor on shard 0: the handler
//                    asks it and answers later, without blocking its shard
//   GET  /bytes?n=N  N bytes of 'x' (at most 64 MiB): for large-response tests
//
// --request-timeout MS closes a connection whose request does not complete
// within MS milliseconds of its first byte (default 10000).
//
// The first line on stdout is `listening on HOST:PORT`; SIGINT/SIGTERM stop it.
#include <charconv>
#include <cstdio>
#include <memory>
#include <string>

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
              ",\"requests\":" + std::to_string(http::stats_of(s).requests.load()) + "}";
    }
    body += "]}";
    return http::Response::json(200, std::move(body));
  });
  router->get("/bytes", [](http::Request& req) {
    std::size_t n = 0;
    if (req.query.rfind("n=", 0) == 0) {
      const std::string_view digits = req.query.substr(2);
      const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
      if (error != std::errc() || end != digits.data() + digits.size()) {
        return http::Response::text(400, "n must be a number of bytes\n");
      }
    }
    if (n > (std::size_t{64} << 20)) return http::Response::text(400, "n too large\n");
    return http::Response::text(200, std::string(n, 'x'));
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
  std::string host = "127.0.0.1";
  unsigned port = 0;
  net::ListenOptions listen;
  http::ServerOptions server;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (i + 1 >= argc) throw std::invalid_argument("missing value for " + arg);
      const std::string value = argv[++i];
      if (arg == "--host") host = value;
      else if (arg == "--port") port = static_cast<unsigned>(std::stoul(value));
      else if (arg == "--shards") continue;  // read by shards_from_args
      else if (arg == "--policy") listen.policy = net::parse_policy(value);
      else if (arg == "--max-body") server.limits.max_body_bytes = std::stoul(value);
      else if (arg == "--request-timeout") server.request_timeout = std::chrono::milliseconds(std::stoul(value));
      else throw std::invalid_argument("unknown argument " + arg);
    }
    listen.address = host.find(':') != std::string::npos ? net::Address::ipv6(host, static_cast<std::uint16_t>(port))
                                                         : net::Address::ipv4(host, static_cast<std::uint16_t>(port));
  } catch (const std::exception& e) {
    std::fprintf(stderr,
                 "ringshard-http: %s\nusage: ringshard-http [--host H] [--port P] [--shards N] "
                 "[--policy round-robin|least-connections|reuse-port] [--max-body BYTES] [--request-timeout MS]\n",
                 e.what());
    return 2;
  }
  try {
    RuntimeOptions options;
    options.shards = shards_from_args(argc, argv);
    Runtime runtime(options);
    runtime.start();
    auto visits = actors::spawn<Visits>(runtime, 0);
    auto listener = http::serve(runtime, listen, make_router(runtime, visits), server);
    std::printf("listening on %s\n", listener.address().to_string().c_str());
    std::fflush(stdout);
    runtime.run();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ringshard-http: %s\n", e.what());
    return 1;
  }
}
