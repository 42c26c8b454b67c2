// RESP2, the Redis protocol: the request parser and the reply writers of
// ringshard-kv.
//
// A request is a multi-bulk array (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`, what
// every client library sends) or an inline command (`GET k\r\n`, what a person
// types into telnet; double and single quotes group words as redis-cli does).
//
// The parser is resumable: given the bytes received so far, it either returns
// a complete request, or says it needs more and remembers how far it got, so
// that the next call (with the same first bytes and more after them) goes on
// from there instead of scanning again. Nothing is reserved from a declared
// length or count: argument offsets grow as the elements arrive, and the
// bytes themselves stay where the connection keeps them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kv::resp {

struct Limits {
  std::size_t max_bulk = std::size_t{512} << 20;  ///< one argument (Redis: proto-max-bulk-len)
  std::size_t max_array = std::size_t{1} << 20;   ///< arguments of one request
  std::size_t max_inline = 64 << 10;              ///< an inline request, or a `*N`/`$N` line
};

class RequestParser {
 public:
  enum class Status : std::uint8_t {
    complete,    ///< args() holds the request (possibly empty: `*0`, a blank line); `used` bytes
    incomplete,  ///< more bytes are needed; call again with the same bytes and more
    error,       ///< malformed (error() says how): answer it and close the connection
  };
  struct Result {
    Status status;
    std::size_t used;  ///< bytes of the request (complete only)
  };

  explicit RequestParser(const Limits& limits = {}) : limits_(limits) {}

  /// Parses the request at the front of `in`. After `incomplete`, the next
  /// call must pass the same bytes (and more after them); after `complete`
  /// or `error` the parser starts afresh.
  Result parse(std::string_view in);
  /// The arguments of the last complete request: views into the `in` of that
  /// call (or into the parser, for an inline request), valid until the next call.
  [[nodiscard]] std::span<const std::string_view> args() const noexcept { return views_; }
  /// What was wrong, after Status::error (the text after "Protocol error: ").
  [[nodiscard]] std::string_view error() const noexcept { return error_; }
  [[nodiscard]] const Limits& limits() const noexcept { return limits_; }
  /// Forgets the progress made on an incomplete request (the next call may
  /// start elsewhere).
  void discard() noexcept { reset(); }

 private:
  Result fail(std::string_view why);
  Result complete(std::size_t used);
  void reset() noexcept;
  Result parse_multibulk(std::string_view in);
  Result parse_inline(std::string_view in);

  Limits limits_;
  // Progress of a multi-bulk request that is not complete yet: offsets from
  // the first byte of the request, which stays the first byte of `in`.
  std::size_t pos_ = 0;      // the next byte to look at
  std::int64_t count_ = -1;  // declared elements, -1 before the `*N` line is read
  std::int64_t bulk_ = -1;   // the current element's declared length, -1 before its `$N` line
  std::size_t scanned_ = 0;  // an inline request: bytes searched for '\n' so far
  struct Arg {
    std::size_t offset;
    std::size_t size;
  };
  std::vector<Arg> spans_;
  std::vector<std::string_view> views_;
  std::string inline_;  // the unquoted arguments of an inline request
  std::string_view error_;
  std::string error_text_;
};

/// Parses a whole decimal number as Redis does (string2ll): an optional '-',
/// no leading zeros, no '+', no spaces, within int64. False otherwise.
bool parse_int(std::string_view s, std::int64_t& out) noexcept;

// ---- replies, appended to `out` ----------------------------------------------------------
inline void simple(std::string& out, std::string_view s) {
  out += '+';
  out += s;
  out += "\r\n";
}
/// `-<message>\r\n`; CR and LF inside the message (it may quote the client)
/// become spaces, as in Redis.
void error(std::string& out, std::string_view message);
void integer(std::string& out, std::int64_t n);
void bulk(std::string& out, std::string_view s);
inline void null_bulk(std::string& out) { out += "$-1\r\n"; }
void array(std::string& out, std::size_t n);

/// The length of the bulk string or nil at the front of `in` (`$3\r\nabc\r\n`
/// or `$-1\r\n`), or 0 when there is none.
std::size_t bulk_value_size(std::string_view in) noexcept;

}  // namespace kv::resp
