// Router: maps (method, path) to a handler. Built once before serving, then
// only read (find() is const and may be called from every shard at once).
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ringshard/net/http/message.hpp"
#include "ringshard/net/http/responder.hpp"

namespace ringshard::net::http {

class Router {
 public:
  /// Answers at once: the returned Response is the answer.
  using Handler = std::function<Response(Request&)>;
  /// Answers now or later through the Responder.
  using DeferredHandler = std::function<void(Request&, Responder)>;

  /// What find() found: exactly one of `handler`/`deferred` when `status` is
  /// 0; otherwise `status` is 404 (no such path) or 405 (path known, method
  /// not), and for 405 `allow` lists the path's methods ("GET, HEAD, POST").
  struct Match {
    const Handler* handler = nullptr;
    const DeferredHandler* deferred = nullptr;
    int status = 404;
    std::string_view allow;
  };

  /// Registers `handler` for `method` on `path`. A path ending in '*' matches
  /// every path that starts with what precedes the '*' (the longest such
  /// prefix wins; exact paths win over prefixes). Registering the same method
  /// and path again replaces the handler. A GET route also answers HEAD
  /// unless HEAD has its own route. Throws std::invalid_argument for
  /// Method::other.
  Router& route(Method method, std::string_view path, Handler handler);
  Router& route(Method method, std::string_view path, DeferredHandler handler);

  /// Any callable `Response(Request&)` or `void(Request&, Responder)`.
  template <class F>
    requires(!std::is_same_v<std::decay_t<F>, Handler> && !std::is_same_v<std::decay_t<F>, DeferredHandler> &&
             (std::is_invocable_r_v<Response, F&, Request&> || std::is_invocable_v<F&, Request&, Responder>))
  Router& route(Method method, std::string_view path, F&& f) {
    if constexpr (std::is_invocable_r_v<Response, F&, Request&>)
      return route(method, path, Handler(std::forward<F>(f)));
    else
      return route(method, path, DeferredHandler(std::forward<F>(f)));
  }

  template <class F>
  Router& get(std::string_view path, F&& f) { return route(Method::get, path, std::forward<F>(f)); }
  template <class F>
  Router& post(std::string_view path, F&& f) { return route(Method::post, path, std::forward<F>(f)); }
  template <class F>
  Router& put(std::string_view path, F&& f) { return route(Method::put, path, std::forward<F>(f)); }
  template <class F>
  Router& del(std::string_view path, F&& f) { return route(Method::del, path, std::forward<F>(f)); }
  template <class F>
  Router& patch(std::string_view path, F&& f) { return route(Method::patch, path, std::forward<F>(f)); }

  /// Looks up the handler for a request path (without the query).
  [[nodiscard]] Match find(Method method, std::string_view path) const noexcept;

 private:
  struct Entry {
    Method method;
    Handler handler;
    DeferredHandler deferred;
  };
  struct Route {
    std::string pattern;  // without the trailing '*'
    bool prefix = false;
    std::vector<Entry> entries;
    std::string allow;
  };
  struct PathHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };

  Entry& entry(Method method, std::string_view path);
  [[nodiscard]] Match match_in(const Route& r, Method method) const noexcept;

  static constexpr std::size_t linear_limit = 8;  // up to this many exact paths, a scan beats hashing

  std::vector<Route> routes_;
  std::vector<std::size_t> exact_list_;  // indices into routes_ of the exact paths
  std::unordered_map<std::string, std::size_t, PathHash, std::equal_to<>> exact_;
  std::vector<std::size_t> prefixes_;  // indices into routes_, longest pattern first
};

}  // namespace ringshard::net::http
