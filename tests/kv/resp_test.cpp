// The RESP request parser and reply writers of ringshard-kv (samples/kv/resp.hpp):
// well-formed requests whole, split at every byte and pipelined; inline
// requests with quotes; every malformed frame; and that nothing is reserved
// from a declared length or count.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "kv/resp.hpp"

// counting_alloc.hpp counts the bytes allocated on this thread while
// `counting` is set: the parser must not size anything from an untrusted
// length.
#include "counting_alloc.hpp"

using kv::resp::RequestParser;
using Status = RequestParser::Status;

namespace {

std::vector<std::string> args_of(const RequestParser& p) {
  std::vector<std::string> out;
  for (const auto a : p.args()) out.emplace_back(a);
  return out;
}

// Parses every request in `bytes`; returns them, or stops at the first error
// (then `error` is set).
std::vector<std::vector<std::string>> parse_all(std::string_view bytes, std::string* error = nullptr,
                                                const kv::resp::Limits& limits = {}) {
  RequestParser p(limits);
  std::vector<std::vector<std::string>> out;
  std::size_t used = 0;
  while (used < bytes.size()) {
    const auto r = p.parse(bytes.substr(used));
    if (r.status == Status::incomplete) break;
    if (r.status == Status::error) {
      if (error) *error = std::string(p.error());
      break;
    }
    used += r.used;
    out.push_back(args_of(p));
  }
  return out;
}

std::string error_of(std::string_view bytes, const kv::resp::Limits& limits = {}) {
  std::string e;
  parse_all(bytes, &e, limits);
  return e;
}

}  // namespace

TEST_CASE("resp: a multi-bulk request whole, with binary and empty arguments") {
  const std::string req = std::string("*4\r\n$3\r\nSET\r\n$3\r\nk\0y\r\n$0\r\n\r\n$5\r\na\r\nbc\r\n", 39);
  RequestParser p;
  const auto r = p.parse(req);
  REQUIRE(r.status == Status::complete);
  CHECK(r.used == req.size());
  CHECK(args_of(p) == std::vector<std::string>{"SET", std::string("k\0y", 3), "", "a\r\nbc"});
}

TEST_CASE("resp: a request fed one byte more at a time completes exactly at its last byte") {
  const std::string req = "*3\r\n$3\r\nSET\r\n$10\r\nkey:000001\r\n$11\r\nhello world\r\n";
  RequestParser p;
  for (std::size_t n = 0; n < req.size(); ++n) {
    INFO("prefix of " << n << " bytes");
    CHECK(p.parse(std::string_view(req).substr(0, n)).status == Status::incomplete);
  }
  // The parser resumes from its offsets: a copy of the bytes elsewhere works too.
  const std::string copy = req + "*1\r\n";
  const auto r = p.parse(copy);
  REQUIRE(r.status == Status::complete);
  CHECK(r.used == req.size());
  CHECK(args_of(p) == std::vector<std::string>{"SET", "key:000001", "hello world"});
}

TEST_CASE("resp: pipelined requests, multi-bulk and inline mixed, parse one after the other") {
  const std::string bytes =
      "*1\r\n$4\r\nPING\r\nGET a\r\n*2\r\n$3\r\nGET\r\n$1\r\nb\r\n\r\n*0\r\nECHO \"x y\"\n";
  const auto all = parse_all(bytes);
  REQUIRE(all.size() == 6);
  CHECK(all[0] == std::vector<std::string>{"PING"});
  CHECK(all[1] == std::vector<std::string>{"GET", "a"});
  CHECK(all[2] == std::vector<std::string>{"GET", "b"});
  CHECK(all[3].empty());  // a blank line: nothing to run
  CHECK(all[4].empty());  // *0
  CHECK(all[5] == std::vector<std::string>{"ECHO", "x y"});
}

TEST_CASE("resp: inline requests split words and unquote as redis-cli does") {
  CHECK(parse_all("  SET   k  v  \r\n")[0] == std::vector<std::string>{"SET", "k", "v"});
  CHECK(parse_all("SET k \"a\\tb\\n\\x41\\\"\"\r\n")[0] == std::vector<std::string>{"SET", "k", "a\tb\nA\""});
  CHECK(parse_all("SET k 'it\\'s'\n")[0] == std::vector<std::string>{"SET", "k", "it's"});
  CHECK(parse_all("SET \"\" ''\n")[0] == std::vector<std::string>{"SET", "", ""});
  CHECK(error_of("SET k \"abc\r\n") == "unbalanced quotes in request");
  CHECK(error_of("SET k \"abc\"def\r\n") == "unbalanced quotes in request");
  CHECK(error_of("SET k 'abc\r\n") == "unbalanced quotes in request");
  // An inline request waits for its newline, up to the limit.
  RequestParser p;
  CHECK(p.parse("GET k").status == Status::incomplete);
  CHECK(p.parse(std::string(64 * 1024 + 1, 'x')).status == Status::error);
  CHECK(std::string(p.error()) == "too big inline request");
}

TEST_CASE("resp: malformed multi-bulk frames are errors, with Redis' wording") {
  CHECK(error_of("*abc\r\n") == "invalid multibulk length");
  CHECK(error_of("*1x\r\n") == "invalid multibulk length");
  CHECK(error_of("*+1\r\n") == "invalid multibulk length");
  CHECK(error_of("*2\r\n+PING\r\n") == "expected '$', got '+'");
  CHECK(error_of("*1\r\n$-1\r\n") == "invalid bulk length");
  CHECK(error_of("*1\r\n$x\r\n") == "invalid bulk length");
  CHECK(error_of("*1\r\n$\r\n") == "invalid bulk length");
  CHECK(error_of("*1\r\n$3\r\nabcXY") == "expected CRLF after a bulk string");
  CHECK(error_of("*1\r\n$3\r\nabc\rX") == "expected CRLF after a bulk string");
  CHECK(error_of("*1\rX") == "expected LF after CR");
  CHECK(error_of("*1\r\n$3\rX") == "expected LF after CR");
  CHECK(error_of("*" + std::string(70000, '1')) == "too big mbulk count string");
  CHECK(error_of("*1\r\n$" + std::string(70000, '1')) == "too big bulk count string");
  CHECK(error_of("*99999999999999999999999\r\n") == "invalid multibulk length");
}

TEST_CASE("resp: the limits on bulk length and argument count") {
  kv::resp::Limits limits;
  limits.max_bulk = 10;
  limits.max_array = 3;
  CHECK(error_of("*1\r\n$11\r\n", limits) == "invalid bulk length");
  CHECK(parse_all("*1\r\n$10\r\n0123456789\r\n", nullptr, limits).size() == 1);
  CHECK(error_of("*4\r\n", limits) == "invalid multibulk length");
  CHECK(parse_all("*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n", nullptr, limits).size() == 1);
  // Redis' defaults: 512 MiB per argument.
  CHECK(error_of("*1\r\n$536870913\r\n").empty() == false);
  CHECK(error_of("*1\r\n$536870912\r\nabc").empty());  // allowed, incomplete
}

TEST_CASE("resp: nothing is reserved from a declared bulk length or argument count") {
  RequestParser p;
  counting = true;
  allocated_bytes = 0;
  // 512 MiB declared, 3 bytes sent; a million arguments declared, one sent.
  CHECK(p.parse("*1\r\n$536870912\r\nabc").status == Status::incomplete);
  RequestParser q;
  CHECK(q.parse("*1048576\r\n$3\r\nfoo\r\n").status == Status::incomplete);
  counting = false;
  CHECK(allocated_bytes < 4096);
}

TEST_CASE("resp: an incomplete request is resumed where it stopped, not scanned again") {
  // The elements already read are not read again: the next call goes on from
  // the offsets it kept (a parser that started over would now see `$4` and
  // fail). So a request arriving in many pieces costs work in proportion to
  // its bytes, not to its bytes times its pieces.
  RequestParser p;
  CHECK(p.parse("*2\r\n$3\r\nfoo\r\n$3\r\nba").status == Status::incomplete);
  const auto r = p.parse("*2\r\n$4\r\nfoo\r\n$3\r\nbar\r\n");
  REQUIRE(r.status == Status::complete);
  CHECK(args_of(p) == std::vector<std::string>{"foo", "bar"});
  // 100,000 arguments arriving in 4 KiB pieces.
  std::string req = "*100000\r\n";
  for (int i = 0; i < 100000; ++i) req += "$5\r\nabcde\r\n";
  RequestParser big;
  for (std::size_t n = 4096; n < req.size(); n += 4096) {
    REQUIRE(big.parse(std::string_view(req).substr(0, n)).status == Status::incomplete);
  }
  REQUIRE(big.parse(req).status == Status::complete);
  CHECK(big.args().size() == 100000);
}

TEST_CASE("resp: numbers are read as Redis reads them") {
  std::int64_t v = 0;
  CHECK((kv::resp::parse_int("0", v) && v == 0));
  CHECK((kv::resp::parse_int("-42", v) && v == -42));
  CHECK((kv::resp::parse_int("9223372036854775807", v) && v == INT64_MAX));
  CHECK((kv::resp::parse_int("-9223372036854775808", v) && v == INT64_MIN));
  CHECK_FALSE(kv::resp::parse_int("9223372036854775808", v));
  CHECK_FALSE(kv::resp::parse_int("-9223372036854775809", v));
  CHECK_FALSE(kv::resp::parse_int("", v));
  CHECK_FALSE(kv::resp::parse_int("-", v));
  CHECK_FALSE(kv::resp::parse_int("-0", v));
  CHECK_FALSE(kv::resp::parse_int("01", v));
  CHECK_FALSE(kv::resp::parse_int("+1", v));
  CHECK_FALSE(kv::resp::parse_int(" 1", v));
  CHECK_FALSE(kv::resp::parse_int("1 ", v));
  CHECK_FALSE(kv::resp::parse_int("1.5", v));
}

TEST_CASE("resp: replies are written in RESP2") {
  std::string out;
  kv::resp::simple(out, "OK");
  kv::resp::integer(out, -7);
  kv::resp::bulk(out, "ab");
  kv::resp::null_bulk(out);
  kv::resp::array(out, 2);
  kv::resp::error(out, "ERR bad\r\nthing");
  CHECK(out == "+OK\r\n:-7\r\n$2\r\nab\r\n$-1\r\n*2\r\n-ERR bad  thing\r\n");
  CHECK(kv::resp::bulk_value_size("$2\r\nab\r\n$-1\r\n") == 8);
  CHECK(kv::resp::bulk_value_size("$-1\r\n") == 5);
  CHECK(kv::resp::bulk_value_size("$5\r\nab") == 0);
  CHECK(kv::resp::bulk_value_size(":1\r\n") == 0);
}
