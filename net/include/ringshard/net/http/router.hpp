// Router: maps (method, path) to a handler. Built once before serving, then
// only read (find() is const and may be called from every shard at once).
//
//   router.get("/links/{id}", [](http::Request& req) { ... req.param("id") ... });
//   router.use({.before = require_token});               // every route
//   router.del("/links/{id}", remove, {.after = audit}); // one route
//   router.on_error([](int status, const http::Request&) { return http::Response::json(status, ...); });
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ringshard/net/http/message.hpp"
#include "ringshard/net/http/responder.hpp"

namespace ringshard::net::http {

/// Runs before a handler; a Response it returns is the answer, and the
/// handler (and the before hooks after this one) do not run: an early 401,
/// say.
using BeforeHook = std::function<std::optional<Response>(Request&)>;
/// Runs on the response before it goes out (it may add headers: a request
/// id, or log). For an answer given later through a Responder it runs when
/// the answer comes, and the Request it sees then holds the method, target,
/// path, query and version only (no headers, body or parameters: their
/// buffers are gone).
using AfterHook = std::function<void(const Request&, Response&)>;
/// A pair of hooks, either may be empty: `{.before = f}`, `{.after = g}`.
struct Middleware {
  BeforeHook before = {};  // (initialisers: g++ warns about a designator left out otherwise)
  AfterHook after = {};
};

class Router {
 public:
  /// Answers at once: the returned Response is the answer.
  using Handler = std::function<Response(Request&)>;
  /// Answers now or later through the Responder.
  using DeferredHandler = std::function<void(Request&, Responder)>;

  using Before = http::BeforeHook;
  using After = http::AfterHook;
  using Middleware = http::Middleware;
  /// Makes the response of a status the server answers by itself: 404 and
  /// 405 from the routes, 400 (a malformed request, an invalid escape), 413,
  /// 414, 431, 500 (a handler or hook that threw, a Responder dropped, a
  /// response refused), 501, 504 (a response timeout), 505. The status is
  /// kept whatever the hook sets; for 405 the Allow header is added after
  /// it; a request refused while being read (400, 413, ...) still closes the
  /// connection. For those the Request may hold only what was read (nothing
  /// at all before the head was complete). A hook that throws, or returns a
  /// response that cannot be sent, gives the plain-text default.
  using ErrorHandler = std::function<Response(int status, const Request&)>;

  /// What find() found: exactly one of `handler`/`deferred` when `status` is
  /// 0; otherwise `status` is 404 (no such path) or 405 (path known, method
  /// not), and for 405 `allow` lists the path's methods ("GET, HEAD, POST").
  /// `middleware` is the route's own hooks, when it has any.
  struct Match {
    const Handler* handler = nullptr;
    const DeferredHandler* deferred = nullptr;
    int status = 404;
    std::string_view allow;
    const Middleware* middleware = nullptr;
  };

  /// Registers `handler` for `method` on `path`, with the route's own
  /// `middleware` (run inside the global hooks: global before, route before,
  /// handler, route after, global after).
  ///
  /// - An exact path ("/plaintext") matches itself.
  /// - A template ("/links/{id}/stats") has parameters as whole segments:
  ///   each matches one non-empty segment of the (decoded) path, given to the
  ///   handler as req.param("id"); at most Request::max_params of them. A
  ///   literal segment wins over a parameter at the same place.
  /// - A path ending in '*' matches every path that starts with what
  ///   precedes the '*' (the longest such prefix wins).
  /// Exact paths win over templates, templates over prefixes, among the
  /// routes that have the request's method; a path matched only by routes
  /// without it is 405, Allow listing their methods. Registering the
  /// same method and path again replaces the handler. A GET route also
  /// answers HEAD unless HEAD has its own route. Throws std::invalid_argument
  /// for Method::other and for a malformed template.
  Router& route(Method method, std::string_view path, Handler handler, Middleware middleware = {});
  Router& route(Method method, std::string_view path, DeferredHandler handler, Middleware middleware = {});

  /// Any callable `Response(Request&)` or `void(Request&, Responder)`.
  template <class F>
    requires(!std::is_same_v<std::decay_t<F>, Handler> && !std::is_same_v<std::decay_t<F>, DeferredHandler> &&
             (std::is_invocable_r_v<Response, F&, Request&> || std::is_invocable_v<F&, Request&, Responder>))
  Router& route(Method method, std::string_view path, F&& f, Middleware middleware = {}) {
    if constexpr (std::is_invocable_r_v<Response, F&, Request&>)
      return route(method, path, Handler(std::forward<F>(f)), std::move(middleware));
    else
      return route(method, path, DeferredHandler(std::forward<F>(f)), std::move(middleware));
  }

  template <class F>
  Router& get(std::string_view path, F&& f, Middleware m = {}) {
    return route(Method::get, path, std::forward<F>(f), std::move(m));
  }
  template <class F>
  Router& post(std::string_view path, F&& f, Middleware m = {}) {
    return route(Method::post, path, std::forward<F>(f), std::move(m));
  }
  template <class F>
  Router& put(std::string_view path, F&& f, Middleware m = {}) {
    return route(Method::put, path, std::forward<F>(f), std::move(m));
  }
  template <class F>
  Router& del(std::string_view path, F&& f, Middleware m = {}) {
    return route(Method::del, path, std::forward<F>(f), std::move(m));
  }
  template <class F>
  Router& patch(std::string_view path, F&& f, Middleware m = {}) {
    return route(Method::patch, path, std::forward<F>(f), std::move(m));
  }

  /// Adds hooks run for every request that reaches a route (before hooks)
  /// and for every response to a complete request, the router's 404 and 405
  /// included (after hooks); in the order added (after hooks in reverse).
  Router& use(Middleware middleware);
  /// Sets the hook that makes the server's own error responses.
  Router& on_error(ErrorHandler handler);

  /// Looks up the handler for a decoded path (without the query), in which
  /// every '/' separates segments.
  [[nodiscard]] Match find(Method method, std::string_view path) const noexcept;
  /// Looks up the handler for `req` (its path as Request::set_path made it)
  /// and gives it the template's parameters. Allocates nothing.
  [[nodiscard]] Match find(Method method, Request& req) const noexcept;

  /// The global hooks, in the order added.
  [[nodiscard]] const std::vector<Middleware>& middleware() const noexcept { return global_; }
  [[nodiscard]] bool has_error_handler() const noexcept { return static_cast<bool>(on_error_); }
  /// The response for a status the server answers by itself: the error
  /// hook's, else a plain-text reason phrase.
  [[nodiscard]] Response error_response(int status, const Request& req) const;
  /// The plain-text default ("Not Found\n").
  [[nodiscard]] static Response default_error(int status);

 private:
  struct Entry {
    Method method;
    Handler handler;
    DeferredHandler deferred;
    Middleware middleware;
  };
  struct Route {
    std::string pattern;  // without the trailing '*'
    bool prefix = false;
    std::vector<Entry> entries;
    std::string allow;
    std::uint16_t methods = 0;          // bit per Method, HEAD implied by GET
    std::vector<std::string> params;    // a template's parameter names, in order
  };
  // A template's segment tree: literal children (sorted by text) before the
  // parameter child.
  struct Node {
    std::vector<std::pair<std::string, std::uint32_t>> literals;
    std::uint32_t param = none;
    std::uint32_t route = none;  // index into routes_ of the template ending here
  };
  struct PathHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  struct Walk;

  static constexpr std::uint32_t none = ~std::uint32_t{0};

  Entry& entry(Method method, std::string_view path);
  std::size_t template_route(std::string_view path);
  [[nodiscard]] Match match_in(const Route& r, Method method) const noexcept;
  [[nodiscard]] Match find_in(Method method, std::string_view path, std::string_view raw, std::size_t encoded_slash,
                              Request* req) const noexcept;
  bool walk(Walk& w, std::uint32_t node, std::size_t decoded_at, std::size_t raw_at, std::size_t depth) const noexcept;

  static constexpr std::size_t linear_limit = 8;  // up to this many exact paths, a scan beats hashing

  std::vector<Route> routes_;
  std::vector<std::size_t> exact_list_;  // indices into routes_ of the exact paths
  std::unordered_map<std::string, std::size_t, PathHash, std::equal_to<>> exact_;
  std::vector<std::size_t> prefixes_;  // indices into routes_, longest pattern first
  std::vector<Node> nodes_;            // the templates' tree; nodes_[0] is the root ("/")
  std::vector<Middleware> global_;
  ErrorHandler on_error_;
};

}  // namespace ringshard::net::http
