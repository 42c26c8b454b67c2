// Helpers for the HTTP session tests: an Output that records what the session
// does with it, and a parser for the responses it wrote.
#pragma once

#include <doctest/doctest.h>

#include <cstddef>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ringshard/net/http/http.hpp"

namespace ringshard::test::http {

using namespace ringshard::net::http;

/// Records writes, flushes, input pauses and the close request;
/// congested() reports `congestion`, which a test sets, or (with a `window`)
/// more than `window` bytes written past `taken` (what the test let drain).
struct FakeOutput final : Output {
  std::string bytes;                  // everything written
  std::vector<std::string> writes;    // one entry per write()
  std::vector<std::size_t> flushes;   // bytes.size() at each flush()
  std::vector<bool> input_pauses;     // each pause_input() call
  std::vector<int> statuses;          // each on_response()
  std::vector<std::pair<Clock::duration, std::size_t>> handled;  // each on_handled()
  int closes = 0;
  int shared_writes = 0;
  bool wrote_after_close = false;
  bool congestion = false;
  std::size_t window = 0;
  std::size_t taken = 0;

  void write(std::string_view b) override {
    if (closes) wrote_after_close = true;
    bytes.append(b);
    writes.emplace_back(b);
  }
  void write_shared(ringshard::net::SharedBuffer b) override {
    ++shared_writes;
    write(std::string_view(reinterpret_cast<const char*>(b.bytes().data()), b.size()));
  }
  void flush() override { flushes.push_back(bytes.size()); }
  void close_after_flush() override { ++closes; }
  void pause_input(bool paused) override { input_pauses.push_back(paused); }
  void on_response(int status) override { statuses.push_back(status); }
  void on_handled(Clock::duration each, std::size_t count) override { handled.emplace_back(each, count); }
  [[nodiscard]] bool congested() const override {
    return congestion || (window != 0 && bytes.size() - taken > window);
  }
  /// The connection sent everything written so far.
  void drain_all() { taken = bytes.size(); }
  /// Everything written has been flushed.
  [[nodiscard]] bool all_flushed() const { return !flushes.empty() && flushes.back() == bytes.size(); }
};

struct ParsedResponse {
  std::string version;  // "HTTP/1.1"
  int status = 0;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  [[nodiscard]] std::optional<std::string> header(std::string_view name) const {
    for (const auto& [n, v] : headers)
      if (iequals(n, name)) return v;
    return std::nullopt;
  }
  [[nodiscard]] int count(std::string_view name) const {
    int c = 0;
    for (const auto& [n, v] : headers) c += iequals(n, name) ? 1 : 0;
    return c;
  }
};

/// Splits a byte stream into responses. Bodies are framed by Content-Length
/// (absent: no body). `head_at` lists the indices of responses to HEAD
/// requests (no body whatever Content-Length says). Fails the test on a
/// malformed stream.
inline std::vector<ParsedResponse> parse_responses(std::string_view s, std::vector<std::size_t> head_at = {}) {
  std::vector<ParsedResponse> out;
  while (!s.empty()) {
    ParsedResponse r;
    const auto head_end = s.find("\r\n\r\n");
    REQUIRE_MESSAGE(head_end != std::string_view::npos, "unterminated response head: " << std::string(s));
    std::string_view head = s.substr(0, head_end + 2);
    s.remove_prefix(head_end + 4);
    auto line_end = head.find("\r\n");
    std::string_view status_line = head.substr(0, line_end);
    head.remove_prefix(line_end + 2);
    const auto sp1 = status_line.find(' ');
    const auto sp2 = status_line.find(' ', sp1 + 1);
    REQUIRE(sp1 != std::string_view::npos);
    REQUIRE(sp2 != std::string_view::npos);
    r.version = std::string(status_line.substr(0, sp1));
    r.status = std::atoi(std::string(status_line.substr(sp1 + 1, sp2 - sp1 - 1)).c_str());
    r.reason = std::string(status_line.substr(sp2 + 1));
    while (!head.empty()) {
      line_end = head.find("\r\n");
      std::string_view line = head.substr(0, line_end);
      head.remove_prefix(line_end + 2);
      const auto colon = line.find(": ");
      REQUIRE_MESSAGE(colon != std::string_view::npos, "bad header line: " << std::string(line));
      r.headers.emplace_back(std::string(line.substr(0, colon)), std::string(line.substr(colon + 2)));
    }
    std::size_t length = 0;
    if (auto cl = r.header("Content-Length")) length = static_cast<std::size_t>(std::stoull(*cl));
    bool is_head = false;
    for (std::size_t i : head_at) is_head |= i == out.size();
    if (!is_head && r.status >= 200) {
      REQUIRE_MESSAGE(s.size() >= length, "short body");
      r.body = std::string(s.substr(0, length));
      s.remove_prefix(length);
    }
    out.push_back(std::move(r));
  }
  return out;
}

/// `n` GET requests for /plaintext in one string.
inline std::string gets(int n, std::string_view path = "/plaintext") {
  std::string s;
  for (int i = 0; i < n; ++i) {
    s += "GET ";
    s += path;
    s += " HTTP/1.1\r\nHost: localhost\r\n\r\n";
  }
  return s;
}

}  // namespace ringshard::test::http
