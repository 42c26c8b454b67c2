// The command line the samples share, on CLI11.
//
// Every sample spells a common option the same way: --host, --port, --shards,
// --policy, --buffers, --metrics-port. `--help` prints the options and exits
// 0. A bad argument (an unknown option, a value that is not a number or out
// of range, a missing value) prints one line naming the option on stderr and
// exits 2:
//
//   ringshard-echo: --port: Value x not in range 0 to 65535 (see --help)
#pragma once

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "ringshard/net/address.hpp"
#include "ringshard/net/http/metrics.hpp"
#include "ringshard/net/listener.hpp"

namespace ringshard::samples {

/// Prints "PROGRAM: MESSAGE (see --help)" on stderr and exits 2. For checks
/// made after parsing (values that depend on each other, addresses).
[[noreturn]] inline void bad_argument(const CLI::App& app, std::string_view message) {
  std::fprintf(stderr, "%s: %.*s (see --help)\n", app.get_name().c_str(), static_cast<int>(message.size()),
               message.data());
  std::exit(2);
}

/// Parses the command line: --help prints the help on stdout and exits 0; a
/// bad argument prints one line naming it and exits 2.
inline void parse_or_exit(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    std::exit(0);
  } catch (const CLI::ParseError& e) {
    bad_argument(app, e.what());
  }
}

/// Sizes with an optional binary suffix: 4096, 64K, 4M, 1G (also KiB, MB...).
inline CLI::Option* add_size(CLI::App& app, const std::string& name, std::size_t& value, const std::string& help) {
  return app.add_option(name, value, help)->transform(CLI::AsSizeValue(false))->capture_default_str();
}

/// Milliseconds, 0 to a day.
template <class Duration>
CLI::Option* add_millis(CLI::App& app, const std::string& name, Duration& value, const std::string& help) {
  return app
      .add_option_function<unsigned>(
          name, [&value](unsigned ms) { value = std::chrono::duration_cast<Duration>(std::chrono::milliseconds(ms)); },
          help + " (ms, default " + std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(value).count()) +
              ")")
      ->check(CLI::Range(0u, 86'400'000u));
}

/// The options of a sharded server: where it listens, on how many shards,
/// how connections are spread, its receive rings and its metrics listener.
struct ServerFlags {
  std::string host = "127.0.0.1";
  unsigned port = 0;
  unsigned shards = 0;  // 0: one per CPU
  net::Policy policy = net::Policy::round_robin;
  unsigned buffers = 4096;
  bool no_incremental = false;
  bool no_bundle = false;
  std::optional<unsigned> fixed_files;  // absent: the default (off in the framework)
  std::optional<unsigned> metrics_port;  // absent: no metrics listener

  struct Parts {
    bool shards = true;
    bool policy = true;
    bool buffers = true;
    bool metrics = true;
  };

  void add_to(CLI::App& app, Parts parts) {
    app.add_option("--host", host, "address to listen on (IPv4 or IPv6)")->capture_default_str();
    app.add_option("--port", port, "port to listen on (0 picks a free one)")
        ->check(CLI::Range(0u, 65535u))
        ->capture_default_str();
    if (parts.shards) {
      app.add_option("--shards", shards, "shards (threads, one per core); 0: one per CPU")
          ->check(CLI::Range(0u, 1024u))
          ->capture_default_str();
    }
    if (parts.policy) {
      app.add_option_function<std::string>(
             "--policy", [this](const std::string& name) { policy = net::parse_policy(name); },
             "how accepted connections are spread over the shards (default round-robin)")
          ->check(CLI::IsMember({"round-robin", "least-connections", "reuse-port"}));
    }
    if (parts.buffers) {
      app.add_option("--buffers", buffers,
                     "4 KiB receive buffers per shard (a power of two); with incremental buffers the same memory "
                     "as 64 KiB buffers")
          ->check(CLI::Range(1u, 32768u))
          ->check(CLI::Validator(
              [](std::string& text) -> std::string {
                unsigned long n = 0;
                try {
                  n = std::stoul(text);
                } catch (const std::exception&) {
                  return "Value " + text + " is not a number";
                }
                return (n & (n - 1)) == 0 ? std::string() : "Value " + text + " is not a power of two";
              },
              "POWER_OF_TWO"))
          ->capture_default_str();
      app.add_flag("--no-incremental", no_incremental,
                   "receives use whole buffers (no incremental consumption, IOU_PBUF_RING_INC)");
      app.add_flag("--no-bundle", no_bundle, "one buffer per receive completion (no IORING_RECVSEND_BUNDLE)");
      app.add_option("--fixed-files", fixed_files,
                     "slots of each shard's fixed file table for direct descriptors (0: none, the framework's "
                     "default; when full, connections use plain descriptors)")
          ->check(CLI::Range(0u, 1u << 20));
    }
    if (parts.metrics) {
      app.add_option("--metrics-port", metrics_port,
                     "serve Prometheus metrics at http://HOST:PORT/metrics (0 picks a free port; off by default)")
          ->check(CLI::Range(0u, 65535u));
    }
  }

  /// The receive ring of --buffers, --no-incremental, --no-bundle.
  [[nodiscard]] net::ReceiveBuffers receive_buffers() const {
    net::ReceiveBuffers rb;
    rb.count = buffers;
    rb.size = 4096;
    rb.incremental = !no_incremental;
    rb.bundles = !no_bundle;
    return rb;
  }

  /// The receive rings and direct descriptors of the flags, for `listen`.
  void configure(net::ListenOptions& listen) const {
    listen.receive_buffers = receive_buffers();
    listen.fixed_files = fixed_files;
  }

  /// The listening address; a bad --host exits 2.
  net::Address address(const CLI::App& app, unsigned which_port) const {
    try {
      return host.find(':') != std::string::npos ? net::Address::ipv6(host, static_cast<std::uint16_t>(which_port))
                                                 : net::Address::ipv4(host, static_cast<std::uint16_t>(which_port));
    } catch (const std::exception& e) {
      bad_argument(app, "--host: " + std::string(e.what()));
    }
  }
  net::Address address(const CLI::App& app) const { return address(app, port); }

  /// Prints `listening on HOST:PORT` (the line tests and scripts read
  /// first), starts the metrics listener (--metrics-port) and runs until
  /// SIGINT/SIGTERM (a graceful stop).
  void run(const CLI::App& app, Runtime& runtime, const net::ListenerHandle& listener) const {
    std::printf("listening on %s\n", listener.address().to_string().c_str());
    std::fflush(stdout);
    serve_metrics(app, runtime);
    runtime.run();
  }

  /// With --metrics-port: starts the metrics listener (on --host, shard 0)
  /// and prints `metrics on HOST:PORT` on stdout (after the `listening on`
  /// line, which tests and scripts read first).
  void serve_metrics(const CLI::App& app, Runtime& runtime) const {
    if (!metrics_port) return;
    net::ListenOptions listen;
    listen.address = address(app, *metrics_port);
    const net::ListenerHandle handle = net::http::serve_metrics(runtime, listen);
    std::printf("metrics on %s\n", handle.address().to_string().c_str());
    std::fflush(stdout);
  }
};

}  // namespace ringshard::samples
