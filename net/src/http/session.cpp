// The session: llhttp drives the parse; the callbacks only copy bytes into
// reused buffers and pause the parser at two points of each request (headers
// complete, message complete), where feed() takes over: limits and Expect at
// the first, dispatch to the router at the second. Handlers therefore never
// run inside llhttp, and the pause positions give the exact size of each
// header block as received.
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
#include "ringshard/net/http/session.hpp"

#include "ringshard/net/detail/ordered_slots.hpp"

#include <llhttp.h>

#include <cassert>
#include <charconv>
#include <cstring>
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
  };
  struct Slot {
    Info info;
    bool ready = false;
    bool closes = false;
    bool send_continue = false;  // write "100 Continue" right after this response
    std::string bytes;
    std::shared_ptr<StreamState> stream;  // a streamed response (ready once its head is known)
    void reset() noexcept {
      info = Info{};
      ready = closes = send_continue = false;
      bytes.clear();  // keeps its capacity for the next response
      stream.reset();
    }
  };
  struct Span {
    std::uint32_t name_off = 0, name_len = 0, value_off = 0, value_len = 0;
  };
  enum class Pause : std::uint8_t { none, headers, message };

  static const llhttp_settings_t& settings() noexcept {
    static const llhttp_settings_t s = make_settings();
    return s;
  }
  static SessionCore& self(llhttp_t* p) noexcept { return *static_cast<SessionCore*>(p->data); }
  static int on_message_begin(llhttp_t* p) noexcept;
  static int on_url(llhttp_t* p, const char* at, std::size_t len) noexcept;
  static int on_header_field(llhttp_t* p, const char* at, std::size_t len) noexcept;
  static int on_header_field_complete(llhttp_t* p) noexcept;
  static int on_header_value(llhttp_t* p, const char* at, std::size_t len) noexcept;
  static int on_header_value_complete(llhttp_t* p) noexcept;
  static int on_headers_complete(llhttp_t* p) noexcept;
  static int on_body(llhttp_t* p, const char* at, std::size_t len) noexcept;
  static int on_message_complete(llhttp_t* p) noexcept;

  static llhttp_settings_t make_settings() noexcept;
  int append_head(const char* at, std::size_t len, int status) noexcept;

  const char* parse(const char* p, const char* end);
  void continue_paused();
  void headers_done();
  void message_done();
  void fail(int status);
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
  bool in_body_ = false;  // headers complete (header callbacks now are trailers: ignored)
  bool in_field_ = false;
  bool in_value_ = false;
  int error_status_ = 0;        // set by a callback that fails the parse
  std::size_t header_raw_ = 0;  // bytes received since the last request ended, while in a header block
  std::size_t url_len_ = 0;
  std::string arena_;  // target, then header names and values
  std::vector<Span> spans_;
  Request request_;

  // Output state.
  std::uint64_t next_seq_ = 0;  // sequence number of the next request (or error answer)
  // Responses owed, in request order, from the oldest not yet written (the
  // same ring as net::ReplyQueue's).
  net::detail::OrderedSlots<Slot> slots_;
  std::string scratch_;
  std::uint64_t requests_ = 0;
  bool in_feed_ = false;
  bool dirty_ = false;          // written since the last flush
  bool stopped_ = false;        // no more input is parsed
  bool eof_ = false;            // the peer sends nothing more
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

Response error_response(int status) {
  std::string body(reason_phrase(status));
  body += '\n';
  return Response::text(status, std::move(body));
}

}  // namespace

llhttp_settings_t SessionCore::make_settings() noexcept {
  llhttp_settings_t s;
  llhttp_settings_init(&s);
  s.on_message_begin = &on_message_begin;
  s.on_url = &on_url;
  s.on_header_field = &on_header_field;
  s.on_header_field_complete = &on_header_field_complete;
  s.on_header_value = &on_header_value;
  s.on_header_value_complete = &on_header_value_complete;
  s.on_headers_complete = &on_headers_complete;
  s.on_body = &on_body;
  s.on_message_complete = &on_message_complete;
  return s;
}

SessionCore::SessionCore(const Router& router, Limits limits, Output& output)
    : router_(router), limits_(limits), out_(&output) {
  llhttp_init(&parser_, HTTP_REQUEST, &settings());
  parser_.data = this;
}

// ---- llhttp callbacks -------------------------------------------------------

int SessionCore::on_message_begin(llhttp_t* p) noexcept {
  SessionCore& s = self(p);
  s.in_message_ = true;
  s.in_body_ = false;
  s.in_field_ = false;
  s.in_value_ = false;
  s.url_len_ = 0;
  s.arena_.clear();
  s.spans_.clear();
  return 0;
}

int SessionCore::append_head(const char* at, std::size_t len, int status) noexcept {
  if (arena_.size() + len > limits_.max_header_bytes) {
    error_status_ = status;
    return HPE_USER;
  }
  arena_.append(at, len);  // within max_header_bytes: the capacity stays bounded
  return 0;
}

int SessionCore::on_url(llhttp_t* p, const char* at, std::size_t len) noexcept {
  SessionCore& s = self(p);
  s.url_len_ += len;
  return s.append_head(at, len, 414);
}

int SessionCore::on_header_field(llhttp_t* p, const char* at, std::size_t len) noexcept {
  SessionCore& s = self(p);
  if (s.in_body_) return 0;  // trailer fields are not kept
  if (!s.in_field_) {
    s.in_field_ = true;
    const auto off = static_cast<std::uint32_t>(s.arena_.size());
    s.spans_.push_back(Span{off, 0, off, 0});
  }
  s.spans_.back().name_len += static_cast<std::uint32_t>(len);
  return s.append_head(at, len, 431);
}

int SessionCore::on_header_field_complete(llhttp_t* p) noexcept {
  self(p).in_field_ = false;
  return 0;
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

int SessionCore::on_body(llhttp_t* p, const char* at, std::size_t len) noexcept {
  SessionCore& s = self(p);
  if (s.request_.body.size() + len > s.limits_.max_body_bytes) {
    s.error_status_ = 413;
    return HPE_USER;
  }
  s.request_.body.append(at, len);
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
    const llhttp_errno_t err = llhttp_execute(&parser_, p, static_cast<std::size_t>(end - p));
    if (err == HPE_OK) {
      if (!in_body_) {
        header_raw_ += static_cast<std::size_t>(end - p);
        if (header_raw_ > limits_.max_header_bytes) fail(431);
      }
      return end;
    }
    if (err == HPE_PAUSED) {
      const char* pos = llhttp_get_error_pos(&parser_);
      const Pause why = std::exchange(pause_, Pause::none);
      if (why == Pause::headers) {
        header_raw_ += static_cast<std::size_t>(pos - p);
        headers_done();
        run_once_more = true;
      } else if (why == Pause::message) {
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
    fail(error_status_ != 0 ? error_status_ : 400);
    return end;
  }
  return p;
}

void SessionCore::headers_done() {
  if (header_raw_ > limits_.max_header_bytes) return fail(431);
  const auto flags = parser_.flags;
  // Both lengths: a request smuggling attempt (RFC 9112 6.1). Checked here
  // whatever llhttp's leniency settings.
  if ((flags & F_CONTENT_LENGTH) && (flags & F_TRANSFER_ENCODING)) return fail(400);
  const bool chunked = (flags & F_CHUNKED) != 0;
  const bool has_length = (flags & F_CONTENT_LENGTH) != 0;
  if (has_length && parser_.content_length > limits_.max_body_bytes) return fail(413);

  Request& r = request_;
  r.method = to_method(parser_.method);
  r.method_name = llhttp_method_name(static_cast<llhttp_method_t>(parser_.method));
  r.http_major = parser_.http_major;
  r.http_minor = parser_.http_minor;
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
  r.path = target.substr(0, q);
  r.query = {};
  if (q < target.size() && target[q] == '?') {
    const std::string_view rest = target.substr(q + 1);
    r.query = rest.substr(0, rest.find('#'));
  }
  r.headers.clear();
  for (const Span& s : spans_)
    r.headers.push_back(Header{{base + s.name_off, s.name_len}, {base + s.value_off, s.value_len}});
  r.body.clear();
  if (has_length) r.body.reserve(static_cast<std::size_t>(parser_.content_length));

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

void SessionCore::message_done() {
  in_message_ = false;
  in_body_ = false;
  header_raw_ = 0;
  ++requests_;
  const std::uint64_t seq = next_seq_++;
  const Info info{request_.http_major == 1 && request_.http_minor == 0, request_.method == Method::head,
                  request_.keep_alive};
  if (!info.keep_alive) stopped_ = true;  // ignore whatever follows

  const Router::Match m = router_.find(request_.method, request_.path);
  if (m.handler) {
    Response response;
    try {
      response = (*m.handler)(request_);
    } catch (...) {
      response = error_response(500);
    }
    complete(seq, info, std::move(response));
  } else if (m.deferred) {
    Slot& slot = slots_.push().first;
    slot.info = info;
    try {
      (*m.deferred)(request_, Responder(weak_from_this(), seq));
    } catch (...) {
      // The Responder was destroyed with the handler's frame: 500 if unanswered.
    }
  } else {
    Response response = error_response(m.status);
    if (m.status == 405) response.header("Allow", m.allow);
    complete(seq, info, std::move(response));
  }
  trim(request_.body);
}

void SessionCore::fail(int status) {
  stopped_ = true;
  in_message_ = false;
  const Info info{http10(), false, false};
  complete(next_seq_++, info, error_response(status));
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
  const int status = r.status;
  const bool bodiless_status = (status >= 100 && status < 200) || status == 204 || status == 304;
  serialize_head(out, info, r, r.body.size(), false, !info.keep_alive || r.close);
  if (!info.head && !bodiless_status) out += r.body;
}

// The status line and headers; the body framing is Content-Length `length`,
// chunked, or neither (the body ends with the connection).
void SessionCore::serialize_head(std::string& out, const Info& info, const Response& r,
                                 std::optional<std::size_t> length, bool chunked, bool closes) {
  const int status = r.status;
  const bool bodiless_status = (status >= 100 && status < 200) || status == 204 || status == 304;
  out.clear();
  out += info.http10 ? "HTTP/1.0 " : "HTTP/1.1 ";
  append_uint(out, static_cast<std::size_t>(status < 0 ? 0 : status));
  out += ' ';
  out += reason_phrase(status);
  out += "\r\nServer: ringshard\r\nDate: ";
  out += http_date();
  out += "\r\n";
  if (!bodiless_status && length) {
    out += "Content-Length: ";
    append_uint(out, *length);
    out += "\r\n";
  } else if (!bodiless_status && chunked) {
    out += "Transfer-Encoding: chunked\r\n";
  }
  if (!r.content_type.empty()) {
    out += "Content-Type: ";
    out += r.content_type;
    out += "\r\n";
  }
  for (const auto& [name, value] : r.headers) {
    if (iequals(name, "content-length") || iequals(name, "transfer-encoding") || iequals(name, "connection"))
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
  if (in_feed_ || pumping_ || closed_) return;
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
  char size_line[24];
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
bool Session::closing() const noexcept { return core_->closing(); }

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
  try {
    (*this)(Response::text(500, "Internal Server Error\n"));
  } catch (...) {
    owed_ = false;
    core_.reset();
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
  return core && core->alive();
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
