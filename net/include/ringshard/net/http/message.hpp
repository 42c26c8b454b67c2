// HTTP/1.1 messages as the server core sees them: the parsed Request handed to
// a handler (views into the session's buffers, valid while the handler runs)
// and the Response it produces (owned strings, serialised by the session).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ringshard::net::http {

/// Request methods a route can be registered for. `other` stands for every
/// method the parser knows but the router does not (its name is in
/// Request::method_name); no route matches it.
enum class Method : std::uint8_t { get, head, post, put, del, patch, options, connect, trace, other };

/// "GET", "HEAD", ..., "DELETE"; "OTHER" for Method::other.
[[nodiscard]] std::string_view method_name(Method m) noexcept;

/// ASCII case-insensitive equality (header names, tokens).
[[nodiscard]] bool iequals(std::string_view a, std::string_view b) noexcept;

struct Header {
  std::string_view name;
  std::string_view value;
};

/// A parameter of a template route: for the route "/links/{id}" and the path
/// "/links/abc", name "id" and value "abc" (percent-decoded).
struct PathParam {
  std::string_view name;
  std::string_view value;
};

namespace detail {
class SessionCore;
}
class Router;

/// One parsed request. The string views (method_name, target, path, query,
/// headers, parameters) point into the session's buffers and are valid only
/// while the handler runs: a handler that answers later copies what it needs.
/// `body` is owned and may be moved out.
struct Request {
  Method method = Method::get;
  std::string_view method_name;  ///< as sent, e.g. "GET"
  std::string_view target;       ///< request-target as sent, e.g. "/a%20b?x=1"
  /// The path, percent-decoded once ("/a b"), as the router matches it: the
  /// target up to '?' (scheme and authority of an absolute form removed).
  /// An encoded slash (%2F) decodes to '/' here, but the router keeps it
  /// inside its segment: "/links/a%2Fb" matches "/links/{id}" with id "a/b",
  /// never "/links/a/b". A path with an invalid escape ('%' not followed by
  /// two hex digits) or an encoded NUL is answered 400 before any route.
  std::string_view path;
  std::string_view raw_path;  ///< the path as sent, not decoded ("/a%20b")
  std::string_view query;     ///< after '?' up to '#', without the '?', as sent; empty if none
  int http_major = 1;
  int http_minor = 1;
  std::vector<Header> headers;  ///< in arrival order, names as sent
  std::string body;             ///< Content-Length or de-chunked body
  /// Whether the connection stays open after this request, as the parser
  /// decides: HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with
  /// `Connection: keep-alive`.
  bool keep_alive = true;

  /// Template parameters a route can have at most.
  static constexpr std::size_t max_params = 8;

  /// The value of the first header called `name` (case-insensitive).
  [[nodiscard]] std::optional<std::string_view> header(std::string_view name) const noexcept;

  /// The value of the template parameter `name` of the route that matched
  /// ("/links/{id}": param("id")), percent-decoded; empty when the route has
  /// no such parameter.
  [[nodiscard]] std::string_view param(std::string_view name) const noexcept;
  /// Every template parameter, in the order of the route's template.
  [[nodiscard]] std::span<const PathParam> params() const noexcept { return {params_.data(), param_count_}; }

  /// The value of the first query parameter called `name` ("?n=10&q=a+b":
  /// query_param("q") is "a b"), names and values percent-decoded with '+' as
  /// a space; an empty value for a name without '=' ("?flag"); nullopt when
  /// absent. No allocation beyond the request's own buffer, sized once to the
  /// query; the view stays valid while the request does.
  [[nodiscard]] std::optional<std::string_view> query_param(std::string_view name) const;

  /// Sets `path` and `raw_path` from a path as sent: decodes it into the
  /// request's own storage (no copy when it holds no '%'). False, with
  /// `path` left as sent, when an escape is invalid or decodes to NUL.
  bool set_path(std::string_view raw);

 private:
  friend class Router;
  friend class detail::SessionCore;
  std::array<PathParam, max_params> params_{};
  std::size_t param_count_ = 0;
  std::size_t encoded_slash_ = std::string_view::npos;  // where the first %2F is in `path`
  std::string path_storage_;                             // the decoded path, when it differs
  mutable std::string query_storage_;                    // decoded query values, at their offsets
};

/// Percent-decodes `in` onto the end of `out` ('+' as a space when
/// `plus_as_space`, as in a query). False at an invalid escape ('%' not
/// followed by two hex digits); `out` then holds what was decoded before it.
bool percent_decode(std::string_view in, std::string& out, bool plus_as_space = false);
/// True when every '%' in `s` starts a valid escape.
[[nodiscard]] bool valid_escapes(std::string_view s) noexcept;

/// A response. The session adds Server, Date, Content-Length and, when
/// needed, Connection; `headers` holds the others (a Content-Length,
/// Transfer-Encoding or Connection given here is ignored: set `close`
/// instead of `Connection: close`). A Content-Type, Server or Date given in
/// `headers` replaces the session's (and `content_type`): each goes out once,
/// with the last value given.
///
/// Checked before it is sent: the status must be a final one (200-599),
/// header names tokens, and values (content_type too) free of control
/// characters (CR, LF, NUL, ...), so that no value can split the response.
/// A response that fails is replaced by a 500 and one error line is logged.
struct Response {
  int status = 200;
  std::string content_type;  ///< sent as Content-Type when not empty
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool close = false;  ///< close the connection after this response

  Response() = default;
  explicit Response(int status_code, std::string body_text = {}) : status(status_code), body(std::move(body_text)) {}

  /// A response with a body of type `content_type`.
  [[nodiscard]] static Response text(int status, std::string body, std::string_view content_type = "text/plain");
  /// A response with a JSON body (Content-Type: application/json).
  [[nodiscard]] static Response json(int status, std::string body);

  /// A redirect to `location` with an empty body: `status` is 301, 302,
  /// 303, 307 or 308 (another throws std::invalid_argument). The location
  /// is checked like every header value before it goes out, so one holding
  /// CR or LF (user input echoed back) answers 500 instead of splitting the
  /// response.
  [[nodiscard]] static Response redirect(int status, std::string_view location);

  /// Adds a header; returns *this for chaining.
  Response& header(std::string_view name, std::string_view value);
};

/// True for a non-empty RFC 9110 token (a valid header name).
[[nodiscard]] bool is_token(std::string_view name) noexcept;
/// Why `r` cannot be sent as it is (see Response), or an empty string.
[[nodiscard]] std::string response_problem(const Response& r);

/// The reason phrase of a status code ("OK", "Not Found", ...); "Unknown" for
/// codes without a registered phrase.
[[nodiscard]] std::string_view reason_phrase(int status) noexcept;

/// Writes `t` as an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT", 29 chars)
/// into `out`.
void format_http_date(std::time_t t, char (&out)[29]) noexcept;

/// The current time as an IMF-fixdate, formatted at most once per second per
/// thread. The view stays valid on this thread until the next call.
[[nodiscard]] std::string_view http_date() noexcept;

}  // namespace ringshard::net::http
