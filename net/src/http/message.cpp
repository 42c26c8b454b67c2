#include "ringshard/net/http/message.hpp"

#include <cstring>
#include <ctime>
#include <stdexcept>

namespace ringshard::net::http {

std::string_view method_name(Method m) noexcept {
  switch (m) {
    case Method::get: return "GET";
    case Method::head: return "HEAD";
    case Method::post: return "POST";
    case Method::put: return "PUT";
    case Method::del: return "DELETE";
    case Method::patch: return "PATCH";
    case Method::options: return "OPTIONS";
    case Method::connect: return "CONNECT";
    case Method::trace: return "TRACE";
    case Method::other: break;
  }
  return "OTHER";
}

namespace {
constexpr unsigned char lower(unsigned char c) noexcept { return (c >= 'A' && c <= 'Z') ? c | 0x20 : c; }
}  // namespace

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower(static_cast<unsigned char>(a[i])) != lower(static_cast<unsigned char>(b[i]))) return false;
  return true;
}

std::optional<std::string_view> Request::header(std::string_view name) const noexcept {
  for (const Header& h : headers)
    if (iequals(h.name, name)) return h.value;
  return std::nullopt;
}

namespace {
constexpr int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
// The escape at s[i] ('%'), or -1 when it is not '%' and two hex digits.
int escape_at(std::string_view s, std::size_t i) noexcept {
  if (i + 2 >= s.size()) return -1;
  const int hi = hex_value(s[i + 1]);
  const int lo = hex_value(s[i + 2]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}
// The query character at raw[i], decoded ('+' a space, a valid escape its
// byte, anything else as it is); i is left on the escape's last digit.
char query_char_at(std::string_view raw, std::size_t& i) noexcept {
  const char c = raw[i];
  if (c == '+') return ' ';
  if (c == '%') {
    if (const int v = escape_at(raw, i); v >= 0) {
      i += 2;
      return static_cast<char>(v);
    }
  }
  return c;
}
// Whether `raw` (a query name, '+' a space, escapes valid or copied as they
// are) decodes to `name`.
bool decodes_to(std::string_view raw, std::string_view name) noexcept {
  std::size_t j = 0;
  for (std::size_t i = 0; i < raw.size(); ++i, ++j) {
    const char c = query_char_at(raw, i);
    if (j >= name.size() || name[j] != c) return false;
  }
  return j == name.size();
}
}  // namespace

bool valid_escapes(std::string_view s) noexcept {
  for (std::size_t i = s.find('%'); i != std::string_view::npos; i = s.find('%', i + 3))
    if (escape_at(s, i) < 0) return false;
  return true;
}

bool percent_decode(std::string_view in, std::string& out, bool plus_as_space) {
  for (std::size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '%') {
      const int v = escape_at(in, i);
      if (v < 0) return false;
      out += static_cast<char>(v);
      i += 2;
    } else {
      out += plus_as_space && c == '+' ? ' ' : c;
    }
  }
  return true;
}

std::string_view Request::param(std::string_view name) const noexcept {
  for (std::size_t i = 0; i < param_count_; ++i)
    if (params_[i].name == name) return params_[i].value;
  return {};
}

bool Request::set_path(std::string_view raw) {
  raw_path = raw;
  path = raw;
  encoded_slash_ = std::string_view::npos;
  param_count_ = 0;
  if (raw.find('%') == std::string_view::npos) return true;  // nothing to decode: no copy
  path_storage_.clear();
  path_storage_.reserve(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) {
    char c = raw[i];
    if (c == '%') {
      const int v = escape_at(raw, i);
      if (v <= 0) return false;  // invalid, or NUL
      c = static_cast<char>(v);
      if (c == '/' && encoded_slash_ == std::string_view::npos) encoded_slash_ = path_storage_.size();
      i += 2;
    }
    path_storage_ += c;
  }
  path = path_storage_;
  return true;
}

std::optional<std::string_view> Request::query_param(std::string_view name) const {
  const std::string_view q = query;
  std::size_t pos = 0;
  while (pos <= q.size()) {
    std::size_t amp = q.find('&', pos);
    if (amp == std::string_view::npos) amp = q.size();
    const std::string_view pair = q.substr(pos, amp - pos);
    pos = amp + 1;
    if (pair.empty()) continue;
    const std::size_t eq = pair.find('=');
    if (!decodes_to(pair.substr(0, eq), name)) continue;
    if (eq == std::string_view::npos) return std::string_view();
    const std::string_view raw = pair.substr(eq + 1);
    if (raw.find_first_of("%+") == std::string_view::npos) return raw;
    // Decoded in place of the raw value, in storage as long as the query:
    // the decoded form is never longer, and a second lookup writes the same
    // bytes again, so earlier views stay valid.
    if (query_storage_.size() != q.size()) query_storage_.resize(q.size());
    char* const out = query_storage_.data() + (raw.data() - q.data());
    std::size_t n = 0;
    for (std::size_t i = 0; i < raw.size(); ++i) out[n++] = query_char_at(raw, i);
    return std::string_view(out, n);
  }
  return std::nullopt;
}

Response Response::text(int status, std::string body, std::string_view content_type) {
  Response r(status, std::move(body));
  r.content_type.assign(content_type);
  return r;
}

Response Response::json(int status, std::string body) { return text(status, std::move(body), "application/json"); }

Response Response::redirect(int status, std::string_view location) {
  if (status != 301 && status != 302 && status != 303 && status != 307 && status != 308)
    throw std::invalid_argument("ringshard::net::http::Response::redirect: status " + std::to_string(status) +
                                " is not a redirect (301, 302, 303, 307 or 308)");
  Response r(status);
  r.header("Location", location);
  return r;
}

Response& Response::header(std::string_view name, std::string_view value) {
  headers.emplace_back(std::string(name), std::string(value));
  return *this;
}

namespace {
// RFC 9110 tchar.
bool is_tchar(unsigned char c) noexcept {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~': return true;
    default: return false;
  }
}
// A field value: no CTL but HTAB (CR, LF and NUL among them), no DEL.
bool is_field_value(std::string_view v) noexcept {
  for (const char ch : v) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  }
  return true;
}
// For log lines: at most 64 bytes, control characters and non-ASCII as \xNN.
std::string printable(std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (const char ch : s.substr(0, 64)) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c >= 0x7f || c == '\\' || c == '"') {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += ch;
    }
  }
  return out;
}
}  // namespace

bool is_token(std::string_view name) noexcept {
  if (name.empty()) return false;
  for (const char c : name)
    if (!is_tchar(static_cast<unsigned char>(c))) return false;
  return true;
}

std::string response_problem(const Response& r) {
  if (r.status < 200 || r.status > 599) return "status " + std::to_string(r.status) + " is not a final status (200-599)";
  if (!is_field_value(r.content_type)) return "the content type holds a control character (CR, LF, NUL, ...)";
  for (const auto& [name, value] : r.headers) {
    if (!is_token(name)) return "header name \"" + printable(name) + "\" is not a token";
    if (!is_field_value(value)) return "the value of header " + name + " holds a control character (CR, LF, NUL, ...)";
  }
  return {};
}

std::string_view reason_phrase(int status) noexcept {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 102: return "Processing";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 207: return "Multi-Status";
    case 208: return "Already Reported";
    case 226: return "IM Used";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 305: return "Use Proxy";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 418: return "I'm a teapot";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 423: return "Locked";
    case 424: return "Failed Dependency";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 506: return "Variant Also Negotiates";
    case 507: return "Insufficient Storage";
    case 508: return "Loop Detected";
    case 510: return "Not Extended";
    case 511: return "Network Authentication Required";
    default: return "Unknown";
  }
}

void format_http_date(std::time_t t, char (&out)[29]) noexcept {
  static constexpr char days[] = "SunMonTueWedThuFriSat";
  static constexpr char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  auto two = [](char* p, int v) {
    p[0] = static_cast<char>('0' + v / 10);
    p[1] = static_cast<char>('0' + v % 10);
  };
  char* p = out;
  std::memcpy(p, days + 3 * tm.tm_wday, 3);
  p[3] = ',';
  p[4] = ' ';
  two(p + 5, tm.tm_mday);
  p[7] = ' ';
  std::memcpy(p + 8, months + 3 * tm.tm_mon, 3);
  p[11] = ' ';
  const int year = tm.tm_year + 1900;
  two(p + 12, (year / 100) % 100);
  two(p + 14, year % 100);
  p[16] = ' ';
  two(p + 17, tm.tm_hour);
  p[19] = ':';
  two(p + 20, tm.tm_min);
  p[22] = ':';
  two(p + 23, tm.tm_sec);
  std::memcpy(p + 25, " GMT", 4);
}

std::string_view http_date() noexcept {
  struct Cache {
    std::time_t second = -1;
    char text[29];
  };
  thread_local Cache cache;
  const std::time_t now = std::time(nullptr);
  if (now != cache.second) {
    format_http_date(now, cache.text);
    cache.second = now;
  }
  return {cache.text, sizeof cache.text};
}

}  // namespace ringshard::net::http
