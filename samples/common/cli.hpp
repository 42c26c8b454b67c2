// The command line the samples share.
//
// Every sample spells a common option the same way: --host, --port, --shards,
// --policy, --buffers, --metrics-port. `--help` prints the options and exits
// 0. A bad argument (an unknown option, a value that is not a number or out
// of range, a missing value) prints one line naming the option on stderr and
// exits 2:
//
//   ringshard-echo: --port: Value x not in range 0 to 65535 (see --help)
//
// The parser is CLI11, compiled once in samples/common/cli.cpp: this header
// does not include it (CLI11 is header-only and its templates cost each
// program that includes it seconds of compile time, ten times that under the
// sanitizers).
#pragma once

#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ringshard/framework/shard.hpp"
#include "ringshard/net/address.hpp"
#include "ringshard/net/listener.hpp"

namespace CLI {
class App;
class Option;
}  // namespace CLI

namespace ringshard::samples {

/// One option of a CommandLine, refined in place:
///   cli.option("--port", port, "...").range(1, 65535).required();
class Option {
 public:
  /// The value must lie in [min, max] (integers; a negative number is out of range).
  template <std::integral T>
  Option& range(T min, T max) {
    return integer_range(static_cast<std::uint64_t>(min), static_cast<std::uint64_t>(max));
  }
  Option& range(double min, double max);
  /// ... and a power of two (checked after any range).
  Option& power_of_two();
  Option& required();
  /// --help shows the variable's value before parsing as the default.
  Option& show_default();

 private:
  friend class CommandLine;
  Option& integer_range(std::uint64_t min, std::uint64_t max);
  explicit Option(CLI::Option* option) : option_(option) {}
  CLI::Option* option_;
};

/// A program's options. Options write straight into the caller's variables,
/// which must outlive parse_or_exit.
class CommandLine {
 public:
  CommandLine(const std::string& description, const std::string& name);
  ~CommandLine();
  CommandLine(const CommandLine&) = delete;
  CommandLine& operator=(const CommandLine&) = delete;

  /// An option with a value; a NAME without leading dashes is positional.
  Option option(const std::string& name, unsigned& value, const std::string& help);
  Option option(const std::string& name, std::size_t& value, const std::string& help);
  Option option(const std::string& name, double& value, const std::string& help);
  Option option(const std::string& name, std::string& value, const std::string& help);
  Option option(const std::string& name, std::optional<unsigned>& value, const std::string& help);
  Option option(const std::string& name, std::vector<std::string>& values, const std::string& help);
  Option flag(const std::string& name, bool& value, const std::string& help);
  /// Sizes with an optional binary suffix: 4096, 64K, 4M, 1G (also KiB, MB...).
  Option size(const std::string& name, std::size_t& value, const std::string& help);
  /// Milliseconds, 0 to a day, into any std::chrono duration.
  template <class Duration>
  Option millis(const std::string& name, Duration& value, const std::string& help) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(value).count();
    return milliseconds(
        name, [&value](unsigned n) { value = std::chrono::duration_cast<Duration>(std::chrono::milliseconds(n)); },
        help + " (ms, default " + std::to_string(ms) + ")");
  }
  /// One of CHOICES, handed to SET.
  Option choice(const std::string& name, std::function<void(const std::string&)> set, const std::string& help,
                std::initializer_list<std::string> choices);

  /// Parses the command line: --help prints the help on stdout and exits 0;
  /// a bad argument prints one line naming it and exits 2.
  void parse_or_exit(int argc, char** argv);

  /// Prints "PROGRAM: MESSAGE (see --help)" on stderr and exits 2. For checks
  /// made after parsing (values that depend on each other, addresses).
  [[noreturn]] void bad_argument(std::string_view message) const;

 private:
  Option milliseconds(const std::string& name, std::function<void(unsigned)> set, const std::string& help);

  std::unique_ptr<CLI::App> app_;
};

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
  std::optional<unsigned> fixed_files;   // absent: the default (off in the framework)
  std::optional<unsigned> metrics_port;  // absent: no metrics listener
  unsigned min_wait_us = 0;              // 0: shards wake at every completion
  bool registered_wait = false;          // waits name their argument in a registered region (6.13)
  unsigned wait_batch = 32;

  struct Parts {
    bool shards = true;
    bool policy = true;
    bool buffers = true;
    bool metrics = true;
  };

  void add_to(CommandLine& cli, Parts parts);

  /// The receive ring of --buffers, --no-incremental, --no-bundle.
  [[nodiscard]] net::ReceiveBuffers receive_buffers() const;

  /// The receive rings and direct descriptors of the flags, for `listen`.
  void configure(net::ListenOptions& listen) const;
  /// The shards and their waits (--shards, --min-wait-us, --wait-batch).
  void configure(RuntimeOptions& runtime) const;

  /// The listening address; a bad --host exits 2.
  [[nodiscard]] net::Address address(const CommandLine& cli, unsigned which_port) const;
  [[nodiscard]] net::Address address(const CommandLine& cli) const { return address(cli, port); }

  /// Prints `listening on HOST:PORT` (the line tests and scripts read
  /// first), starts the metrics listener (--metrics-port) and runs until
  /// SIGINT/SIGTERM (a graceful stop).
  void run(const CommandLine& cli, Runtime& runtime, const net::ListenerHandle& listener) const;

  /// With --metrics-port: starts the metrics listener (on --host, shard 0)
  /// and prints `metrics on HOST:PORT` on stdout (after the `listening on`
  /// line, which tests and scripts read first).
  void serve_metrics(const CommandLine& cli, Runtime& runtime) const;
};

}  // namespace ringshard::samples
