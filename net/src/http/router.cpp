#include "ringshard/net/http/router.hpp"

#include <algorithm>
#include <stdexcept>

namespace ringshard::net::http {

Router::Entry& Router::entry(Method method, std::string_view path) {
  if (method == Method::other) throw std::invalid_argument("ringshard::net::http::Router: cannot route Method::other");
  const bool prefix = !path.empty() && path.back() == '*';
  const std::string_view pattern = prefix ? path.substr(0, path.size() - 1) : path;

  std::size_t index = routes_.size();
  if (prefix) {
    for (std::size_t i : prefixes_)
      if (routes_[i].pattern == pattern) index = i;
  } else if (auto it = exact_.find(pattern); it != exact_.end()) {
    index = it->second;
  }
  if (index == routes_.size()) {
    Route r;
    r.pattern.assign(pattern);
    r.prefix = prefix;
    routes_.push_back(std::move(r));
    if (prefix) {
      prefixes_.push_back(index);
      std::stable_sort(prefixes_.begin(), prefixes_.end(), [this](std::size_t a, std::size_t b) {
        return routes_[a].pattern.size() > routes_[b].pattern.size();
      });
    } else {
      exact_.emplace(std::string(pattern), index);
      exact_list_.push_back(index);
    }
  }

  Route& route = routes_[index];
  auto it = std::find_if(route.entries.begin(), route.entries.end(),
                         [method](const Entry& e) { return e.method == method; });
  if (it == route.entries.end()) {
    route.entries.push_back(Entry{method, {}, {}});
    it = route.entries.end() - 1;
  }

  // Allow: the registered methods in registration order, HEAD implied by GET.
  route.allow.clear();
  bool has_get = false, has_head = false;
  for (const Entry& e : route.entries) {
    if (!route.allow.empty()) route.allow += ", ";
    route.allow += method_name(e.method);
    has_get |= e.method == Method::get;
    has_head |= e.method == Method::head;
  }
  if (has_get && !has_head) route.allow += ", HEAD";
  return *it;
}

Router& Router::route(Method method, std::string_view path, Handler handler) {
  Entry& e = entry(method, path);
  e.handler = std::move(handler);
  e.deferred = nullptr;
  return *this;
}

Router& Router::route(Method method, std::string_view path, DeferredHandler handler) {
  Entry& e = entry(method, path);
  e.deferred = std::move(handler);
  e.handler = nullptr;
  return *this;
}

Router::Match Router::match_in(const Route& r, Method method) const noexcept {
  const Entry* get = nullptr;
  for (const Entry& e : r.entries) {
    if (e.method == method) {
      Match m;
      m.status = 0;
      if (e.handler) m.handler = &e.handler;
      else m.deferred = &e.deferred;
      return m;
    }
    if (e.method == Method::get) get = &e;
  }
  Match m;
  if (method == Method::head && get) {
    m.status = 0;
    if (get->handler) m.handler = &get->handler;
    else m.deferred = &get->deferred;
    return m;
  }
  m.status = 405;
  m.allow = r.allow;
  return m;
}

Router::Match Router::find(Method method, std::string_view path) const noexcept {
  if (exact_list_.size() <= linear_limit) {
    for (std::size_t i : exact_list_)
      if (routes_[i].pattern == path) return match_in(routes_[i], method);
  } else if (auto it = exact_.find(path); it != exact_.end()) {
    return match_in(routes_[it->second], method);
  }
  for (std::size_t i : prefixes_) {
    const Route& r = routes_[i];
    if (path.substr(0, r.pattern.size()) == r.pattern) return match_in(r, method);
  }
  return Match{};
}

}  // namespace ringshard::net::http
