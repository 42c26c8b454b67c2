// ringshard-tally: a line protocol of counters, written as coroutines.
//
//   ringshard-tally [--host 127.0.0.1] [--port 0] [--shards N] [--policy round-robin|least-connections|reuse-port]
//                   [--idle-timeout SECONDS] [--max-counters N] [--metrics-port PORT]
//
// Every counter is owned by one shard (a hash of its name); a connection, on
// whatever shard the listener gave it, runs each command where the counter
// lives (submit_to) and comes back to answer. One command per line ('\n',
// an optional '\r' before it), one answer line per command, in order:
//
//   ADD <name> <n>     -> the counter's new value (n: a signed 64-bit integer)
//   GET <name>         -> its value (0 if never added to)
//   SUM <name>...      -> the sum of up to 64 counters, read at once from their
//                         shards (when_all)
//   QUIT               -> BYE, then the server closes the connection
//
// An error is one line `ERR <what>` and the connection goes on; an ADD that
// would make a shard hold more than --max-counters counters (default a
// million) is one (`ERR too many counters`). A line
// longer than 4 KiB gets `ERR line too long` and the connection is closed;
// so is a connection idle for --idle-timeout seconds (default 300). The first
// line on stdout is `listening on HOST:PORT`. SIGINT/SIGTERM stop it cleanly.
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ringshard/framework/submit_to.hpp"
#include "ringshard/framework/when_all.hpp"
#include "common/cli.hpp"
#include "ringshard/net/stream.hpp"

namespace {

using namespace ringshard;

constexpr std::size_t kMaxLine = 4096;
constexpr std::size_t kMaxSumNames = 64;
std::chrono::seconds g_idle_timeout{300};
std::size_t g_max_counters = 1'000'000;  // per shard: a client cannot grow memory without bound

// The counters a shard owns; used on that shard's thread only.
thread_local std::unordered_map<std::string, std::int64_t> tl_counters;

unsigned owner(std::string_view name) {
  return static_cast<unsigned>(std::hash<std::string_view>{}(name) % Shard::current()->runtime().shard_count());
}

std::string answer(std::int64_t v) { return std::to_string(v) + "\n"; }

std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> out;
  while (!line.empty()) {
    const std::size_t start = line.find_first_not_of(' ');
    if (start == std::string_view::npos) break;
    line.remove_prefix(start);
    const std::size_t end = std::min(line.find(' '), line.size());
    out.push_back(line.substr(0, end));
    line.remove_prefix(end);
  }
  return out;
}

// Run where the counter lives. (The name travels as an argument, not as a
// lambda capture: see "g++ 12" in submit_to.hpp.)
std::int64_t read_counter(const std::string& name) {
  auto it = tl_counters.find(name);
  return it == tl_counters.end() ? 0 : it->second;
}

std::int64_t add_to_counter(const std::string& name, std::int64_t n) {
  auto it = tl_counters.find(name);
  if (it == tl_counters.end()) {
    if (tl_counters.size() >= g_max_counters) throw std::length_error("too many counters");
    it = tl_counters.emplace(name, 0).first;
  }
  std::int64_t& c = it->second;
  std::int64_t sum = 0;
  if (__builtin_add_overflow(c, n, &sum)) throw std::overflow_error("overflow");  // left as it was
  c = sum;
  return c;
}

Task<std::int64_t> get(std::string name) {
  const unsigned shard = owner(name);
  co_return co_await submit_to(shard, read_counter, std::move(name));
}

Task<std::string> run(std::string_view line) {
  const std::vector<std::string_view> w = words(line);
  if (w.empty()) co_return "ERR empty line\n";
  if (w[0] == "ADD" && w.size() == 3) {
    std::int64_t n = 0;
    const auto [end, ec] = std::from_chars(w[2].data(), w[2].data() + w[2].size(), n);
    if (ec != std::errc() || end != w[2].data() + w[2].size()) co_return "ERR not an integer\n";
    std::string name(w[1]);
    const unsigned shard = owner(name);
    co_return answer(co_await submit_to(shard, add_to_counter, std::move(name), n));
  }
  if (w[0] == "GET" && w.size() == 2) {
    co_return answer(co_await get(std::string(w[1])));
  }
  if (w[0] == "SUM" && w.size() >= 2) {
    if (w.size() - 1 > kMaxSumNames) co_return "ERR at most 64 names\n";
    std::vector<Task<std::int64_t>> parts;
    for (std::size_t i = 1; i < w.size(); ++i) parts.push_back(get(std::string(w[i])));
    const std::vector<std::int64_t> values = co_await when_all(std::move(parts));
    std::int64_t total = 0;
    for (std::int64_t v : values) {
      if (__builtin_add_overflow(total, v, &total)) co_return "ERR overflow\n";
    }
    co_return answer(total);
  }
  co_return "ERR unknown command or wrong number of arguments\n";
}

Task<> client(net::Stream s) {
  for (;;) {
    s.set_read_deadline(Clock::now() + g_idle_timeout);
    net::ReadResult r = co_await s.read_until("\n", kMaxLine);
    if (!r) {
      if (r.error == net::StreamErrc::too_long) co_await s.write("ERR line too long\n");
      co_return;  // the end of the stream, idle too long, or an error: the stream closes
    }
    std::string_view line = r.text();
    line.remove_suffix(1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line == "QUIT") {
      co_await s.write("BYE\n");
      co_return;
    }
    std::string reply;
    try {
      reply = co_await run(line);
    } catch (const std::overflow_error&) {
      reply = "ERR overflow\n";
    } catch (const std::length_error&) {
      reply = "ERR too many counters\n";
    }
    if (co_await s.write(std::move(reply))) co_return;
  }
}

}  // namespace

int main(int argc, char** argv) {
  samples::CommandLine app("ringshard-tally: counters owned by shards, a line protocol written as coroutines",
                           "ringshard-tally");
  samples::ServerFlags flags;
  flags.add_to(app, {.buffers = false});
  unsigned idle_seconds = 300;
  app.option("--max-counters", g_max_counters, "counters a shard keeps at most (ADD of a new one beyond: an error)")
      .range(std::size_t{1}, std::size_t{1} << 32)
      .show_default();
  app.option("--idle-timeout", idle_seconds, "seconds a connection may stay idle before it is closed")
      .range(1u, 86'400u)
      .show_default();
  app.parse_or_exit(argc, argv);
  g_idle_timeout = std::chrono::seconds(idle_seconds);
  net::ListenOptions listen;
  listen.address = flags.address(app);
  listen.policy = flags.policy;
  try {
    RuntimeOptions options;
    flags.configure(options);
    Runtime runtime(options);
    runtime.start();
    auto listener = net::serve(runtime, listen, client);
    flags.run(app, runtime, listener);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ringshard-tally: %s\n", e.what());
    return 1;
  }
}
