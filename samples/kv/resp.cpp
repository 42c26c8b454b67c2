#include "kv/resp.hpp"

#include <charconv>
#include <cstring>

namespace kv::resp {

namespace {

bool is_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

int hex_digit(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The '\r' ending a `*N` or `$N` line that starts at `from`, searched within
// `limit` bytes; npos when there is none (yet).
std::size_t line_end(std::string_view in, std::size_t from, std::size_t limit) noexcept {
  const std::size_t n = std::min(in.size() - from, limit);
  const void* r = std::memchr(in.data() + from, '\r', n);
  return r == nullptr ? std::string_view::npos : static_cast<std::size_t>(static_cast<const char*>(r) - in.data());
}

}  // namespace

bool parse_int(std::string_view s, std::int64_t& out) noexcept {
  if (s.empty() || s.size() > 20) return false;
  std::size_t i = 0;
  const bool negative = s[0] == '-';
  if (negative && s.size() == 1) return false;
  if (negative) i = 1;
  if (s[i] == '0') {
    if (negative || s.size() != 1) return false;  // "-0", "01": not how Redis spells a number
    out = 0;
    return true;
  }
  std::uint64_t v = 0;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (c < '0' || c > '9') return false;
    const auto d = static_cast<std::uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  if (negative) {
    if (v > static_cast<std::uint64_t>(INT64_MAX) + 1) return false;
    out = static_cast<std::int64_t>(0 - v);
  } else {
    if (v > static_cast<std::uint64_t>(INT64_MAX)) return false;
    out = static_cast<std::int64_t>(v);
  }
  return true;
}

void RequestParser::reset() noexcept {
  pos_ = 0;
  count_ = -1;
  bulk_ = -1;
  scanned_ = 0;
  spans_.clear();
  // A huge request does not pin its offsets' memory once it is done.
  if (spans_.capacity() > 4096) std::vector<Arg>().swap(spans_);
}

RequestParser::Result RequestParser::fail(std::string_view why) {
  error_ = why;
  reset();
  views_.clear();
  return {Status::error, 0};
}

RequestParser::Result RequestParser::complete(std::size_t used) {
  reset();
  return {Status::complete, used};
}

RequestParser::Result RequestParser::parse(std::string_view in) {
  views_.clear();
  if (views_.capacity() > 4096) std::vector<std::string_view>().swap(views_);
  if (inline_.capacity() > 4096) std::string().swap(inline_);
  if (in.empty()) return {Status::incomplete, 0};
  return in[0] == '*' ? parse_multibulk(in) : parse_inline(in);
}

RequestParser::Result RequestParser::parse_multibulk(std::string_view in) {
  if (count_ < 0) {
    const std::size_t r = line_end(in, 1, limits_.max_inline);
    if (r == std::string_view::npos) {
      if (in.size() - 1 > limits_.max_inline) return fail("too big mbulk count string");
      return {Status::incomplete, 0};
    }
    if (r + 1 >= in.size()) return {Status::incomplete, 0};
    if (in[r + 1] != '\n') return fail("expected LF after CR");
    std::int64_t n = 0;
    if (!parse_int(in.substr(1, r - 1), n) || (n > 0 && static_cast<std::uint64_t>(n) > limits_.max_array)) {
      return fail("invalid multibulk length");
    }
    if (n <= 0) return complete(r + 2);  // `*0`, `*-1`: no command, nothing to answer
    count_ = n;
    pos_ = r + 2;
  }
  while (spans_.size() < static_cast<std::uint64_t>(count_)) {
    if (bulk_ < 0) {
      if (pos_ >= in.size()) return {Status::incomplete, 0};
      if (in[pos_] != '$') {
        error_text_.assign("expected '$', got '");
        error_text_ += in[pos_];
        error_text_ += '\'';
        return fail(error_text_);
      }
      const std::size_t r = line_end(in, pos_ + 1, limits_.max_inline);
      if (r == std::string_view::npos) {
        if (in.size() - pos_ - 1 > limits_.max_inline) return fail("too big bulk count string");
        return {Status::incomplete, 0};
      }
      if (r + 1 >= in.size()) return {Status::incomplete, 0};
      if (in[r + 1] != '\n') return fail("expected LF after CR");
      std::int64_t n = 0;
      if (!parse_int(in.substr(pos_ + 1, r - pos_ - 1), n) || n < 0 ||
          static_cast<std::uint64_t>(n) > limits_.max_bulk) {
        return fail("invalid bulk length");
      }
      bulk_ = n;
      pos_ = r + 2;
    }
    const auto size = static_cast<std::size_t>(bulk_);
    if (in.size() - pos_ < size + 2) return {Status::incomplete, 0};  // the bytes grow as they arrive
    if (in[pos_ + size] != '\r' || in[pos_ + size + 1] != '\n') return fail("expected CRLF after a bulk string");
    spans_.push_back({pos_, size});
    pos_ += size + 2;
    bulk_ = -1;
  }
  views_.reserve(spans_.size());
  for (const Arg& a : spans_) views_.emplace_back(in.data() + a.offset, a.size);
  return complete(pos_);
}

RequestParser::Result RequestParser::parse_inline(std::string_view in) {
  const std::size_t limit = std::min(in.size(), limits_.max_inline + 1);
  const void* nl = scanned_ < limit ? std::memchr(in.data() + scanned_, '\n', limit - scanned_) : nullptr;
  if (nl == nullptr) {
    if (in.size() > limits_.max_inline) return fail("too big inline request");
    scanned_ = in.size();
    return {Status::incomplete, 0};
  }
  const auto end = static_cast<std::size_t>(static_cast<const char*>(nl) - in.data());
  std::string_view line = in.substr(0, end);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);

  // Words separated by white space; "..." with C escapes (\n \r \t \b \a
  // \\ \" \xHH) and '...' with \' group words, as redis-cli and Redis do. A
  // closing quote must be followed by white space or the end of the line.
  inline_.clear();
  spans_.clear();
  std::size_t p = 0;
  const std::size_t n = line.size();
  while (true) {
    while (p < n && is_space(line[p])) ++p;
    if (p == n) break;
    const std::size_t start = inline_.size();
    bool in_double = false, in_single = false, done = false;
    while (!done) {
      if (in_double) {
        if (p == n) return fail("unbalanced quotes in request");
        const char c = line[p];
        if (c == '\\' && p + 3 < n && line[p + 1] == 'x' && hex_digit(line[p + 2]) >= 0 &&
            hex_digit(line[p + 3]) >= 0) {
          inline_ += static_cast<char>(hex_digit(line[p + 2]) * 16 + hex_digit(line[p + 3]));
          p += 3;
        } else if (c == '\\' && p + 1 < n) {
          ++p;
          switch (line[p]) {
            case 'n': inline_ += '\n'; break;
            case 'r': inline_ += '\r'; break;
            case 't': inline_ += '\t'; break;
            case 'b': inline_ += '\b'; break;
            case 'a': inline_ += '\a'; break;
            default: inline_ += line[p]; break;
          }
        } else if (c == '"') {
          if (p + 1 < n && !is_space(line[p + 1])) return fail("unbalanced quotes in request");
          done = true;
        } else {
          inline_ += c;
        }
      } else if (in_single) {
        if (p == n) return fail("unbalanced quotes in request");
        const char c = line[p];
        if (c == '\\' && p + 1 < n && line[p + 1] == '\'') {
          inline_ += '\'';
          ++p;
        } else if (c == '\'') {
          if (p + 1 < n && !is_space(line[p + 1])) return fail("unbalanced quotes in request");
          done = true;
        } else {
          inline_ += c;
        }
      } else if (p == n || is_space(line[p])) {
        done = true;
        break;  // p stays on the separator
      } else if (line[p] == '"') {
        in_double = true;
      } else if (line[p] == '\'') {
        in_single = true;
      } else {
        inline_ += line[p];
      }
      ++p;
    }
    spans_.push_back({start, inline_.size() - start});
  }
  views_.reserve(spans_.size());
  for (const Arg& a : spans_) views_.emplace_back(inline_.data() + a.offset, a.size);
  return complete(end + 1);
}

void error(std::string& out, std::string_view message) {
  out += '-';
  const std::size_t at = out.size();
  out += message;
  for (std::size_t i = at; i < out.size(); ++i)
    if (out[i] == '\r' || out[i] == '\n') out[i] = ' ';
  out += "\r\n";
}

void integer(std::string& out, std::int64_t n) {
  char buf[24];
  buf[0] = ':';
  const auto r = std::to_chars(buf + 1, buf + sizeof buf - 2, n);
  r.ptr[0] = '\r';
  r.ptr[1] = '\n';
  out.append(buf, static_cast<std::size_t>(r.ptr + 2 - buf));
}

namespace {
void header(std::string& out, char type, std::size_t n) {
  char buf[24];
  buf[0] = type;
  const auto r = std::to_chars(buf + 1, buf + sizeof buf - 2, n);
  r.ptr[0] = '\r';
  r.ptr[1] = '\n';
  out.append(buf, static_cast<std::size_t>(r.ptr + 2 - buf));
}
}  // namespace

void bulk(std::string& out, std::string_view s) {
  header(out, '$', s.size());
  out += s;
  out += "\r\n";
}

void array(std::string& out, std::size_t n) { header(out, '*', n); }

std::size_t bulk_value_size(std::string_view in) noexcept {
  if (in.size() < 4 || in[0] != '$') return 0;
  if (in.starts_with("$-1\r\n")) return 5;
  std::size_t n = 0, i = 1;
  for (; i < in.size() && in[i] >= '0' && in[i] <= '9'; ++i) n = n * 10 + static_cast<std::size_t>(in[i] - '0');
  if (i + 1 >= in.size() || in[i] != '\r' || in[i + 1] != '\n') return 0;
  const std::size_t total = i + 2 + n + 2;
  return total <= in.size() ? total : 0;
}

}  // namespace kv::resp
