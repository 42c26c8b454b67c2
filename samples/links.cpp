// ringshard-links: a small REST service, a URL shortener, on the HTTP server's
// routing API: path templates, query parameters, JSON bodies, redirects, an
// error hook that answers JSON, middleware (a request id on every response,
// a bearer token on DELETE) and answers given later by an actor.
//
//   ringshard-links [--host 127.0.0.1] [--port 0] [--shards N] [--policy P] [--buffers N] [--token T]
//                   [--response-timeout MS] [--metrics-port PORT]
//
//   POST   /links              {"url": "https://..."}  -> 201 {"id", "url", "short"}, Location: /links/ID
//   GET    /l/{id}             302 to the link's URL (counted); ?preview=1: its URL as JSON, not counted
//   GET    /links/{id}         {"id", "url", "short"}
//   GET    /links/{id}/stats   {"id", "hits"}
//   DELETE /links/{id}         204; needs `Authorization: Bearer T` (--token, default "secret")
//   GET    /plaintext          Hello, World! (to compare with)
//
// Errors are JSON ({"error": "..."}), the router's own 404, 405 and 413
// included. The links live in one actor on shard 0 (every shard's handlers
// ask it, and answer when it replies); a reply later than
// --response-timeout (default 30000 ms) is answered 504 for them.
//
// The first line on stdout is `listening on HOST:PORT`; SIGINT/SIGTERM stop it.
#include <atomic>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "common/cli.hpp"
#include "ringshard/net/http/http.hpp"
#include "ringshard/net/http/json.hpp"

using namespace ringshard;
namespace http = ringshard::net::http;
using nlohmann::json;

namespace {

// ---- the store: one actor owns every link ------------------------------------

struct Link {
  std::string url;
  std::uint64_t hits = 0;
};
struct Create {
  using Response = std::string;  // the new id
  std::string url;
};
struct Resolve {
  using Response = std::optional<Link>;
  std::string id;
  bool count = true;  // a visit (hits + 1), or a look only
};
struct Remove {
  using Response = bool;
  std::string id;
};

struct Links : actors::Actor<Links> {
  std::unordered_map<std::string, Link> links;
  std::uint64_t next = 0;

  std::string on_message(Create c) {
    static constexpr char digits[] = "0123456789abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";
    std::string id;
    for (std::uint64_t n = ++next * 7919; n != 0; n /= sizeof digits - 1) id += digits[n % (sizeof digits - 1)];
    links.emplace(id, Link{std::move(c.url), 0});
    return id;
  }
  std::optional<Link> on_message(const Resolve& r) {
    const auto it = links.find(r.id);
    if (it == links.end()) return std::nullopt;
    if (r.count) ++it->second.hits;
    return it->second;
  }
  bool on_message(const Remove& r) { return links.erase(r.id) != 0; }
};

// ---- the HTTP side ------------------------------------------------------------

http::Response error(int status, std::string_view why) { return http::json_response(status, {{"error", why}}); }

bool valid_url(const std::string& url) {
  if (url.rfind("https://", 0) != 0 && url.rfind("http://", 0) != 0) return false;
  for (const unsigned char c : url)
    if (c <= ' ' || c == 0x7f) return false;  // no spaces or control characters (CR, LF, ...)
  return url.size() <= 2048;
}

std::shared_ptr<http::Router> make_router(actors::ActorRef<Links> links, std::string token) {
  auto router = std::make_shared<http::Router>();

  // The router's own answers (404, 405, 413, 500, 504, ...) in JSON.
  router->on_error([](int status, const http::Request&) { return error(status, http::reason_phrase(status)); });

  // A request id on every response: a counter per shard, no lock.
  router->use({.after = [](const http::Request&, http::Response& r) {
                 thread_local std::uint64_t n = 0;
                 r.header("X-Request-Id", std::to_string(++n));
               }});

  router->get("/plaintext", [](http::Request&) { return http::Response::text(200, "Hello, World!"); });

  router->post("/links", [links](http::Request& req, http::Responder respond) {
    auto body = http::parse_json(req);
    if (!body) return respond(std::move(body.error));
    const json& url = body.value.is_object() ? body.value["url"] : json();
    if (!url.is_string() || !valid_url(url.get<std::string>()))
      return respond(error(422, "\"url\" must be an http(s) URL without spaces, of at most 2048 bytes"));
    actors::ask(links, Create{url.get<std::string>()},
                [respond = std::move(respond), url = url.get<std::string>()](actors::AskResult<std::string> id) mutable {
                  if (!id) return respond(error(503, "the store did not answer"));
                  http::Response r = http::json_response(201, {{"id", *id}, {"url", url}, {"short", "/l/" + *id}});
                  respond(std::move(r.header("Location", "/links/" + *id)));
                });
  });

  router->get("/l/{id}", [links](http::Request& req, http::Responder respond) {
    const bool preview = req.query_param("preview") == "1";
    actors::ask(links, Resolve{std::string(req.param("id")), !preview},
                [respond = std::move(respond), preview](actors::AskResult<std::optional<Link>> link) mutable {
                  if (!link) return respond(error(503, "the store did not answer"));
                  if (!*link) return respond(error(404, "no such link"));
                  if (preview) return respond(http::json_response(200, {{"url", (*link)->url}}));
                  respond(http::Response::redirect(302, (*link)->url));
                });
  });

  // A link, and its visits: the same look-up, two views of it.
  for (const bool stats : {false, true}) {
    router->get(stats ? "/links/{id}/stats" : "/links/{id}", [links, stats](http::Request& req, http::Responder respond) {
      std::string id(req.param("id"));
      actors::ask(links, Resolve{id, false},
                  [respond = std::move(respond), id, stats](actors::AskResult<std::optional<Link>> link) mutable {
                    if (!link) return respond(error(503, "the store did not answer"));
                    if (!*link) return respond(error(404, "no such link"));
                    if (stats) return respond(http::json_response(200, {{"id", id}, {"hits", (*link)->hits}}));
                    respond(http::json_response(200, {{"id", id}, {"url", (*link)->url}, {"short", "/l/" + id}}));
                  });
    });
  }

  // Deleting needs the token: a before hook of this route alone answers 401.
  const http::Router::Middleware bearer{
      .before = [token = std::move(token)](http::Request& req) -> std::optional<http::Response> {
        if (req.header("Authorization") == "Bearer " + token) return std::nullopt;
        return std::move(error(401, "a bearer token is required").header("WWW-Authenticate", "Bearer"));
      }};
  router->del("/links/{id}", [links](http::Request& req, http::Responder respond) {
    actors::ask(links, Remove{std::string(req.param("id"))},
                [respond = std::move(respond)](actors::AskResult<bool> removed) mutable {
                  if (!removed) return respond(error(503, "the store did not answer"));
                  respond(*removed ? http::Response(204) : error(404, "no such link"));
                });
  }, bearer);
  return router;
}

}  // namespace

int main(int argc, char** argv) {
  samples::CommandLine app("ringshard-links: a URL shortener on the HTTP router (templates, JSON, middleware)",
                           "ringshard-links");
  samples::ServerFlags flags;
  flags.add_to(app, {});
  std::string token = "secret";
  http::ServerOptions server;
  app.option("--token", token, "the bearer token DELETE needs").show_default();
  app.millis("--response-timeout", server.response_timeout, "a deferred answer later than this gets 504 (0: none)");
  app.parse_or_exit(argc, argv);
  net::ListenOptions listen;
  listen.address = flags.address(app);
  listen.policy = flags.policy;
  flags.configure(listen);
  try {
    RuntimeOptions options;
    flags.configure(options);
    Runtime runtime(options);
    runtime.start();
    auto links = actors::spawn<Links>(runtime, 0);
    auto listener = http::serve(runtime, listen, make_router(links, token), server);
    flags.run(app, runtime, listener);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ringshard-links: %s\n", e.what());
    return 1;
  }
}
