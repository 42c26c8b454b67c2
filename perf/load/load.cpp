// ringshard-load: a closed-loop load generator for TCP echo servers, built on
// ringshard's own client side (a Runtime, its shards, and one net::connect<T>
// connection actor per connection).
//
//   ringshard-load --port P [--host 127.0.0.1] [--connections 50] [--size 128] [--depth 1]
//                  [--warmup 1] [--duration 5] [--shards 1] [--cpus LIST] [--connect-timeout 5] [--json]
//
// It opens the connections (at most 256 connecting at a time), waits until
// all are established, then every connection keeps `depth` messages of
// `size` bytes in flight: a message is done when its last echoed byte is back,
// and then the next one goes out. Completions are counted and timed only
// after the warm-up, for `duration` seconds. Every echoed byte is checked.
// The summary goes to stdout, or with --json one JSON object on stdout and
// the summary on stderr. Exit status: 0 when requests completed and nothing
// went wrong, 1 on any error (a connect failure, a wrong byte, an early close
// or reset) or when no request completed, 2 for bad arguments.
//
// Figures: requests/s (messages completed per second), MB/s (echoed payload
// bytes per second, one direction, 1 MB = 1e6 B) and the latency of a message
// from the moment it is due (its send) to the arrival of its last byte:
// p50, p99, p99.9 and max in microseconds, from one log-linear histogram per
// shard (histogram.hpp), merged at the end. --json prints the fields host,
// port, connections, connected, shards, size, depth, warmup_s, duration_s,
// requests, requests_per_s, mb_per_s, p50_us, p99_us, p999_us, max_us,
// mean_us, errors (all of them, connect errors included), connect_errors and
// interrupted (SIGINT/SIGTERM ended the run early; the figures cover the
// time measured until then).
//
// The steady state costs no allocation and no copy on the sending side:
// every connection sends through its connection actor's send queue, as
// caller-owned memory (ConnectionCore::send(span, SendDone)) pointing into one
// shared, read-only pattern buffer that outlives the runtime (see pump()), and
// the echo is compared with that same buffer. Reception is the connection
// actor's multishot recv into the shard's provided buffers. One clock read per
// batch of completed messages times them and stamps the messages sent in their
// place.
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "common/cli.hpp"
#include "histogram.hpp"
#include "ringshard/framework/log.hpp"
#include "ringshard/net/listener.hpp"

namespace ringshard::load {
namespace {

using Nanos = std::int64_t;

Nanos now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

// ---- options ----------------------------------------------------------------------

struct Options {
  std::string host = "127.0.0.1";
  unsigned port = 0;
  unsigned connections = 50;
  std::size_t size = 128;
  unsigned depth = 1;
  double warmup = 1.0;
  double duration = 5.0;
  unsigned shards = 1;
  std::vector<int> cpus;
  double connect_timeout = 5.0;
  bool json = false;
  net::Address target;
};

// Joins strings and numbers (instead of operator+ chains, which g++ 12 at -O3
// misreads as overlapping copies under -Wrestrict).
template <class... Parts>
std::string cat(const Parts&... parts) {
  std::string out;
  auto add = [&out](const auto& part) {
    if constexpr (std::is_arithmetic_v<std::decay_t<decltype(part)>>) {
      out += std::to_string(part);
    } else {
      out += std::string_view(part);
    }
  };
  (add(parts), ...);
  return out;
}

// A bad argument found after parsing: main() prints it on one line and exits
// with status 2 (after the runtime, if one was started, has stopped).
struct BadArgument : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void usage_error(const std::string& error) { throw BadArgument(error); }

template <class Int>
Int parse_int(std::string_view name, std::string_view text, Int min, Int max) {
  Int value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || value < min || value > max) {
    usage_error(cat("--", name, ": wants an integer from ", min, " to ", max, ", not '", text, "'"));
  }
  return value;
}

std::vector<int> parse_cpus(std::string_view text) {
  std::vector<int> cpus;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    const std::string_view item = text.substr(start, comma - start);
    const std::size_t dash = item.find('-');
    if (dash == std::string_view::npos) {
      cpus.push_back(parse_int<int>("cpus", item, 0, CPU_SETSIZE - 1));
    } else {
      const int lo = parse_int<int>("cpus", item.substr(0, dash), 0, CPU_SETSIZE - 1);
      const int hi = parse_int<int>("cpus", item.substr(dash + 1), lo, CPU_SETSIZE - 1);
      for (int c = lo; c <= hi; ++c) cpus.push_back(c);
    }
    start = comma + 1;
  }
  return cpus;
}

Options parse(int argc, char** argv) {
  samples::CommandLine app(
      "ringshard-load: a closed-loop load generator for TCP echo servers; every echoed byte is checked",
      "ringshard-load");
  Options o;
  std::string cpus;
  app.option("--host", o.host, "the server's address").show_default();
  app.option("--port", o.port, "the server's port").range(1u, 65535u).required();
  app.option("--connections", o.connections, "connections to open (all connect before the load starts)")
      .range(1u, 1'000'000u)
      .show_default();
  app.option("--size", o.size, "message size (bytes)").range(std::size_t{1}, std::size_t{1} << 30).show_default();
  app.option("--depth", o.depth, "messages in flight per connection (1: lockstep)").range(1u, 65536u).show_default();
  app.option("--warmup", o.warmup, "seconds of load before measuring (not counted)").range(0.0, 1e6).show_default();
  app.option("--duration", o.duration, "measured seconds (> 0)").range(0.0, 1e6).show_default();
  app.option("--shards", o.shards, "load generator shards (threads); connections are spread over them")
      .range(1u, 1024u)
      .show_default();
  app.option("--cpus", cpus, "pin shard i to the i-th CPU of LIST, e.g. 1 or 0,1 or 2-3");
  app.option("--connect-timeout", o.connect_timeout, "seconds a connection may take to be established (> 0)")
      .range(0.0, 1e6)
      .show_default();
  app.flag("--json", o.json, "one JSON object with every figure on stdout (the summary goes to stderr)");
  app.parse_or_exit(argc, argv);
  if (o.duration == 0.0) usage_error("--duration: must be more than 0 seconds");
  if (o.connect_timeout == 0.0) usage_error("--connect-timeout: must be more than 0 seconds");
  if (!cpus.empty()) o.cpus = parse_cpus(cpus);
  try {
    o.target = o.host.find(':') != std::string::npos
                   ? net::Address::ipv6(o.host, static_cast<std::uint16_t>(o.port))
                   : net::Address::ipv4(o.host, static_cast<std::uint16_t>(o.port));
  } catch (const std::exception& e) {
    usage_error(cat("--host: ", o.host, ": ", e.what()));
  }
  return o;
}

// ---- the payload ------------------------------------------------------------------

// Connection c's stream is byte (offset_c + i) mod kPeriod of a pseudo-random
// pattern, for i = 0, 1, 2, ... The buffer holds kPeriod + kMaxSpan bytes, so
// that any run of up to kMaxSpan stream bytes is one contiguous slice of it:
// a send is a pointer into it, and checking an echo is one memcmp. The period
// is prime, so no message size lines the streams up with each other.
constexpr std::size_t kPeriod = 262'139;
constexpr std::size_t kMaxSpan = 128 * 1024;  // largest single send; below kPeriod
static_assert(kMaxSpan < kPeriod);

class Pattern {
 public:
  Pattern() : bytes_(std::make_unique<std::byte[]>(kPeriod + kMaxSpan)) {
    std::uint64_t x = 0x9e3779b97f4a7c15ull;
    for (std::size_t i = 0; i < kPeriod; ++i) {  // splitmix64
      x += 0x9e3779b97f4a7c15ull;
      std::uint64_t z = x;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      bytes_[i] = static_cast<std::byte>(z ^ (z >> 31));
    }
    std::memcpy(bytes_.get() + kPeriod, bytes_.get(), kMaxSpan);
  }
  [[nodiscard]] const std::byte* at(std::size_t offset) const noexcept { return bytes_.get() + offset; }

 private:
  std::unique_ptr<std::byte[]> bytes_;
};

// ---- shared state -----------------------------------------------------------------

enum ConnState : std::uint8_t { kConnecting = 0, kOpen = 1, kFailed = 2 };

// What every connection reads, and the few counters that cross threads (they
// change on connect, close and error only, never per message).
struct Run {
  Run(const Options& o, const Pattern& p) : pattern(&p), size(o.size), depth(o.depth),
      states(std::make_unique<std::atomic<std::uint8_t>[]>(o.connections)) {}

  const Pattern* pattern;
  std::size_t size;
  unsigned depth;
  // The measuring window, in steady-clock nanoseconds; nothing counts until set.
  std::atomic<Nanos> window_start{std::numeric_limits<Nanos>::max()};
  std::atomic<Nanos> window_end{std::numeric_limits<Nanos>::max()};
  // Set before the runtime stops: closes from then on are not errors.
  std::atomic<bool> finishing{false};
  std::atomic<unsigned> connected{0};
  std::atomic<unsigned> connect_failures{0};
  std::atomic<int> connect_errno{0};
  std::atomic<unsigned> live{0};
  std::atomic<std::uint64_t> errors{0};
  std::atomic<unsigned> reported{0};
  std::unique_ptr<std::atomic<std::uint8_t>[]> states;  // ConnState per connection

  static constexpr unsigned kReportedErrors = 5;

  /// Counts an error and prints the first few (never on the hot path).
  void error(unsigned index, const char* what, int err = 0) noexcept {
    errors.fetch_add(1, std::memory_order_relaxed);
    if (reported.fetch_add(1, std::memory_order_relaxed) < kReportedErrors) {
      if (err != 0) {
        std::fprintf(stderr, "ringshard-load: connection %u: %s (%s)\n", index, what, std::strerror(err));
      } else {
        std::fprintf(stderr, "ringshard-load: connection %u: %s\n", index, what);
      }
    }
  }
};

// One per shard, written only by that shard's connections, read after the
// runtime has stopped (the thread joins order the reads after the writes).
struct alignas(64) ShardStats {
  std::uint64_t requests = 0;
  Histogram latency;  // nanoseconds
};

// ---- the connection actor ---------------------------------------------------------

struct Start {};
// Abandons a connect still in progress (see the connect phase in run_load).
struct GiveUp {};

class LoadConnection final : public net::Connection<LoadConnection> {
 public:
  LoadConnection(Run* run, ShardStats* stats, unsigned index)
      : run_(run), stats_(stats), index_(index), size_(run->size), depth_(run->depth),
        stamps_(std::make_unique<Nanos[]>(run->depth)) {
    const std::size_t offset = static_cast<std::size_t>((std::uint64_t{index} * 0x9e3779b1u) % kPeriod);
    send_offset_ = recv_offset_ = offset;
    message_left_ = size_;
    // Reception never pauses for unsent bytes: they are bounded by depth x
    // size anyway (a message goes out only when one came back), and the echo
    // must keep being read, or a server blocked on sending it back would stop
    // reading what is queued here.
    net::ConnectionOptions options;
    options.high_watermark = std::numeric_limits<std::size_t>::max();
    options.low_watermark = std::numeric_limits<std::size_t>::max();
    set_options(options);
  }

  void on_open() override {
    opened_ = true;
    run_->live.fetch_add(1, std::memory_order_relaxed);
    run_->states[index_].store(kOpen, std::memory_order_relaxed);
    run_->connected.fetch_add(1, std::memory_order_release);
  }

  // Every connection is established: put `depth` messages in flight at once.
  void on_message(const Start&) {
    const Nanos now = now_ns();
    for (unsigned i = 0; i < depth_; ++i) stamps_[i] = now;
    due_ = std::uint64_t{depth_} * size_;
    pump();
  }

  void on_data(std::span<const std::byte> bytes) override {
    if (failed_) return;
    std::size_t n = bytes.size();
    if (received_ + n > queued_) {
      fail("the server sent more bytes than it was sent");
      return;
    }
    // The echo must be the next bytes of this connection's stream, however
    // TCP cut them.
    const std::byte* data = bytes.data();
    for (std::size_t left = n; left > 0;) {
      const std::size_t len = std::min(left, kMaxSpan);
      if (std::memcmp(data, run_->pattern->at(recv_offset_), len) != 0) {
        mismatch(data, len, received_ + static_cast<std::uint64_t>(data - bytes.data()));
        return;
      }
      data += len;
      left -= len;
      recv_offset_ += len;
      if (recv_offset_ >= kPeriod) recv_offset_ -= kPeriod;
    }
    received_ += n;
    if (n < message_left_) {
      message_left_ -= n;
      return;
    }
    // One or more messages are complete: one clock read times them all and
    // stamps the messages that replace them.
    const Nanos now = now_ns();
    const bool counted = now >= run_->window_start.load(std::memory_order_relaxed) &&
                         now < run_->window_end.load(std::memory_order_relaxed);
    std::uint64_t done = 0;
    do {
      n -= message_left_;
      message_left_ = size_;
      if (counted) stats_->latency.record(static_cast<std::uint64_t>(now - stamps_[slot_]));
      stamps_[slot_] = now;
      if (++slot_ == depth_) slot_ = 0;
      ++done;
    } while (n >= message_left_);
    message_left_ -= n;
    if (counted) stats_->requests += done;
    due_ += done * size_;
    pump();
  }

  void on_message(const GiveUp&) {
    if (opened_ || fd() < 0) return;
    gave_up_ = true;                   // counted as timed out, not as failed
    ::shutdown(fd(), SHUT_RDWR);       // the connect fails at once
  }

  void on_peer_shutdown() override { fail("the server closed the connection"); }

  void on_close(net::CloseReason reason) override {
    if (!opened_) {
      if (run_->finishing.load(std::memory_order_relaxed)) return;
      run_->states[index_].store(kFailed, std::memory_order_relaxed);
      if (gave_up_) return;
      int expected = 0;
      run_->connect_errno.compare_exchange_strong(expected, last_error() != 0 ? last_error() : ECONNREFUSED);
      run_->connect_failures.fetch_add(1, std::memory_order_release);
      return;
    }
    run_->live.fetch_sub(1, std::memory_order_relaxed);
    if (failed_ || reason == net::CloseReason::shutdown || run_->finishing.load(std::memory_order_relaxed)) return;
    failed_ = true;
    const std::string what = cat("closed early: ", net::to_string(reason));
    run_->error(index_, what.c_str(), last_error());
  }

 private:
  // Queues what is due and not queued yet, straight from the pattern buffer:
  // no copy, and nothing to free, since the pattern outlives the runtime (so
  // the SendDone has nothing to do, and must not touch this actor, which may
  // be gone when a send it queued is dropped). An entry is at most kMaxSpan
  // bytes, one contiguous slice of the pattern; the connection gathers what is
  // queued into one sendmsg and continues short sends. The same pattern bytes
  // may be queued several times at once (depth > 1): the memory is read-only.
  // A failed send closes the connection, which on_close reports.
  void pump() {
    if (failed_ || !is_open()) return;
    while (queued_ < due_) {
      const std::size_t len = static_cast<std::size_t>(std::min<std::uint64_t>(due_ - queued_, kMaxSpan));
      send(std::span<const std::byte>(run_->pattern->at(send_offset_), len), net::SendDone([](bool) {}));
      queued_ += len;
      send_offset_ += len;
      if (send_offset_ >= kPeriod) send_offset_ -= kPeriod;
    }
  }

  // `data` (len bytes, stream position `position`) differs from the pattern.
  void mismatch(const std::byte* data, std::size_t len, std::uint64_t position) {
    const std::byte* expected = run_->pattern->at(recv_offset_);
    std::size_t at = 0;
    while (at < len && data[at] == expected[at]) ++at;
    position += at;
    const std::string what = cat("echoed byte ", position, " of the stream differs from what was sent");
    fail(what.c_str());
  }

  void fail(const char* what, int err = 0) {
    if (failed_) return;
    failed_ = true;
    if (!run_->finishing.load(std::memory_order_relaxed)) run_->error(index_, what, err);
    abort();
  }

  Run* run_;
  ShardStats* stats_;
  unsigned index_;
  std::size_t size_;
  unsigned depth_;
  std::unique_ptr<Nanos[]> stamps_;  // send time of the messages in flight, by slot
  unsigned slot_ = 0;                // slot of the oldest message in flight
  std::uint64_t due_ = 0;            // stream bytes that should have been sent by now
  std::uint64_t queued_ = 0;         // stream bytes queued for sending
  std::uint64_t received_ = 0;       // stream bytes echoed and checked
  std::size_t send_offset_ = 0;      // pattern offset of stream byte queued_
  std::size_t recv_offset_ = 0;      // pattern offset of stream byte received_
  std::size_t message_left_ = 0;     // bytes still to come of the oldest message
  bool opened_ = false;
  bool failed_ = false;
  bool gave_up_ = false;
};

// ---- the run ----------------------------------------------------------------------

constexpr unsigned kConnectWindow = 256;  // connects in progress at a time

// Waits up to `ms` for SIGINT/SIGTERM (blocked in every thread); true if one came.
bool wait_for_signal(long ms) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  const timespec ts{ms / 1000, (ms % 1000) * 1'000'000};
  return ::sigtimedwait(&set, nullptr, &ts) > 0;
}

// Every CPU of the list must be one this process may run on.
void check_cpus(const std::vector<int>& cpus) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (::sched_getaffinity(0, sizeof allowed, &allowed) != 0) return;  // the kernel will tell
  std::string list;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &allowed)) list += cat(list.empty() ? "" : ",", c);
  }
  for (int c : cpus) {
    if (!CPU_ISSET(c, &allowed)) usage_error(cat("--cpus: CPU ", c, " is not available (this process may use ", list, ")"));
  }
}

void pin_thread(pthread_t thread, const std::vector<int>& cpus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c : cpus) CPU_SET(c, &set);
  if (const int rc = ::pthread_setaffinity_np(thread, sizeof set, &set); rc != 0) {
    usage_error(cat("--cpus: cannot pin the load generator (", std::strerror(rc), ")"));
  }
}

// Shard i runs on cpus[i % size]. The main thread gets all of them first (the
// shard threads inherit that), then each shard narrows itself to its own.
void pin_shards(Runtime& rt, const std::vector<int>& cpus) {
  std::atomic<unsigned> done{0};
  std::atomic<int> failed_cpu{-1};
  for (unsigned i = 0; i < rt.shard_count(); ++i) {
    const int cpu = cpus[i % cpus.size()];
    rt.post(i, Job([cpu, &done, &failed_cpu] {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(cpu, &set);
      if (::pthread_setaffinity_np(::pthread_self(), sizeof set, &set) != 0) failed_cpu.store(cpu);
      done.fetch_add(1);
      done.notify_all();
    }));
  }
  for (unsigned seen = done.load(); seen < rt.shard_count(); seen = done.load()) done.wait(seen);
  if (failed_cpu.load() >= 0) usage_error(cat("--cpus: cannot pin a shard to CPU ", failed_cpu.load()));
}

struct Result {
  unsigned connected = 0;
  unsigned connect_errors = 0;
  std::uint64_t errors = 0;
  std::uint64_t requests = 0;
  double seconds = 0;
  bool loaded = false;  // the load ran (every connection was established)
  bool interrupted = false;
  Histogram latency;
};

void report(const Options& o, const Result& r) {
  const double rps = r.seconds > 0 ? static_cast<double>(r.requests) / r.seconds : 0.0;
  const double mbps = rps * static_cast<double>(o.size) / 1e6;
  const double p50 = r.latency.quantile(0.50) / 1e3;
  const double p99 = r.latency.quantile(0.99) / 1e3;
  const double p999 = r.latency.quantile(0.999) / 1e3;
  const double max = static_cast<double>(r.latency.max()) / 1e3;
  const double mean = r.latency.mean() / 1e3;
  FILE* human = o.json ? stderr : stdout;
  std::fprintf(human,
               "ringshard-load: %s, %u connections (%u connected) on %u shard%s, %zu B messages, depth %u\n"
               "  measured    %.2f s after %.2f s of warm-up%s%s\n"
               "  requests    %llu (%.0f requests/s)\n"
               "  throughput  %.2f MB/s echoed\n"
               "  latency us  p50 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f\n"
               "  errors      %llu\n",
               o.target.to_string().c_str(), o.connections, r.connected, o.shards, o.shards == 1 ? "" : "s", o.size,
               o.depth, r.seconds, o.warmup, r.loaded ? "" : " (no load: not every connection was established)",
               r.interrupted ? " (interrupted)" : "",
               static_cast<unsigned long long>(r.requests), rps, mbps, p50, p99, p999, max, mean,
               static_cast<unsigned long long>(r.errors));
  if (o.json) {
    std::printf("{\"host\":\"%s\",\"port\":%u,\"connections\":%u,\"connected\":%u,\"shards\":%u,\"size\":%zu,"
                "\"depth\":%u,\"warmup_s\":%.3f,\"duration_s\":%.6f,\"requests\":%llu,\"requests_per_s\":%.1f,"
                "\"mb_per_s\":%.4f,\"p50_us\":%.2f,\"p99_us\":%.2f,\"p999_us\":%.2f,\"max_us\":%.2f,"
                "\"mean_us\":%.2f,\"errors\":%llu,\"connect_errors\":%u,\"interrupted\":%s}\n",
                o.host.c_str(), o.port, o.connections, r.connected, o.shards, o.size, o.depth, o.warmup, r.seconds,
                static_cast<unsigned long long>(r.requests), rps, mbps, p50, p99, p999, max, mean,
                static_cast<unsigned long long>(r.errors), r.connect_errors, r.interrupted ? "true" : "false");
  }
  std::fflush(stdout);
}

int run_load(const Options& o) {
  const Pattern pattern;
  Run run(o, pattern);
  std::vector<std::unique_ptr<ShardStats>> stats;
  for (unsigned i = 0; i < o.shards; ++i) stats.push_back(std::make_unique<ShardStats>());
  Result result;

  if (!o.cpus.empty()) {
    check_cpus(o.cpus);
    pin_thread(::pthread_self(), o.cpus);
  }
  RuntimeOptions options;
  options.shards = o.shards;
  options.pin = false;  // --cpus pins; otherwise the scheduler places the shards
  Runtime rt(options);
  rt.start();
  if (!o.cpus.empty()) pin_shards(rt, o.cpus);

  // ---- connect, at most kConnectWindow at a time ----
  const auto timeout = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.connect_timeout));
  std::vector<actors::ActorRef<LoadConnection>> refs(o.connections);
  std::vector<Clock::time_point> started(o.connections);
  unsigned launched = 0;
  unsigned oldest = 0;  // every connection before it has settled
  unsigned timed_out = 0;
  for (;;) {
    const unsigned settled = run.connected.load(std::memory_order_acquire) + run.connect_failures.load(std::memory_order_acquire);
    const bool failing = run.connect_failures.load() != 0;
    while (!failing && launched < o.connections && launched - settled < kConnectWindow) {
      started[launched] = Clock::now();
      refs[launched] = net::connect<LoadConnection>(rt, launched % o.shards, o.target, &run,
                                                    stats[launched % o.shards].get(), launched);
      ++launched;
    }
    if (settled == launched && (failing || launched == o.connections)) break;
    const auto now = Clock::now();
    while (oldest < launched && run.states[oldest].load(std::memory_order_relaxed) != kConnecting) ++oldest;
    for (unsigned i = oldest; i < launched; ++i) {
      if (run.states[i].load(std::memory_order_relaxed) == kConnecting && now - started[i] > timeout) ++timed_out;
    }
    if (timed_out != 0) break;
    if (wait_for_signal(1)) {
      result.interrupted = true;
      break;
    }
  }
  result.connected = run.connected.load();
  result.connect_errors = run.connect_failures.load() + timed_out;
  // Connects still in progress are ended by a shutdown of their socket, and
  // waited for (briefly): a socket that the runtime's stop finds connecting
  // is never freed by the net layer.
  for (unsigned i = oldest; i < launched; ++i) {
    if (run.states[i].load(std::memory_order_relaxed) == kConnecting) actors::send(refs[i], GiveUp{});
  }
  for (const auto until = Clock::now() + std::chrono::seconds(2); Clock::now() < until;) {
    while (oldest < launched && run.states[oldest].load(std::memory_order_relaxed) != kConnecting) ++oldest;
    if (oldest == launched || wait_for_signal(1)) break;
  }
  if (run.connect_failures.load() != 0) {
    std::fprintf(stderr, "ringshard-load: connect to %s failed for %u of the %u connections tried: %s\n",
                 o.target.to_string().c_str(), run.connect_failures.load(), launched,
                 std::strerror(run.connect_errno.load()));
  }
  if (timed_out != 0) {
    std::fprintf(stderr, "ringshard-load: %u connections to %s not established within %.3g s\n", timed_out,
                 o.target.to_string().c_str(), o.connect_timeout);
  }

  // ---- load: warm-up, then the measured window ----
  const bool load = result.connect_errors == 0 && !result.interrupted;
  result.loaded = load;
  Nanos start = 0;
  Nanos end = 0;
  if (load) {
    for (const auto& ref : refs) actors::send(ref, Start{});
    start = now_ns() + static_cast<Nanos>(o.warmup * 1e9);
    end = start + static_cast<Nanos>(o.duration * 1e9);
    run.window_start.store(start);
    run.window_end.store(end);
    for (;;) {
      const Nanos now = now_ns();
      if (now >= end) break;
      if (run.live.load(std::memory_order_relaxed) == 0) {  // every connection failed
        end = std::max(now, start);
        break;
      }
      if (wait_for_signal(std::clamp<long>((end - now) / 1'000'000, 1, 10))) {
        result.interrupted = true;
        end = std::max(now_ns(), start);
        break;
      }
    }
    run.window_end.store(end);
  }
  run.finishing.store(true);
  rt.stop();
  rt.wait();

  result.errors = run.errors.load() + result.connect_errors;
  result.seconds = load ? static_cast<double>(end - start) / 1e9 : 0.0;
  for (const auto& s : stats) {
    result.requests += s->requests;
    result.latency.merge(s->latency);
  }
  report(o, result);
  if (result.errors != 0) {
    const unsigned shown = std::min(run.reported.load(), Run::kReportedErrors);
    std::fprintf(stderr, "ringshard-load: FAILED: %llu error%s", static_cast<unsigned long long>(result.errors),
                 result.errors == 1 ? "" : "s");
    if (run.errors.load() > shown) std::fprintf(stderr, " (the first %u connection errors are shown above)", shown);
    std::fprintf(stderr, "\n");
    return 1;
  }
  if (result.requests == 0) {
    std::fprintf(stderr, "ringshard-load: FAILED: no request completed in the measured window\n");
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace ringshard::load

int main(int argc, char** argv) {
  ringshard::load::Options options;
  try {
    options = ringshard::load::parse(argc, argv);
  } catch (const ringshard::load::BadArgument& e) {
    std::fprintf(stderr, "ringshard-load: %s (see --help)\n", e.what());
    return 2;
  }
  if (std::getenv("RINGSHARD_LOG") == nullptr) ringshard::logger().set_level(spdlog::level::warn);
  // SIGINT/SIGTERM end the run early (with a report): blocked here, so every
  // thread inherits the mask, and taken with sigtimedwait by the main thread.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  try {
    return ringshard::load::run_load(options);
  } catch (const ringshard::load::BadArgument& e) {
    std::fprintf(stderr, "ringshard-load: %s (see --help)\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ringshard-load: %s\n", e.what());
    return 1;
  }
}
