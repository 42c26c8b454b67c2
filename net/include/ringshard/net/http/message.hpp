// HTTP/1.1 messages as the server core sees them: the parsed Request handed to
// a handler (views into the session's buffers, valid while the handler runs)
// and the Response it produces (owned strings, serialised by the session).
#pragma once

#include <cstddef>
#include <cstdint>
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

/// One parsed request. The string views (method_name, target, path, query,
/// headers) point into the session's buffers and are valid only while the
/// handler runs: a handler that answers later copies what it needs. `body` is
/// owned and may be moved out.
struct Request {
  Method method = Method::get;
  std::string_view method_name;  ///< as sent, e.g. "GET"
  std::string_view target;       ///< request-target as sent, e.g. "/a/b?x=1"
  std::string_view path;         ///< target up to '?' (scheme and authority of an absolute form removed)
  std::string_view query;        ///< after '?' up to '#', without the '?'; empty if none
  int http_major = 1;
  int http_minor = 1;
  std::vector<Header> headers;  ///< in arrival order, names as sent
  std::string body;             ///< Content-Length or de-chunked body
  /// Whether the connection stays open after this request, as the parser
  /// decides: HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with
  /// `Connection: keep-alive`.
  bool keep_alive = true;

  /// The value of the first header called `name` (case-insensitive).
  [[nodiscard]] std::optional<std::string_view> header(std::string_view name) const noexcept;
};

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
