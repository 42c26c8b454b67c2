#include "ringshard/net/http/router.hpp"

#include <algorithm>
#include <array>
#include <stdexcept>

#include "ringshard/framework/log.hpp"

namespace ringshard::net::http {

namespace {

constexpr std::uint16_t bit(Method m) noexcept { return static_cast<std::uint16_t>(1u << static_cast<unsigned>(m)); }

// The Allow value for a set of methods, in a fixed order: made once for
// every set, so that a 405 from several templates needs no allocation.
std::string_view allow_text(std::uint16_t mask) noexcept {
  static constexpr std::array order{Method::get,     Method::head,    Method::post,  Method::put,  Method::del,
                                    Method::patch,   Method::options, Method::connect, Method::trace};
  static const std::array<std::string, 512> texts = [] {
    std::array<std::string, 512> t;
    for (std::size_t m = 0; m < t.size(); ++m) {
      for (const Method method : order) {
        if (!(m & bit(method))) continue;
        if (!t[m].empty()) t[m] += ", ";
        t[m] += method_name(method);
      }
    }
    return t;
  }();
  return texts[mask & 511];
}

[[noreturn]] void bad_template(std::string_view path, const char* why) {
  throw std::invalid_argument("ringshard::net::http::Router: template \"" + std::string(path) + "\": " + why);
}

}  // namespace

// The state of one template lookup (find_in), on the caller's stack.
struct Router::Walk {
  Method method = Method::get;
  std::string_view path;    // decoded
  std::string_view raw;     // as sent; segments are cut in it when `by_raw`
  bool by_raw = false;      // the path holds an encoded slash
  std::array<std::string_view, Request::max_params> values{};
  Match match;              // status 0 once a route with the method is found
  const Route* route = nullptr;  // ... and its template
  const Route* first = nullptr;  // the first template matching the path, lacking the method
  std::uint16_t methods = 0;     // the methods of every template matching the path
  int matched = 0;
};

std::size_t Router::template_route(std::string_view path) {
  if (path.empty() || path.front() != '/') bad_template(path, "it must start with '/'");
  if (path.back() == '*') bad_template(path, "a template cannot end in '*'");
  if (nodes_.empty()) nodes_.emplace_back();
  std::vector<std::string> names;
  std::uint32_t node = 0;
  std::string_view rest = path.substr(1);
  for (;;) {
    const std::size_t slash = rest.find('/');
    const std::string_view seg = rest.substr(0, slash);
    std::uint32_t next = none;
    if (!seg.empty() && seg.front() == '{') {
      if (seg.size() < 3 || seg.back() != '}') bad_template(path, "a parameter is a whole segment, {name}");
      const std::string_view name = seg.substr(1, seg.size() - 2);
      if (name.find_first_of("{}") != std::string_view::npos) bad_template(path, "a parameter name holds a brace");
      if (std::find(names.begin(), names.end(), name) != names.end()) bad_template(path, "a parameter name repeats");
      names.emplace_back(name);
      if (names.size() > Request::max_params) bad_template(path, "more parameters than Request::max_params");
      next = nodes_[node].param;
      if (next == none) {
        next = static_cast<std::uint32_t>(nodes_.size());
        nodes_.emplace_back();
        nodes_[node].param = next;
      }
    } else {
      if (seg.find_first_of("{}") != std::string_view::npos) bad_template(path, "a brace inside a segment");
      auto& lits = nodes_[node].literals;
      auto it = std::lower_bound(lits.begin(), lits.end(), seg,
                                 [](const auto& e, std::string_view s) { return std::string_view(e.first) < s; });
      if (it != lits.end() && it->first == seg) {
        next = it->second;
      } else {
        next = static_cast<std::uint32_t>(nodes_.size());
        lits.emplace(it, std::string(seg), next);
        nodes_.emplace_back();
      }
    }
    node = next;
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  if (nodes_[node].route == none) {
    Route r;
    r.pattern.assign(path);
    r.params = std::move(names);
    nodes_[node].route = static_cast<std::uint32_t>(routes_.size());
    routes_.push_back(std::move(r));
  } else if (routes_[nodes_[node].route].params != names) {
    bad_template(path, "the same template was registered with other parameter names");
  }
  return nodes_[node].route;
}

Router::Entry& Router::entry(Method method, std::string_view path) {
  if (method == Method::other) throw std::invalid_argument("ringshard::net::http::Router: cannot route Method::other");
  std::size_t index = routes_.size();
  if (path.find_first_of("{}") != std::string_view::npos) {
    index = template_route(path);
  } else {
    const bool prefix = !path.empty() && path.back() == '*';
    const std::string_view pattern = prefix ? path.substr(0, path.size() - 1) : path;
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
  }

  Route& route = routes_[index];
  auto it = std::find_if(route.entries.begin(), route.entries.end(),
                         [method](const Entry& e) { return e.method == method; });
  if (it == route.entries.end()) {
    route.entries.push_back(Entry{method, {}, {}, {}});
    it = route.entries.end() - 1;
  }

  // Allow: the registered methods in registration order, HEAD implied by GET.
  route.allow.clear();
  route.methods = 0;
  bool has_get = false, has_head = false;
  for (const Entry& e : route.entries) {
    if (!route.allow.empty()) route.allow += ", ";
    route.allow += method_name(e.method);
    route.methods |= bit(e.method);
    has_get |= e.method == Method::get;
    has_head |= e.method == Method::head;
  }
  if (has_get && !has_head) {
    route.allow += ", HEAD";
    route.methods |= bit(Method::head);
  }
  return *it;
}

Router& Router::route(Method method, std::string_view path, Handler handler, Middleware middleware) {
  Entry& e = entry(method, path);
  e.handler = std::move(handler);
  e.deferred = nullptr;
  e.middleware = std::move(middleware);
  return *this;
}

Router& Router::route(Method method, std::string_view path, DeferredHandler handler, Middleware middleware) {
  Entry& e = entry(method, path);
  e.deferred = std::move(handler);
  e.handler = nullptr;
  e.middleware = std::move(middleware);
  return *this;
}

Router& Router::use(Middleware middleware) {
  global_.push_back(std::move(middleware));
  return *this;
}

Router& Router::on_error(ErrorHandler handler) {
  on_error_ = std::move(handler);
  return *this;
}

Response Router::default_error(int status) {
  std::string body(reason_phrase(status));
  body += '\n';
  return Response::text(status, std::move(body));
}

Response Router::error_response(int status, const Request& req) const {
  if (!on_error_) return default_error(status);
  try {
    Response r = on_error_(status, req);
    r.status = status;
    if (std::string problem = response_problem(r); !problem.empty()) {
      RINGSHARD_LOG_ERROR("http: the error hook's response for {} was refused ({}); the default went out", status,
                          problem);
      return default_error(status);
    }
    return r;
  } catch (const std::exception& e) {
    RINGSHARD_LOG_ERROR("http: the error hook threw for {}: {}; the default went out", status, e.what());
  } catch (...) {
    RINGSHARD_LOG_ERROR("http: the error hook threw for {}; the default went out", status);
  }
  return default_error(status);
}

Router::Match Router::match_in(const Route& r, Method method) const noexcept {
  const Entry* get = nullptr;
  const Entry* found = nullptr;
  for (const Entry& e : r.entries) {
    if (e.method == method) {
      found = &e;
      break;
    }
    if (e.method == Method::get) get = &e;
  }
  if (!found && method == Method::head) found = get;
  Match m;
  if (!found) {
    m.status = 405;
    m.allow = r.allow;
    return m;
  }
  m.status = 0;
  if (found->handler) m.handler = &found->handler;
  else m.deferred = &found->deferred;
  if (found->middleware.before || found->middleware.after) m.middleware = &found->middleware;
  return m;
}

// Depth first, literal segments before the parameter; true once a template
// with the method is found (w.match). `at` is where the next segment starts
// in the decoded path (npos: the path has ended), `raw_at` the same in the
// raw path when segments are cut there.
bool Router::walk(Walk& w, std::uint32_t node_index, std::size_t at, std::size_t raw_at,
                  std::size_t depth) const noexcept {
  const Node& node = nodes_[node_index];
  if (at == std::string_view::npos) {
    if (node.route == none) return false;
    const Route& r = routes_[node.route];
    Match m = match_in(r, w.method);
    if (m.status == 0) {
      w.match = m;
      w.route = &r;
      return true;
    }
    if (!w.first) w.first = &r;  // matches the path, lacks the method
    w.methods |= r.methods;
    ++w.matched;
    return false;
  }
  std::string_view seg;
  std::size_t next = std::string_view::npos, raw_next = std::string_view::npos;
  if (!w.by_raw) {
    const std::size_t slash = w.path.find('/', at);
    seg = w.path.substr(at, slash == std::string_view::npos ? std::string_view::npos : slash - at);
    if (slash != std::string_view::npos) next = slash + 1;
  } else {
    // The raw segment ends at a real '/'; each escape in it is 3 raw bytes
    // and 1 decoded one.
    const std::size_t slash = w.raw.find('/', raw_at);
    const std::size_t raw_end = slash == std::string_view::npos ? w.raw.size() : slash;
    const std::size_t escapes =
        static_cast<std::size_t>(std::count(w.raw.begin() + static_cast<std::ptrdiff_t>(raw_at),
                                            w.raw.begin() + static_cast<std::ptrdiff_t>(raw_end), '%'));
    seg = w.path.substr(at, raw_end - raw_at - 2 * escapes);
    if (slash != std::string_view::npos) {
      next = at + seg.size() + 1;
      raw_next = slash + 1;
    }
  }
  const auto& lits = node.literals;
  auto it = std::lower_bound(lits.begin(), lits.end(), seg,
                             [](const auto& e, std::string_view s) { return std::string_view(e.first) < s; });
  if (it != lits.end() && it->first == seg && walk(w, it->second, next, raw_next, depth)) return true;
  if (node.param != none && !seg.empty() && depth < Request::max_params) {
    w.values[depth] = seg;
    if (walk(w, node.param, next, raw_next, depth + 1)) return true;
  }
  return false;
}

// Exact paths, then templates, then prefixes: the first route matching the
// path with the method wins; when none has it, 405 with the methods of all
// those matching the path (their own Allow when one matched).
Router::Match Router::find_in(Method method, std::string_view path, std::string_view raw, std::size_t encoded_slash,
                              Request* req) const noexcept {
  // Exact paths: a path with an encoded slash is never one (its '/' there
  // would be a separator in the route).
  const Route* exact = nullptr;
  if (encoded_slash == std::string_view::npos) {
    if (exact_list_.size() <= linear_limit) {
      for (std::size_t i : exact_list_)
        if (routes_[i].pattern == path) exact = &routes_[i];
    } else if (auto it = exact_.find(path); it != exact_.end()) {
      exact = &routes_[it->second];
    }
    if (exact) {
      Match m = match_in(*exact, method);
      if (m.status == 0 || (nodes_.empty() && prefixes_.empty())) return m;
    }
  }
  Walk w;
  w.method = method;
  w.path = path;
  w.raw = raw;
  w.by_raw = encoded_slash != std::string_view::npos;
  auto lacks_method = [&w](const Route& r) {
    if (!w.first) w.first = &r;
    w.methods |= r.methods;
    ++w.matched;
  };
  if (exact) lacks_method(*exact);
  if (!nodes_.empty() && !path.empty() && path.front() == '/' && walk(w, 0, 1, 1, 0)) {
    if (req) {
      const std::size_t n = w.route->params.size();
      for (std::size_t i = 0; i < n; ++i) req->params_[i] = PathParam{w.route->params[i], w.values[i]};
      req->param_count_ = n;
    }
    return w.match;
  }
  for (std::size_t i : prefixes_) {
    const Route& r = routes_[i];
    if (path.substr(0, r.pattern.size()) != r.pattern) continue;
    if (encoded_slash != std::string_view::npos && encoded_slash < r.pattern.size()) continue;
    Match m = match_in(r, method);
    if (m.status == 0) return m;
    lacks_method(r);
    break;  // the longest prefix only
  }
  Match m;
  if (w.matched > 0) {
    m.status = 405;
    m.allow = w.matched == 1 ? std::string_view(w.first->allow) : allow_text(w.methods);
  }
  return m;
}

Router::Match Router::find(Method method, std::string_view path) const noexcept {
  return find_in(method, path, path, std::string_view::npos, nullptr);
}

Router::Match Router::find(Method method, Request& req) const noexcept {
  req.param_count_ = 0;
  return find_in(method, req.path, req.raw_path, req.encoded_slash_, &req);
}

}  // namespace ringshard::net::http
