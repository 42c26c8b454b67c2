// The session: llhttp drives the parse; the callbacks only copy bytes into
// reused buffers and pause the parser at a few points of each request
// (headers complete, last chunk, message complete), where feed() takes over:
// limits, request checks and Expect at the first, dispatch to the router at
// the last. Handlers therefore never run inside llhttp, and the pause
// positions give the exact size of each header block as received.
//
// Output order: every dispatched request (and every error answer) takes the
// next sequence number. While nothing is outstanding, a ready response is
// written straight away; once a response is outstanding (a deferred
// Responder), later ones wait in a ring of slots, serialised, until the ones
// before them are written.
//
// Backpressure: a complete request is dispatched only while the output is
// not congested and no streamed response is in progress. Otherwise the
// session pauses with that request held (parsed, not dispatched) and the
// bytes after it kept in a backlog; later input is appended to the backlog,
// unparsed (the connection is asked to stop reading meanwhile), and resume()
// carries on from there.
//
// Streamed responses (Responder::stream) take a slot like any other; once at
// the front their head goes out and they hold the output until they end.
// Their producer runs from settle(), the last step of every call from
// outside (feed, resume, an answer or a stream write from a handler), never
// nested inside another producer or the parser.
//
// ---- What is accepted (RFC 9112), and llhttp's settings --------------------
//
// Every malformed request is answered with its status and `Connection: close`,
// and nothing after it on the connection is parsed.
//
// llhttp (Debian's node-llhttp 8.1) is compiled with LLHTTP_STRICT_MODE=1
// (net/CMakeLists.txt). The loose build skips any two bytes after chunk data
// (a request hidden there was answered: smuggling), takes a header name with
// whitespace in it or before the colon, any byte after the CR ending the
// header block, and tabs, form feeds and bytes >= 0x80 in the request-target;
// the strict build rejects each of these (400). It also reports data after a
// `Connection: close` request as an error, which never matters here: the
// session parses nothing after such a request.
//
// Lenient flags, each chosen:
//   headers          off: control characters in a field value are rejected (400).
//   chunked_length   off: Transfer-Encoding with Content-Length is rejected by
//                    llhttp itself (400, the classic smuggling vector; the
//                    connection closes).
//   keep_alive       off: nothing is parsed after a request that closes.
//   transfer_encoding ON: llhttp then delivers the whole Transfer-Encoding
//                    value instead of failing at `chunked, gzip`, so the
//                    session can tell an unknown coding (501) from a
//                    malformed list (400). The session checks every
//                    Transfer-Encoding before llhttp frames a body: the only
//                    coding accepted is exactly one `chunked`, and then
//                    llhttp must have seen chunked too. (Were the check
//                    skipped, llhttp would read the body to the end of the
//                    connection: nothing after it could be smuggled.)
//   version          ON (LENIENT_VERSION, no setter in 8.1): llhttp hands every
//                    DIGIT.DIGIT version to the session, which answers 505 for
//                    a major version other than 1 (HTTP/0.9 written out,
//                    HTTP/2.0, PRI * HTTP/2.0, HTTP/3.0) and serves HTTP/1.x
//                    with x >= 2 as HTTP/1.1 (RFC 9110 2.5: a higher minor
//                    version is processed as the highest one implemented).
//                    Anything else in the version (HTTP/1.10, HTTP/01.1,
//                    HTTP/1) is malformed: 400.
//
// The session's own checks, besides llhttp's:
//   - CR and LF: every line of the request line, header and trailer sections
//     and of the chunk framing ends with CRLF. A bare LF, which llhttp takes
//     after the request line and as the empty line ending a section, is
//     refused (400) wherever it appears, and so is a bare CR; RFC 9112 2.2
//     allows either choice for LF, this one leaves no two readings of where
//     a request ends.
//   - obs-fold (a field line starting with SP or HTAB, which llhttp joins to
//     the previous value): 400, in headers and trailers (RFC 9112 5.2).
//   - the request line has exactly two single SPs: no version (HTTP/0.9
//     style, `GET /`), or a doubled SP: 400, at once.
//   - Host: HTTP/1.1 without one, more than one, or one with a character
//     that cannot be in uri-host [":" port]: 400 (RFC 9112 3.2).
//   - an empty field name: 400.
//   - Transfer-Encoding: in HTTP/1.0, 400 (RFC 9112 6.1); a coding other than
//     chunked anywhere in the list (`gzip, chunked`, `chunked, gzip`,
//     `identity`, `chunked;x=1`): 501 (RFC 9112 6.1: a coding not understood;
//     nginx does the same; for `chunked, gzip` RFC 9112 6.3 would also allow
//     400, either way the connection closes); chunked twice, or an empty
//     list: 400.
//   - Content-Length: llhttp rejects signs, junk, lists and duplicates (400);
//     a value over 2^64-1 is 413, like one over max_body_bytes (before any
//     body byte is read). A chunk size over what is left of max_body_bytes,
//     or over 2^64-1, is 413 as soon as its line ends.
//   - a method llhttp does not know (`QUERY`, `get`) in a well-formed request
//     line: 501 (RFC 9110 9.1). llhttp stops at the method, so the session
//     judges the line on the input at hand: when the line is not all there
//     (sent in pieces), or is malformed anywhere, the answer is 400. Either
//     way the request is refused and the connection closes.
//   - limits (see Limits): header bytes and count (431), the trailer section's
//     bytes and count (431), chunk extensions' count and bytes (400). (llhttp
//     8.1 also refuses, 400, an extension with a value followed by another,
//     `;a=b;c`: a parser limitation, harmless as extensions are all but
//     never sent.)
//   - memory: nothing is sized from a declared length; the body grows as its
//     bytes arrive. An allocation that fails while reading a body answers
//     413 and closes; one that fails elsewhere ends that connection only.
#include "ringshard/net/http/session.hpp"

#include "ringshard/net/detail/ordered_slots.hpp"
#include "ringshard/framework/log.hpp"

#include <llhttp.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <charconv>
#include <chrono>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

namespace ringshard::net::http {

namespace detail {

// One streamed response (Responder::stream). Owned by its slot; BodyStream
// handles refer to it weakly and are counted, to notice a stream given up.
struct StreamState {
  StreamProducer producer;
  std::string pending;  // head and body written before the stream's turn came
  std::optional<std::size_t> length;
  std::size_t written = 0;
  std::uint64_t progress = 0;  // bumped by every write and by the end
  int handles = 0;             // BodyStream copies alive
  bool chunked = false;
  bool no_body = false;  // HEAD, or a status without a body: only the head goes out
  bool closes = false;   // the connection closes after this response
  bool active = false;   // its turn came: the head went out, writes go straight out
  bool ended = false;
  bool broken = false;  // ended without its whole body: the connection closes after it
};

class SessionCore : public std::enable_shared_from_this<SessionCore> {
 public:
  SessionCore(const Router& router, Limits limits, Output& output);

  void feed(std::string_view bytes);
  void resume();
  void end_of_input();
  void answer(std::uint64_t seq, Response&& response);
  void answer_error(std::uint64_t seq, int status);
  [[nodiscard]] bool owes(std::uint64_t seq) noexcept {
    const Slot* s = slots_.find(seq);
    return s && !s->ready && !closed_ && !close_pending_;
  }
  std::size_t expire(std::chrono::steady_clock::time_point now, std::chrono::milliseconds limit);
  void stop_input();
  std::size_t answer_owed(int status);
  template <class Pick>
  std::size_t answer_unready(int status, Pick pick);
  BodyStream answer_stream(std::uint64_t seq, Response&& head, std::optional<std::size_t> length,
                           StreamProducer producer);
  bool stream_write(StreamState& st, std::string_view bytes, SharedBuffer* shared);
  void stream_end(StreamState& st, bool broken);
  void stream_released(StreamState& st);
  [[nodiscard]] bool stream_ready(const StreamState& st) const noexcept;
  void detach() noexcept {
    out_ = nullptr;
    closed_ = true;
    stopped_ = true;
  }

  [[nodiscard]] bool alive() const noexcept { return !closed_ && !close_pending_; }
  [[nodiscard]] bool mid_request() const noexcept { return in_message_ && !stopped_ && !paused_; }
  [[nodiscard]] bool reading_head() const noexcept { return mid_request() && !in_body_; }
  [[nodiscard]] bool paused() const noexcept { return paused_ && !stopped_ && !closed_; }
  [[nodiscard]] std::uint64_t requests() const noexcept { return requests_; }
  [[nodiscard]] std::size_t pending() const noexcept { return slots_.size(); }
  [[nodiscard]] bool closing() const noexcept { return stopped_ || closed_; }

 private:
  // What serialising a response needs to know about its request.
  struct Info {
    bool http10 = false;
    bool head = false;
    bool keep_alive = true;
    Clock::time_point dispatched{};  // the batch's first dispatch, if a handler is called (none: default)
    bool deferred = false;           // answered through a Responder: timed alone
  };
  struct Slot {
    Info info;
    bool ready = false;
    bool closes = false;
    bool send_continue = false;  // write "100 Continue" right after this response
    bool seen = false;           // the response deadline's first look at it (expire)
    bool after = false;          // after hooks run on the answer
    bool copied = false;         // `request` holds the request's target and path
    std::string bytes;
    std::shared_ptr<StreamState> stream;  // a streamed response (ready once its head is known)
    std::chrono::steady_clock::time_point seen_at{};
    // What the hooks of a later answer see of the request: the target, then
    // the decoded path, in one reused string.
    const Router::Middleware* middleware = nullptr;
    Method method = Method::get;
    std::string_view method_name;
    std::string request;
    std::uint32_t target_len = 0, raw_path_off = 0, raw_path_len = 0, query_off = 0, query_len = 0;
    void reset() noexcept {
      info = Info{};
      ready = closes = send_continue = seen = after = copied = false;
      bytes.clear();  // keeps its capacity for the next response
      request.clear();
      stream.reset();
      middleware = nullptr;
    }
  };
  struct Span {
    std::uint32_t name_off = 0, name_len = 0, value_off = 0, value_len = 0;
  };
  enum class Pause : std::uint8_t { none, headers, trailers, message };

  // The line check over every byte that is not body data (request line,
  // header and trailer sections, chunk-size lines, the CRLF after chunk
  // data): CRLF line ends only, no line starting with SP or HTAB (obs-fold),
  // and a request line with exactly two SPs. It runs over what llhttp
  // consumed, before the session acts on a pause (so before any dispatch).
  struct Lines {
    enum class Part : std::uint8_t { before_request, request_line, fields };
    Part part = Part::before_request;
    bool cr = false;          // the last byte was a CR
    bool line_start = true;   // the last bytes ended a line
    std::uint8_t spaces = 0;  // SPs in the request line so far
    void next_request() noexcept { *this = Lines{}; }
    [[nodiscard]] bool scan(const char* p, const char* end) noexcept;
  };

  static const llhttp_settings_t& settings() noexcept {
    static const llhttp_settings_t s = make_settings();
    return s;
  }
  static SessionCore& self(llhttp_t* p) noexcept { return *static_cast<SessionCore*>(p->data); }
  static int on_message_begin(llhttp_t* p) noexcept;
  static int on_url(llhttp_t* p, const char* at, std::size_t len) noexcept;
  static int on_version_complete(llhttp_t* p) noexcept;
  static int on_header_field(llhttp_t* p, const char* at, std::size_t len) noexcept;
  static int on_header_field_complete(llhttp_t* p) noexcept;
  static int on_header_value(llhttp_t* p, const char* at, std::size_t len) noexcept;
  static int on_header_value_complete(llhttp_t* p) noexcept;
  static int on_headers_complete(llhttp_t* p) noexcept;
  static int on_chunk_header(llhttp_t* p) noexcept;
  static int on_chunk_extension(llhttp_t* p, const char* at, std::size_t len) noexcept;
  static int on_chunk_extension_name_complete(llhttp_t* p) noexcept;
  static int on_body(llhttp_t* p, const char* at, std::size_t len) noexcept;
  static int on_message_complete(llhttp_t* p) noexcept;

  static llhttp_settings_t make_settings() noexcept;
  int append_head(const char* at, std::size_t len, int status) noexcept;
  int reject(int status) noexcept {
    error_status_ = status;
    return HPE_USER;
  }

  const char* parse(const char* p, const char* end);
  [[nodiscard]] int error_status(llhttp_errno_t err) const noexcept;
  [[nodiscard]] int check_request() const noexcept;
  void continue_paused();
  void headers_done();
  void message_done();
  void fail(int status);
  void finish_request() noexcept;
  void keep_request(Slot& slot, const Router::Middleware* middleware);
  void view_of(const Slot& slot, Request& view) const noexcept;
  void run_after(const Router::Middleware* route, const Request& req, Response& response);
  void complete(std::uint64_t seq, const Info& info, Response&& response);
  void serialize(std::string& out, const Info& info, const Response& r);
  void serialize_head(std::string& out, const Info& info, const Response& r, std::optional<std::size_t> length,
                      bool chunked, bool closes);
  void emit(std::string_view bytes, bool closes, bool send_continue);
  void drain();
  bool advance_stream();
  void after_output();
  void flush_point();
  void settle();
  Clock::time_point batch_time();
  void end_batch() noexcept;
  void pump();
  // No request is dispatched now: the output is congested, or a streamed
  // response is in progress.
  [[nodiscard]] bool blocked() const noexcept { return open_streams_ > 0 || (out_ && out_->congested()); }


  [[nodiscard]] bool http10() const noexcept { return parser_.http_major == 1 && parser_.http_minor == 0; }

  llhttp_t parser_{};
  const Router& router_;
  Limits limits_;
  Output* out_;

  // Parse state of the current request.
  Pause pause_ = Pause::none;
  bool in_message_ = false;
  bool in_body_ = false;  // headers complete (header callbacks now are trailers: not kept)
  bool in_trailers_ = false;  // after the last chunk: the trailer section
  bool in_field_ = false;
  bool in_value_ = false;
  bool version_seen_ = false;
  bool head_ready_ = false;  // request_ describes the request being read (its head is complete)
  bool bad_target_ = false;  // an invalid escape in the path or query: 400 once the request is complete
  bool hooks_after_ = false; // some global middleware has an after hook
  int error_status_ = 0;        // set by a callback that fails the parse
  std::size_t header_raw_ = 0;  // bytes received since the last request ended, while in a header block
  std::size_t trailer_raw_ = 0; // bytes of the trailer section received so far
  std::size_t url_len_ = 0;
  std::size_t field_len_ = 0;   // length of the field name being read
  std::size_t trailers_ = 0;    // trailer fields so far
  std::size_t extensions_ = 0;  // chunk extensions so far
  std::size_t extension_bytes_ = 0;
  std::string arena_;  // target, then header names and values
  std::vector<Span> spans_;
  Request request_;

  // The input llhttp is running over (valid during llhttp_execute), and how
  // far the line check has looked at it.
  const char* exec_begin_ = nullptr;
  const char* exec_end_ = nullptr;
  const char* scanned_ = nullptr;
  Lines lines_;

  // Output state.
  std::uint64_t next_seq_ = 0;  // sequence number of the next request (or error answer)
  // Responses owed, in request order, from the oldest not yet written (the
  // same ring as net::ReplyQueue's).
  net::detail::OrderedSlots<Slot> slots_;
  std::string scratch_;
  std::uint64_t requests_ = 0;
  bool in_feed_ = false;
  // The batch being dispatched (see Output::on_handled): when its first
  // handler was called (none yet: default), the answers handlers returned.
  Clock::time_point batch_start_{};
  std::size_t batch_answers_ = 0;
  bool dirty_ = false;          // written since the last flush
  bool stopped_ = false;        // no more input is parsed
  bool eof_ = false;            // the peer sends nothing more
  bool stopping_input_ = false;  // stop_input(): the last answer owed closes
  bool close_pending_ = false;  // a closing response went out: close at the next flush point
  bool closed_ = false;         // close_after_flush() called, or the session is gone
  bool pumping_ = false;        // a stream's producer is running
  bool input_paused_ = false;   // told the output to pause input
  std::size_t open_streams_ = 0;  // streamed responses not ended yet

  // Backpressure state.
  bool paused_ = false;   // the output was congested at a request boundary: parse nothing until resume()
  bool held_ = false;     // paused with a complete request not dispatched yet (request_ holds it)
  std::string backlog_;   // input after the held request, not parsed yet
};

namespace {

constexpr std::string_view continue_line = "HTTP/1.1 100 Continue\r\n\r\n";

Method to_method(std::uint8_t m) noexcept {
  switch (m) {
    case HTTP_GET: return Method::get;
    case HTTP_HEAD: return Method::head;
    case HTTP_POST: return Method::post;
    case HTTP_PUT: return Method::put;
    case HTTP_DELETE: return Method::del;
    case HTTP_PATCH: return Method::patch;
    case HTTP_OPTIONS: return Method::options;
    case HTTP_CONNECT: return Method::connect;
    case HTTP_TRACE: return Method::trace;
    default: return Method::other;
  }
}

// Buffers are reused across requests, but one large body or response should
// not stay allocated for the rest of a long-lived connection.
constexpr std::size_t keep_capacity = 64 * 1024;
void trim(std::string& s) noexcept {
  if (s.capacity() > keep_capacity) std::string().swap(s);
}

void append_uint(std::string& out, std::size_t v) {
  char buf[24];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, static_cast<std::size_t>(res.ptr - buf));
}

// What the error hook sees for a request refused before its head was read.
const Request& blank_request() noexcept {
  static const Request blank;
  return blank;
}

// tchar (RFC 9110 5.6.2).
constexpr bool is_tchar(unsigned char c) noexcept {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}

constexpr bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

// Whether the request line around `pos` (where llhttp gave up on the
// method) is method SP request-target SP HTTP/DIGIT.DIGIT CRLF, all of it
// within [begin, end): method a token, target visible ASCII.
bool well_formed_request_line(const char* begin, const char* pos, const char* end) noexcept {
  const char* p = pos;
  while (p > begin && is_tchar(static_cast<unsigned char>(p[-1]))) --p;
  if (p > begin && p[-1] != '\n') return false;  // the line starts before this input: not seen whole
  const char* const method = p;
  while (p < end && is_tchar(static_cast<unsigned char>(*p))) ++p;
  if (p == method || p == end || *p++ != ' ') return false;
  const char* const target = p;
  while (p < end && *p > ' ' && *p < 0x7f) ++p;
  if (p == target || p == end || *p++ != ' ') return false;
  constexpr std::string_view tail = "HTTP/D.D\r\n";
  if (static_cast<std::size_t>(end - p) < tail.size()) return false;
  for (const char t : tail) {
    const char c = *p++;
    if (t == 'D' ? !is_digit(c) : c != t) return false;
  }
  return true;
}

// A Host value: uri-host [":" port] (RFC 9112 3.2, RFC 3986 3.2.2), checked
// by character: reg-name and IP-literal characters, ':' and the brackets.
// Empty is valid (a target without authority).
constexpr auto host_chars = [] {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[static_cast<std::size_t>(c)] = t[static_cast<std::size_t>(c - 32)] = true;
  for (const char c : std::string_view("-._~%!$&'()*+,;=:[]")) t[static_cast<unsigned char>(c)] = true;
  return t;
}();
bool valid_host(std::string_view v) noexcept {
  for (const char c : v)
    if (!host_chars[static_cast<unsigned char>(c)]) return false;
  return true;
}

// Whether the field name `name` (a token: llhttp checked it) is `lower`, a
// lower-case name of letters and '-', whatever its case. For tokens, c | 0x20
// equals a letter only for that letter in either case, and equals '-' only
// for '-' (0x0d is no token character).
bool is_field(std::string_view name, std::string_view lower) noexcept {
  if (name.size() != lower.size()) return false;
  for (std::size_t i = 0; i < name.size(); ++i)
    if ((name[i] | 0x20) != lower[i]) return false;
  return true;
}

// Transfer-Encoding values, all of them together: the status to refuse the
// request with, or 0 when it is exactly one `chunked`.
struct TransferCodings {
  bool present = false;
  bool unknown = false;
  int chunked = 0;
  void add(std::string_view list) noexcept {
    present = true;
    while (!list.empty()) {
      const std::size_t comma = list.find(',');
      std::string_view item = list.substr(0, comma);
      list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
      while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
      while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
      if (item.empty()) continue;  // empty list elements are allowed (RFC 9110 5.6.1)
      if (iequals(item, "chunked")) ++chunked;
      else unknown = true;  // another coding, or chunked with parameters
    }
  }
};

}  // namespace

// Line by line (memchr to each LF): a bare CR inside a line is refused by
// llhttp itself (in the request line, field lines, chunk-size lines, after
// chunk data and at the end of a section, in its strict build), so what is
// left to check is at the line ends and starts: each LF has a CR before it,
// and no line starts with SP or HTAB. Before the request line, where llhttp
// skips any run of CR and LF, every byte is checked.
bool SessionCore::Lines::scan(const char* p, const char* const end) noexcept {
  // The state in locals: stores to the members could alias the input (both
  // are char-sized), which would keep the loop from holding it in registers.
  Part at = part;
  bool after_cr = cr;
  bool at_line_start = line_start;
  unsigned sp = spaces;
  bool ok = true;
  while (p < end) {
    if (at == Part::before_request) {  // empty lines (CRLF) before the request
      const char c = *p;
      if (after_cr ? c != '\n' : c == '\n') {  // a bare CR, or a bare LF
        ok = false;
        break;
      }
      if (after_cr || c == '\r') {
        after_cr = !after_cr;
        ++p;
        continue;
      }
      at = Part::request_line;  // the method's first byte
      at_line_start = false;
    }
    if (at_line_start) {
      at_line_start = false;
      if (*p == ' ' || *p == '\t') {  // obs-fold, or whitespace before a field
        ok = false;
        break;
      }
    }
    const void* lf = std::memchr(p, '\n', static_cast<std::size_t>(end - p));
    const char* const stop = lf != nullptr ? static_cast<const char*>(lf) : end;
    if (at == Part::request_line) sp += static_cast<unsigned>(std::count(p, stop, ' '));
    if (stop > p) after_cr = stop[-1] == '\r';
    if (lf == nullptr) break;  // the line goes on in the next input
    if (!after_cr) {  // a bare LF
      ok = false;
      break;
    }
    if (at == Part::request_line) {
      if (sp != 2) {  // no version (HTTP/0.9 style), or a doubled SP
        ok = false;
        break;
      }
      at = Part::fields;
    }
    after_cr = false;
    at_line_start = true;
    p = stop + 1;
  }
  part = at;
  cr = after_cr;
  line_start = at_line_start;
  spaces = static_cast<std::uint8_t>(sp > 255 ? 255 : sp);
  return ok;
}

llhttp_settings_t SessionCore::make_settings() noexcept {
  llhttp_settings_t s;
  llhttp_settings_init(&s);
  s.on_message_begin = &on_message_begin;
  s.on_url = &on_url;
  s.on_version_complete = &on_version_complete;
  s.on_header_field = &on_header_field;
  s.on_header_field_complete = &on_header_field_complete;
  s.on_header_value = &on_header_value;
  s.on_header_value_complete = &on_header_value_complete;
  s.on_headers_complete = &on_headers_complete;
  s.on_chunk_header = &on_chunk_header;
  s.on_chunk_extension_name = &on_chunk_extension;
  s.on_chunk_extension_value = &on_chunk_extension;
  s.on_chunk_extension_name_complete = &on_chunk_extension_name_complete;
  s.on_body = &on_body;
  s.on_message_complete = &on_message_complete;
  return s;
}

SessionCore::SessionCore(const Router& router, Limits limits, Output& output)
    : router_(router), limits_(limits), out_(&output) {
  for (const Router::Middleware& m : router_.middleware()) hooks_after_ |= static_cast<bool>(m.after);
  llhttp_init(&parser_, HTTP_REQUEST, &settings());
  parser_.data = this;
  // The lenient flags and why: see the top of this file.
  llhttp_set_lenient_headers(&parser_, 0);
  llhttp_set_lenient_chunked_length(&parser_, 0);
  llhttp_set_lenient_keep_alive(&parser_, 0);
  llhttp_set_lenient_transfer_encoding(&parser_, 1);
  parser_.lenient_flags |= LENIENT_VERSION;
}

// ---- llhttp callbacks -------------------------------------------------------

int SessionCore::on_message_begin(llhttp_t* p) noexcept {
  SessionCore& s = self(p);
  s.in_message_ = true;
  s.in_body_ = false;
  s.in_trailers_ = false;
  s.in_field_ = false;
  s.in_value_ = false;
  s.version_seen_ = false;
  s.head_ready_ = false;
  s.url_len_ = 0;
  s.field_len_ = 0;
  s.trailers_ = 0;
  s.trailer_raw_ = 0;
  s.extensions_ = 0;
  s.extension_bytes_ = 0;
  s.arena_.clear();
  s.spans_.clear();
  return 0;
}

int SessionCore::append_head(const char* at, std::size_t len, int status) noexcept {
  if (arena_.size() + len > limits_.max_header_bytes) return reject(status);
  try {
    arena_.append(at, len);  // within max_header_bytes: the capacity stays bounded
  } catch (...) {
    return reject(500);
  }
  return 0;
}

int SessionCore::on_url(llhttp_t* p, const char* at, std::size_t len) noexcept {
  SessionCore& s = self(p);
  s.url_len_ += len;
  return s.append_head(at, len, 414);
}

int SessionCore::on_version_complete(llhttp_t* p) noexcept {
  SessionCore& s = self(p);
  s.version_seen_ = true;
  if (p->http_major != 1) return s.reject(505);
  return 0;
}

int SessionCore::on_header_field(llhttp_t* p, const char* at, std::size_t len) noexcept {
  SessionCore& s = self(p);
  if (!s.version_seen_) return s.reject(400);  // fields after a request line without a version
  if (!s.in_field_) {
    s.in_field_ = true;
    s.field_len_ = 0;
    if (s.in_body_) {
      if (++s.trailers_ > s.limits_.max_headers) return s.reject(431);
    } else {
      if (s.spans_.size() >= s.limits_.max_headers) return s.reject(431);
      const auto off = static_cast<std::uint32_t>(s.arena_.size());
      try {
        s.spans_.push_back(Span{off, 0, off, 0});
      } catch (...) {
        return s.reject(500);
      }
    }
  }
  s.field_len_ += len;
  if (s.in_body_) return 0;  // trailer fields are not kept (their size is counted as received)
  s.spans_.back().name_len += static_cast<std::uint32_t>(len);
  return s.append_head(at, len, 431);
}

int SessionCore::on_header_field_complete(llhttp_t* p) noexcept {
  SessionCore& s = self(p);
  const bool empty = !s.in_field_ || s.field_len_ == 0;
  s.in_field_ = false;
  s.field_len_ = 0;
  return empty ? s.reject(400) : 0;  // a field line starting with ':'
}

int SessionCore::on_header_value(llhttp_t* p, const char* at, std::size_t len) noexcept {
  SessionCore& s = self(p);
  if (s.in_body_ || s.spans_.empty()) return 0;
  if (!s.in_value_) {
    s.in_value_ = true;
    s.spans_.back().value_off = static_cast<std::uint32_t>(s.arena_.size());
  }
  s.spans_.back().value_len += static_cast<std::uint32_t>(len);
  return s.append_head(at, len, 431);
}

int SessionCore::on_header_value_complete(llhttp_t* p) noexcept {
  self(p).in_value_ = false;
  return 0;
}

int SessionCore::on_headers_complete(llhttp_t* p) noexcept {
  SessionCore& s = self(p);
  s.in_body_ = true;
  s.pause_ = Pause::headers;
  return HPE_PAUSED;
}

// After each chunk-size line: a chunk over what is left of the body limit is
// refused now, before its bytes; the last chunk starts the trailer section,
// whose size parse() counts from here.
int SessionCore::on_chunk_header(llhttp_t* p) noexcept {
  SessionCore& s = self(p);
  if (p->content_length > s.limits_.max_body_bytes - s.request_.body.size()) return s.reject(413);
  if (p->content_length != 0) return 0;
  s.pause_ = Pause::trailers;
  return HPE_PAUSED;
}

int SessionCore::on_chunk_extension(llhttp_t* p, const char* /*at*/, std::size_t len) noexcept {
  SessionCore& s = self(p);
  s.extension_bytes_ += len;
  return s.extension_bytes_ > s.limits_.max_chunk_extension_bytes ? s.reject(400) : 0;
}

int SessionCore::on_chunk_extension_name_complete(llhttp_t* p) noexcept {
  SessionCore& s = self(p);
  return ++s.extensions_ > s.limits_.max_chunk_extensions ? s.reject(400) : 0;
}

int SessionCore::on_body(llhttp_t* p, const char* at, std::size_t len) noexcept {
  SessionCore& s = self(p);
  // The framing bytes before this body data get their line check now.
  if (!s.lines_.scan(s.scanned_, at)) return s.reject(400);
  s.scanned_ = at + len;
  s.lines_.line_start = false;
  s.lines_.cr = false;
  if (len > s.limits_.max_body_bytes - s.request_.body.size()) return s.reject(413);
  try {
    s.request_.body.append(at, len);  // grows with what arrived, never with what was declared
  } catch (...) {
    std::string().swap(s.request_.body);
    return s.reject(413);
  }
  return 0;
}

int SessionCore::on_message_complete(llhttp_t* p) noexcept {
  self(p).pause_ = Pause::message;
  return HPE_PAUSED;
}

// ---- input ------------------------------------------------------------------

void SessionCore::feed(std::string_view bytes) {
  if (stopped_ || closed_ || eof_) return;
  if (paused_) {  // parsed on resume(); bounded, as the connection stops reading while congested
    backlog_.append(bytes);
    return;
  }
  const auto keep = shared_from_this();  // in case the output destroys the Session meanwhile
  in_feed_ = true;
  const char* const end = bytes.data() + bytes.size();
  const char* const rest = parse(bytes.data(), end);
  if (paused_) backlog_.assign(rest, end);
  in_feed_ = false;
  settle();
}

void SessionCore::resume() {
  if (in_feed_ || pumping_ || closed_) return;
  settle();
}

// The held request first (unless the output is still congested), then the
// backlog; once all of it is parsed, an end of input seen meanwhile takes
// effect.
void SessionCore::continue_paused() {
  paused_ = false;
  if (held_ && !stopped_) {
    if (blocked()) {
      paused_ = true;
      return;
    }
    held_ = false;
    message_done();
  }
  held_ = false;
  if (!stopped_ && !backlog_.empty()) {
    const char* const begin = backlog_.data();
    const char* const rest = parse(begin, begin + backlog_.size());
    if (paused_) {
      backlog_.erase(0, static_cast<std::size_t>(rest - begin));
      return;
    }
  }
  backlog_.clear();
  trim(backlog_);
  if (eof_) {
    stopped_ = true;
    in_message_ = false;
  }
}

// Runs the parser over [p, end) until all of it is consumed, the session
// stops taking input, or a complete request finds the output congested
// (paused_, with the request held). Returns where it stopped.
const char* SessionCore::parse(const char* p, const char* const end) {
  // After the headers-complete pause the parser still has steps that take
  // no input (a request without a body completes there), so it runs once
  // more even when all bytes are consumed.
  bool run_once_more = false;
  while ((p < end || std::exchange(run_once_more, false)) && !stopped_) {
    exec_begin_ = scanned_ = p;
    exec_end_ = end;
    const llhttp_errno_t err = llhttp_execute(&parser_, p, static_cast<std::size_t>(end - p));
    if (err == HPE_OK) {
      if (!lines_.scan(scanned_, end)) {
        fail(400);
        return end;
      }
      if (!in_body_) {
        header_raw_ += static_cast<std::size_t>(end - p);
        // Still in the request line with a target: the target is what is too
        // long (414, as when on_url finds it over the limit first).
        if (header_raw_ > limits_.max_header_bytes) fail(!version_seen_ && url_len_ > 0 ? 414 : 431);
      } else if (in_trailers_) {
        trailer_raw_ += static_cast<std::size_t>(end - p);
        if (trailer_raw_ > limits_.max_header_bytes) fail(431);
      }
      return end;
    }
    if (err == HPE_PAUSED) {
      const char* pos = llhttp_get_error_pos(&parser_);
      if (!lines_.scan(scanned_, pos)) {
        fail(400);
        return end;
      }
      const Pause why = std::exchange(pause_, Pause::none);
      if (why == Pause::headers) {
        header_raw_ += static_cast<std::size_t>(pos - p);
        headers_done();
        run_once_more = true;
      } else if (why == Pause::trailers) {
        in_trailers_ = true;
        run_once_more = true;
      } else if (why == Pause::message) {
        if (in_trailers_) {
          trailer_raw_ += static_cast<std::size_t>(pos - p);
          if (trailer_raw_ > limits_.max_header_bytes) {
            fail(431);
            return end;
          }
        }
        lines_.next_request();
        if (blocked()) {  // between two requests: the parser holds nothing of the next
          llhttp_resume(&parser_);
          paused_ = true;
          held_ = true;
          return pos;
        }
        message_done();
      } else {
        fail(400);  // a pause we did not ask for: cannot happen with these callbacks
      }
      if (stopped_) return pos;
      llhttp_resume(&parser_);
      p = pos;
      continue;
    }
    // A parse error, a limit hit in a callback, or an upgrade (which only
    // comes after a request we answered with close, so never here).
    fail(error_status(err));
    return end;
  }
  return p;
}

// The status for a request llhttp stopped at.
int SessionCore::error_status(llhttp_errno_t err) const noexcept {
  if (error_status_ != 0) return error_status_;
  const char* pos = llhttp_get_error_pos(&parser_);
  const bool at_byte = pos != nullptr && pos >= exec_begin_ && pos < exec_end_;
  switch (err) {
    case HPE_INVALID_METHOD:
      // A method llhttp does not know, in a well-formed request line, is one
      // we do not implement: 501 (RFC 9110 9.1). Anything else is malformed.
      return at_byte && well_formed_request_line(exec_begin_, pos, exec_end_) ? 501 : 400;
    case HPE_INVALID_CONTENT_LENGTH:
    case HPE_INVALID_CHUNK_SIZE: {
      // A Content-Length or chunk size over 2^64-1 is a valid number, too
      // large: 413. llhttp tells it from a malformed one only by its reason
      // ("Content-Length overflow", "Chunk size overflow"); should a later
      // llhttp word it otherwise, the answer is 400, still refused.
      const char* reason = llhttp_get_error_reason(&parser_);
      return reason != nullptr && std::string_view(reason).find("overflow") != std::string_view::npos ? 413 : 400;
    }
    case HPE_PAUSED_H2_UPGRADE:
      return 505;  // PRI * HTTP/2.0 (answered at its version already)
    default:
      return 400;
  }
}

// The checks on a complete header section that llhttp does not make: the
// status to refuse the request with, or 0.
int SessionCore::check_request() const noexcept {
  if (!version_seen_) return 400;
  const char* base = arena_.data();
  int hosts = 0;
  bool bad_host = false;
  TransferCodings te;
  for (const Span& s : spans_) {
    const std::string_view name(base + s.name_off, s.name_len);
    const std::string_view value(base + s.value_off, s.value_len);
    if (is_field(name, "host")) {
      ++hosts;
      bad_host |= !valid_host(value);
    } else if (is_field(name, "transfer-encoding")) {
      te.add(value);
    }
  }
  if (hosts > 1 || bad_host) return 400;
  if (hosts == 0 && !http10()) return 400;  // HTTP/1.1 (and 1.x served as 1.1) requires Host
  const auto flags = parser_.flags;
  // Both lengths: a request smuggling attempt (RFC 9112 6.1). llhttp
  // refuses it already; checked here whatever its settings.
  if ((flags & F_CONTENT_LENGTH) && (te.present || (flags & F_TRANSFER_ENCODING))) return 400;
  if (te.present) {
    if (http10()) return 400;   // RFC 9112 6.1: framing faulty in HTTP/1.0
    if (te.unknown) return 501; // a coding we do not implement
    if (te.chunked != 1) return 400;
    if (!(flags & F_CHUNKED)) return 400;  // llhttp must frame it as chunked too
  } else if (flags & F_TRANSFER_ENCODING) {
    return 400;  // cannot happen: llhttp saw a Transfer-Encoding the session did not
  }
  if ((flags & F_CONTENT_LENGTH) && parser_.content_length > limits_.max_body_bytes) return 413;
  return 0;
}

void SessionCore::headers_done() {
  // The request's fields first (views only, nothing copied but an escaped
  // path), so that the error hook of a refusal sees them.
  Request& r = request_;
  r.method = to_method(parser_.method);
  r.method_name = llhttp_method_name(static_cast<llhttp_method_t>(parser_.method));
  r.http_major = parser_.http_major;
  r.http_minor = parser_.http_minor > 1 ? 1 : parser_.http_minor;  // HTTP/1.x, x > 1: served as 1.1
  // An upgrade (or CONNECT) is answered as a plain request, then the
  // connection closes: the bytes after it would be another protocol.
  r.keep_alive = llhttp_should_keep_alive(&parser_) != 0 && parser_.upgrade == 0;

  const char* base = arena_.data();
  std::string_view target(base, url_len_);
  r.target = target;
  if (!target.empty() && target.front() != '/') {  // absolute-form: drop scheme and authority
    if (const auto scheme = target.find("://"); scheme != std::string_view::npos) {
      const auto slash = target.find('/', scheme + 3);
      target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
    }
  }
  std::size_t q = 0;
  while (q < target.size() && target[q] != '?' && target[q] != '#') ++q;
  r.query = {};
  if (q < target.size() && target[q] == '?') {
    const std::string_view rest = target.substr(q + 1);
    r.query = rest.substr(0, rest.find('#'));
  }
  r.query_storage_.clear();
  // Decoded once for the router; an invalid escape is answered 400 once the
  // request is complete (its framing is sound: the connection goes on).
  bad_target_ = !r.set_path(target.substr(0, q)) || !valid_escapes(r.query);
  r.headers.clear();
  for (const Span& s : spans_)
    r.headers.push_back(Header{{base + s.name_off, s.name_len}, {base + s.value_off, s.value_len}});
  // Nothing is reserved for the body: it grows as its bytes arrive (a
  // declared length is only a claim).
  r.body.clear();
  head_ready_ = true;

  if (header_raw_ > limits_.max_header_bytes) return fail(431);
  if (const int status = check_request(); status != 0) return fail(status);
  const bool chunked = (parser_.flags & F_CHUNKED) != 0;

  // Expect: 100-continue, when a body is to come (HTTP/1.1 only).
  if ((chunked || parser_.content_length > 0) && !http10()) {
    if (auto expect = r.header("expect"); expect && iequals(*expect, "100-continue")) {
      if (slots_.empty()) {
        if (out_) {
          out_->write(continue_line);
          out_->flush();
        }
        dirty_ = false;
      } else {
        // Behind a response still owed: goes out right after it.
        slots_.back().send_continue = true;
      }
    }
  }
}

namespace {
// Inside a catch block: one error line naming the request.
void log_handler_exception(const Request& req) noexcept {
  try {
    throw;
  } catch (const std::exception& e) {
    RINGSHARD_LOG_ERROR("http: the handler of {} {} threw: {}", req.method_name, req.path, e.what());
  } catch (...) {
    RINGSHARD_LOG_ERROR("http: the handler of {} {} threw something that is not a std::exception", req.method_name,
                        req.path);
  }
}
}  // namespace

void SessionCore::message_done() {
  in_message_ = false;
  in_body_ = false;
  in_trailers_ = false;
  header_raw_ = 0;
  ++requests_;
  const std::uint64_t seq = next_seq_++;
  if (!request_.keep_alive) stopped_ = true;  // ignore whatever follows

  Info info{request_.http_major == 1 && request_.http_minor == 0, request_.method == Method::head,
            request_.keep_alive, {}};

  // Global before hooks, the route's, the handler, the route's after hooks,
  // the global ones; a before hook that answers ends the way in. Without
  // hooks this is the find and the handler call.
  Request& req = request_;
  Router::Match m;
  if (bad_target_) {
    m.status = 400;
  } else {
    m = router_.find(req.method, req);
  }
  if (m.status == 0) info.dispatched = batch_time();  // the handler latency counts from here
  Response response;
  const Router::Middleware* route_hooks = m.middleware;  // run only once the way reached the route
  if (m.status != 0) {
    response = router_.error_response(m.status, req);
    if (m.status == 405) response.header("Allow", m.allow);
  } else {
    std::optional<Response> early;
    if (!router_.middleware().empty() || (m.middleware && m.middleware->before)) {
      try {
        for (const Router::Middleware& g : router_.middleware()) {
          if (g.before && (early = g.before(req))) {
            route_hooks = nullptr;
            break;
          }
        }
        if (!early && m.middleware && m.middleware->before) early = m.middleware->before(req);
      } catch (...) {
        log_handler_exception(req);
        early = router_.error_response(500, req);
        route_hooks = nullptr;
      }
    }
    if (early) {
      response = std::move(*early);
    } else if (m.handler) {
      try {
        response = (*m.handler)(req);
      } catch (...) {
        log_handler_exception(req);
        response = router_.error_response(500, req);
      }
    } else {
      Slot& slot = slots_.push().first;
      slot.info = info;
      slot.info.deferred = true;
      keep_request(slot, m.middleware);
      try {
        (*m.deferred)(req, Responder(weak_from_this(), seq));
      } catch (...) {
        // The Responder was destroyed with the handler's frame: 500 if unanswered.
        log_handler_exception(req);
      }
      finish_request();
      return;
    }
  }
  if (hooks_after_ || (route_hooks && route_hooks->after)) run_after(route_hooks, req, response);
  complete(seq, info, std::move(response));
  finish_request();
}

void SessionCore::finish_request() noexcept {
  head_ready_ = false;
  bad_target_ = false;
  trim(request_.body);
}

// A deferred request: what its answer's hooks need, kept in the slot (a copy
// of the target and path into the slot's reused string) when there are
// hooks to see it.
void SessionCore::keep_request(Slot& slot, const Router::Middleware* middleware) {
  slot.middleware = middleware;
  slot.after = hooks_after_ || (middleware && middleware->after);
  if (!slot.after && !router_.has_error_handler()) return;
  const Request& r = request_;
  slot.method = r.method;
  slot.method_name = r.method_name;  // llhttp's static name
  slot.request.assign(r.target);
  slot.request.append(r.path);
  slot.target_len = static_cast<std::uint32_t>(r.target.size());
  // The raw path is inside the target, but for an absolute form without a
  // path ("http://host"), where it is "/" on its own.
  const bool inside = r.raw_path.data() >= r.target.data() &&
                      r.raw_path.data() + r.raw_path.size() <= r.target.data() + r.target.size();
  slot.raw_path_off = inside ? static_cast<std::uint32_t>(r.raw_path.data() - r.target.data()) : 0;
  slot.raw_path_len = inside ? static_cast<std::uint32_t>(r.raw_path.size()) : 0;
  slot.query_off = r.query.empty() ? 0 : static_cast<std::uint32_t>(r.query.data() - r.target.data());
  slot.query_len = static_cast<std::uint32_t>(r.query.size());
  slot.copied = true;
}

void SessionCore::view_of(const Slot& slot, Request& view) const noexcept {
  view.http_major = 1;
  view.http_minor = slot.info.http10 ? 0 : 1;
  view.keep_alive = slot.info.keep_alive;
  if (!slot.copied) return;
  const std::string_view all = slot.request;
  view.method = slot.method;
  view.method_name = slot.method_name;
  view.target = std::string_view(all.data(), slot.target_len);
  view.path = std::string_view(all.data() + slot.target_len, all.size() - slot.target_len);
  view.raw_path = slot.raw_path_len != 0 ? std::string_view(all.data() + slot.raw_path_off, slot.raw_path_len)
                                         : std::string_view("/");
  view.query = std::string_view(all.data() + slot.query_off, slot.query_len);
}

void SessionCore::run_after(const Router::Middleware* route, const Request& req, Response& response) {
  try {
    if (route && route->after) route->after(req, response);
    const auto& global = router_.middleware();
    for (auto it = global.rbegin(); it != global.rend(); ++it)
      if (it->after) it->after(req, response);
  } catch (...) {
    log_handler_exception(req);
    response = router_.error_response(500, req);
  }
}

void SessionCore::fail(int status) {
  stopped_ = true;
  in_message_ = false;
  const Info info{http10(), false, false, {}};
  Response response = router_.error_response(status, head_ready_ ? request_ : blank_request());
  response.close = true;
  head_ready_ = false;
  complete(next_seq_++, info, std::move(response));
}

void SessionCore::end_of_input() {
  if (closed_) return;
  eof_ = true;
  if (paused()) return;  // the requests kept are answered first, on resume()
  const auto keep = shared_from_this();
  stopped_ = true;
  in_message_ = false;
  flush_point();
}

// ---- output -----------------------------------------------------------------

void SessionCore::complete([[maybe_unused]] std::uint64_t seq, const Info& info, Response&& response) {
  assert(seq == slots_.next_seq());  // answers are taken in request order
  const bool closes = !info.keep_alive || response.close;
  if (closes) stopped_ = true;
  if (slots_.empty()) {
    slots_.skip();  // seq is the oldest owed: it leaves at once
    serialize(scratch_, info, response);
    emit(scratch_, closes, false);
    trim(scratch_);
  } else {
    Slot& slot = slots_.push().first;
    slot.info = info;
    serialize(slot.bytes, info, response);
    slot.ready = true;
    slot.closes = closes;
  }
  after_output();
}

void SessionCore::answer(std::uint64_t seq, Response&& response) {
  if (closed_ || close_pending_) return;
  Slot* slot = slots_.find(seq);
  if (!slot || slot->ready) return;
  if (slot->after) {
    Request view;
    view_of(*slot, view);
    slot->after = false;  // once, even if a hook answers again through another path
    run_after(slot->middleware, view, response);
    slot = slots_.find(seq);  // a hook may have done anything
    if (!slot || slot->ready || closed_ || close_pending_) return;
  }
  if (stopping_input_ && seq + 1 == slots_.next_seq()) response.close = true;  // the last one owed
  const bool closes = !slot->info.keep_alive || response.close;
  if (response.close) stopped_ = true;
  if (seq == slots_.front_seq()) {
    serialize(scratch_, slot->info, response);
    const bool cont = slot->send_continue;
    slots_.pop();
    emit(scratch_, closes, cont);
    trim(scratch_);
    drain();
    after_output();
    settle();
  } else {
    serialize(slot->bytes, slot->info, response);
    slot->ready = true;
    slot->closes = closes;
  }
}

void SessionCore::answer_error(std::uint64_t seq, int status) {
  Slot* slot = slots_.find(seq);
  if (!slot || slot->ready || closed_ || close_pending_) return;
  Request view;
  view_of(*slot, view);
  answer(seq, router_.error_response(status, view));
}

// The response deadline, on the connection's tick: a deferred answer owed
// for `limit` since the first tick that saw it is answered 504 (its
// Responder's answer, when it comes, is dropped). No clock is read per
// request, and nothing is timed while nothing is owed.
std::size_t SessionCore::expire(std::chrono::steady_clock::time_point now, std::chrono::milliseconds limit) {
  return answer_unready(504, [&](Slot& slot) {
    if (!slot.seen) {
      slot.seen = true;
      slot.seen_at = now;
      return false;
    }
    return now - slot.seen_at >= limit;
  });
}

void SessionCore::stop_input() {
  stopping_input_ = true;
  end_of_input();
}

std::size_t SessionCore::answer_owed(int status) {
  return answer_unready(status, [](Slot&) { return true; });
}

// Answers `status` for each request still owed that `pick` picks, in order;
// returns how many.
template <class Pick>
std::size_t SessionCore::answer_unready(int status, Pick pick) {
  if (closed_ || slots_.empty()) return 0;
  const auto keep = shared_from_this();
  std::size_t answered = 0;
  const std::uint64_t end = slots_.next_seq();
  for (std::uint64_t seq = slots_.front_seq(); seq < end && !closed_ && !close_pending_; ++seq) {
    Slot* slot = slots_.find(seq);
    if (!slot || slot->ready || !pick(*slot)) continue;
    answer_error(seq, status);
    ++answered;
  }
  return answered;
}

void SessionCore::drain() {
  while (!slots_.empty() && !close_pending_) {
    Slot& front = slots_.front();
    if (!front.ready) break;
    if (front.stream) {
      if (!advance_stream()) break;
      continue;
    }
    emit(front.bytes, front.closes, front.send_continue);
    trim(front.bytes);
    slots_.pop();
  }
}

void SessionCore::after_output() {
  // Nothing goes out after a closing response: the slots after it go (their
  // streams with them).
  while (close_pending_ && !slots_.empty()) {
    Slot& s = slots_.front();
    if (s.stream && !s.stream->ended) {
      s.stream->ended = true;
      --open_streams_;
    }
    s.stream.reset();
    slots_.pop();
  }
}

void SessionCore::emit(std::string_view bytes, bool closes, bool send_continue) {
  if (closed_ || close_pending_ || !out_) return;
  out_->write(bytes);
  dirty_ = true;
  if (closes) {
    close_pending_ = true;
    stopped_ = true;
  } else if (send_continue && out_) {
    out_->write(continue_line);
  }
}

void SessionCore::flush_point() {
  if (closed_ || !out_) return;
  if (eof_ && slots_.empty() && !paused()) close_pending_ = true;
  if (dirty_) {
    dirty_ = false;
    out_->flush();
  }
  if (close_pending_ && out_ && !closed_) {
    closed_ = true;
    out_->close_after_flush();
  }
}

void SessionCore::serialize(std::string& out, const Info& info, const Response& r) {
  if (std::string problem = response_problem(r); !problem.empty()) {
    RINGSHARD_LOG_ERROR("http: a response was refused ({}); a 500 went out instead", problem);
    return serialize(out, info, router_.error_response(500, blank_request()));
  }
  const int status = r.status;
  out_->on_response(status);
  if (info.dispatched != Clock::time_point{}) {
    if (info.deferred) {
      out_->on_handled(Clock::now() - info.dispatched, 1);
    } else {
      ++batch_answers_;  // timed at the batch's end (end_batch)
    }
  }
  const bool bodiless_status = status == 204 || status == 304;
  serialize_head(out, info, r, r.body.size(), false, !info.keep_alive || r.close);
  if (!info.head && !bodiless_status) out += r.body;
}

// The status line and headers; the body framing is Content-Length `length`,
// chunked, or neither (the body ends with the connection). The response
// passed response_problem() (serialize, or answer_stream for a stream).
void SessionCore::serialize_head(std::string& out, const Info& info, const Response& r,
                                 std::optional<std::size_t> length, bool chunked, bool closes) {
  const int status = r.status;
  const bool bodiless_status = status == 204 || status == 304;
  // Content-Type, Server and Date go out once: a value in `headers` (the
  // last one) replaces the default.
  std::string_view content_type = r.content_type;
  std::string_view server = "ringshard";
  std::string_view date{};
  bool own_date = false;
  for (const auto& [name, value] : r.headers) {
    if (iequals(name, "content-type")) {
      content_type = value;
    } else if (iequals(name, "server")) {
      server = value;
    } else if (iequals(name, "date")) {
      date = value;
      own_date = true;
    }
  }
  out.clear();
  out += info.http10 ? "HTTP/1.0 " : "HTTP/1.1 ";
  append_uint(out, static_cast<std::size_t>(status));
  out += ' ';
  out += reason_phrase(status);
  out += "\r\n";
  if (!server.empty()) {
    out += "Server: ";
    out += server;
    out += "\r\n";
  }
  out += "Date: ";
  out += own_date ? date : http_date();
  out += "\r\n";
  if (!bodiless_status && length) {
    out += "Content-Length: ";
    append_uint(out, *length);
    out += "\r\n";
  } else if (!bodiless_status && chunked) {
    out += "Transfer-Encoding: chunked\r\n";
  }
  if (!content_type.empty()) {
    out += "Content-Type: ";
    out += content_type;
    out += "\r\n";
  }
  for (const auto& [name, value] : r.headers) {
    if (iequals(name, "content-length") || iequals(name, "transfer-encoding") || iequals(name, "connection") ||
        iequals(name, "content-type") || iequals(name, "server") || iequals(name, "date"))
      continue;
    out += name;
    out += ": ";
    out += value;
    out += "\r\n";
  }
  if (closes) out += "Connection: close\r\n";
  else if (info.http10) out += "Connection: keep-alive\r\n";
  out += "\r\n";
}

// ---- streamed responses ------------------------------------------------------

// The last step of every call from outside: the stream at the front writes,
// the requests kept while paused are dispatched when the output allows (a
// handler may start a stream: it writes in turn), then one flush, and the
// connection is told whether to read.
void SessionCore::settle() {
  if (in_feed_ || pumping_) return;
  if (closed_) {
    end_batch();
    return;
  }
  const auto keep = shared_from_this();
  pump();
  while (paused_ && !closed_) {
    const std::uint64_t before = next_seq_;
    in_feed_ = true;
    continue_paused();
    in_feed_ = false;
    if (next_seq_ == before) break;  // still blocked: nothing was dispatched
    pump();
  }
  flush_point();
  if (!closed_ && out_) {
    const bool hold = paused();
    if (hold != input_paused_) {
      input_paused_ = hold;
      out_->pause_input(hold);
    }
  }
  end_batch();
}

Clock::time_point SessionCore::batch_time() {
  if (batch_start_ == Clock::time_point{}) batch_start_ = Clock::now();
  return batch_start_;
}

// The answers handlers returned in this batch share its time: one clock
// read here and one at its first dispatch, however many requests it held.
void SessionCore::end_batch() noexcept {
  if (batch_answers_ != 0 && out_) {
    const Clock::duration took = Clock::now() - batch_start_;
    out_->on_handled(took / static_cast<Clock::rep>(batch_answers_), batch_answers_);
  }
  batch_answers_ = 0;
  batch_start_ = {};
}

// Runs the producer of the stream at the front while it makes progress and
// the output takes more.
void SessionCore::pump() {
  if (pumping_ || closed_ || !out_) return;
  pumping_ = true;
  while (!slots_.empty() && !close_pending_ && !closed_ && out_) {
    Slot& front = slots_.front();
    if (!front.stream || !front.stream->active || front.stream->ended) break;
    const std::shared_ptr<StreamState> st = front.stream;  // alive through the call
    if (!st->producer || out_->congested()) break;
    const std::uint64_t before = st->progress;
    try {
      BodyStream handle(weak_from_this(), st);
      st->producer(handle);
    } catch (...) {
      stream_end(*st, true);  // given up: the connection closes after what was written
    }
    if (st->ended) continue;  // the next response (a stream too, maybe) is at the front now
    if (st->progress == before) {
      if (st->handles == 0) stream_end(*st, true);  // nobody can write to it any more
      break;
    }
  }
  pumping_ = false;
}

// The front slot is a stream: its head (and what was written before its
// turn) goes out; then it holds the output until it ends. True when it has
// ended and left the front.
bool SessionCore::advance_stream() {
  Slot& front = slots_.front();
  const std::shared_ptr<StreamState> st = front.stream;
  if (!st->active) {
    st->active = true;
    if (!st->pending.empty() && out_ && !closed_) {
      out_->write(st->pending);
      dirty_ = true;
    }
    std::string().swap(st->pending);
  }
  if (!st->ended) return false;
  const bool closes = st->closes || st->broken;
  front.stream.reset();
  slots_.pop();
  if (closes) {
    close_pending_ = true;
    stopped_ = true;
  }
  return true;
}

BodyStream SessionCore::answer_stream(std::uint64_t seq, Response&& head, std::optional<std::size_t> length,
                                      StreamProducer producer) {
  if (closed_ || close_pending_) return {};
  Slot* slot = slots_.find(seq);
  if (!slot || slot->ready) return {};
  if (slot->after) {  // the hooks see the head
    Request view;
    view_of(*slot, view);
    slot->after = false;
    run_after(slot->middleware, view, head);
    slot = slots_.find(seq);
    if (!slot || slot->ready || closed_ || close_pending_) return {};
  }
  if (std::string problem = response_problem(head); !problem.empty()) {
    RINGSHARD_LOG_ERROR("http: a streamed response was refused ({}); a 500 went out instead", problem);
    answer_error(seq, 500);
    return {};
  }
  auto st = std::make_shared<StreamState>();
  const Info& info = slot->info;
  const int status = head.status;
  const bool bodiless_status = (status >= 100 && status < 200) || status == 204 || status == 304;
  st->no_body = info.head || bodiless_status;
  st->length = bodiless_status ? std::optional<std::size_t>() : length;
  st->chunked = !bodiless_status && !length && !info.http10;
  // HTTP/1.0 without a length: the body ends with the connection.
  st->closes = !info.keep_alive || head.close || (!bodiless_status && !length && info.http10);
  if (st->closes) stopped_ = true;
  serialize_head(st->pending, info, head, st->length, st->chunked, st->closes);
  st->producer = std::move(producer);
  if (st->no_body || (st->length && *st->length == 0)) {
    st->ended = true;
  } else {
    ++open_streams_;
  }
  slot->stream = st;
  slot->ready = true;
  slot->closes = st->closes;
  BodyStream handle(weak_from_this(), st);
  if (seq == slots_.front_seq()) {
    drain();
    after_output();
  }
  settle();
  return handle;
}

bool SessionCore::stream_write(StreamState& st, std::string_view bytes, SharedBuffer* shared) {
  if (st.ended || st.no_body || closed_ || close_pending_ || !out_) return false;
  if (bytes.empty()) return true;
  if (st.length && bytes.size() > *st.length - st.written) return false;  // past the declared length
  st.written += bytes.size();
  ++st.progress;
  char size_line[24] = {};
  std::size_t size_len = 0;
  if (st.chunked) {
    const auto res = std::to_chars(size_line, size_line + 20, bytes.size(), 16);
    size_len = static_cast<std::size_t>(res.ptr - size_line);
    size_line[size_len++] = '\r';
    size_line[size_len++] = '\n';
  }
  if (st.active) {
    if (size_len != 0) out_->write(std::string_view(size_line, size_len));
    if (shared != nullptr) {
      out_->write_shared(std::move(*shared));
    } else {
      out_->write(bytes);
    }
    if (size_len != 0) out_->write("\r\n");
    dirty_ = true;
  } else {  // kept until its turn
    st.pending.append(size_line, size_len);
    st.pending.append(bytes);
    if (size_len != 0) st.pending += "\r\n";
  }
  if (st.length && st.written == *st.length) {
    stream_end(st, false);  // complete
  } else {
    settle();
  }
  return true;
}

void SessionCore::stream_end(StreamState& st, bool broken) {
  if (st.ended) return;
  st.ended = true;
  ++st.progress;
  --open_streams_;
  if (broken || (st.length && st.written != *st.length)) st.broken = true;
  if (st.chunked && !st.broken) {
    if (st.active) {
      if (out_ && !closed_ && !close_pending_) {
        out_->write("0\r\n\r\n");
        dirty_ = true;
      }
    } else {
      st.pending += "0\r\n\r\n";
    }
  }
  if (st.active && !slots_.empty() && slots_.front().stream.get() == &st) {
    // It held the output: what follows it goes out now.
    drain();
    after_output();
  }
  settle();
}

void SessionCore::stream_released(StreamState& st) {
  if (st.ended) return;
  // The last handle is gone and no producer is left to write: it cannot end.
  if (!st.producer) return stream_end(st, true);
  // Its producer is the only writer left: it runs now if the stream can take
  // more (no drain is coming to call it), and a call that makes no progress
  // gives the stream up.
  settle();
}

bool SessionCore::stream_ready(const StreamState& st) const noexcept {
  return st.active && !st.ended && !st.no_body && !closed_ && !close_pending_ && out_ && !out_->congested();
}

}  // namespace detail

// ---- Session ----------------------------------------------------------------

Session::Session(const Router& router, Limits limits, Output& output)
    : core_(std::make_shared<detail::SessionCore>(router, limits, output)) {}

Session::~Session() { core_->detach(); }

void Session::feed(std::string_view bytes) { core_->feed(bytes); }
void Session::resume() { core_->resume(); }
void Session::end_of_input() { core_->end_of_input(); }
bool Session::mid_request() const noexcept { return core_->mid_request(); }
bool Session::reading_head() const noexcept { return core_->reading_head(); }
bool Session::paused() const noexcept { return core_->paused(); }
std::uint64_t Session::requests() const noexcept { return core_->requests(); }
std::size_t Session::pending() const noexcept { return core_->pending(); }
std::size_t Session::expire(std::chrono::steady_clock::time_point now, std::chrono::milliseconds limit) {
  return core_->expire(now, limit);
}
bool Session::closing() const noexcept { return core_->closing(); }
void Session::stop_input() { core_->stop_input(); }
std::size_t Session::answer_owed(int status) { return core_->answer_owed(status); }

// ---- Responder --------------------------------------------------------------

Responder::Responder(Responder&& other) noexcept
    : core_(std::move(other.core_)), seq_(other.seq_), owed_(std::exchange(other.owed_, false)) {}

Responder& Responder::operator=(Responder&& other) noexcept {
  if (this != &other) {
    answer_internal_error();
    core_ = std::move(other.core_);
    seq_ = other.seq_;
    owed_ = std::exchange(other.owed_, false);
  }
  return *this;
}

Responder::~Responder() { answer_internal_error(); }

void Responder::operator()(Response response) {
  if (!owed_) return;
  owed_ = false;
  const auto core = core_.lock();
  core_.reset();
  if (core) core->answer(seq_, std::move(response));
}

void Responder::answer_internal_error() noexcept {
  if (!owed_) return;
  owed_ = false;
  const auto core = core_.lock();
  core_.reset();
  try {
    if (core) core->answer_error(seq_, 500);
  } catch (...) {
    // out of memory: the connection's answer is lost with it
  }
}

BodyStream Responder::stream(Response head, std::optional<std::size_t> length, StreamProducer on_ready) {
  if (!owed_) return {};
  owed_ = false;
  const auto core = core_.lock();
  core_.reset();
  if (!core) return {};
  return core->answer_stream(seq_, std::move(head), length, std::move(on_ready));
}

bool Responder::session_alive() const noexcept {
  if (!owed_) return false;
  const auto core = core_.lock();
  return core && core->alive() && core->owes(seq_);
}

// ---- BodyStream ---------------------------------------------------------------

BodyStream::BodyStream(std::weak_ptr<detail::SessionCore> core, const std::shared_ptr<detail::StreamState>& state) noexcept
    : core_(std::move(core)), state_(state) {
  ++state->handles;
}

BodyStream::BodyStream(const BodyStream& other) noexcept : core_(other.core_), state_(other.state_) {
  if (const auto st = state_.lock()) ++st->handles;
}

BodyStream& BodyStream::operator=(const BodyStream& other) noexcept {
  if (this != &other) {
    BodyStream copy(other);
    *this = std::move(copy);
  }
  return *this;
}

BodyStream::BodyStream(BodyStream&& other) noexcept
    : core_(std::move(other.core_)), state_(std::move(other.state_)) {}

BodyStream& BodyStream::operator=(BodyStream&& other) noexcept {
  if (this != &other) {
    release();
    core_ = std::move(other.core_);
    state_ = std::move(other.state_);
  }
  return *this;
}

BodyStream::~BodyStream() { release(); }

void BodyStream::release() noexcept {
  const auto st = state_.lock();
  const auto core = core_.lock();
  state_.reset();
  core_.reset();
  if (!st || --st->handles > 0 || !core) return;
  try {
    core->stream_released(*st);
  } catch (...) {
    // writing the rest failed (out of memory): the connection goes with it
  }
}

bool BodyStream::write(std::string_view bytes) {
  const auto st = state_.lock();
  const auto core = core_.lock();
  return st && core && core->stream_write(*st, bytes, nullptr);
}

bool BodyStream::write(SharedBuffer bytes) {
  const auto st = state_.lock();
  const auto core = core_.lock();
  const std::string_view view(reinterpret_cast<const char*>(bytes.bytes().data()), bytes.size());
  return st && core && core->stream_write(*st, view, &bytes);
}

void BodyStream::end() {
  const auto st = state_.lock();
  const auto core = core_.lock();
  if (st && core) core->stream_end(*st, false);
}

bool BodyStream::ready() const noexcept {
  const auto st = state_.lock();
  const auto core = core_.lock();
  return st && core && core->stream_ready(*st);
}

bool BodyStream::alive() const noexcept {
  const auto st = state_.lock();
  const auto core = core_.lock();
  return st && core && core->alive() && !st->ended && !st->no_body;
}

std::size_t BodyStream::written() const noexcept {
  const auto st = state_.lock();
  return st ? st->written : 0;
}

}  // namespace ringshard::net::http
