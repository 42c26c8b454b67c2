// The samples' command line on CLI11 (see cli.hpp).
#include "common/cli.hpp"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <utility>

#include "ringshard/net/http/metrics.hpp"

namespace ringshard::samples {

// ---- Option -----------------------------------------------------------------------

Option& Option::integer_range(std::uint64_t min, std::uint64_t max) {
  option_->check(CLI::Range(min, max));
  return *this;
}

Option& Option::range(double min, double max) {
  option_->check(CLI::Range(min, max));
  return *this;
}

Option& Option::power_of_two() {
  option_->check(CLI::Validator(
      [](std::string& text) -> std::string {
        unsigned long n = 0;
        try {
          n = std::stoul(text);
        } catch (const std::exception&) {
          return "Value " + text + " is not a number";
        }
        return (n & (n - 1)) == 0 ? std::string() : "Value " + text + " is not a power of two";
      },
      "POWER_OF_TWO"));
  return *this;
}

Option& Option::required() {
  option_->required();
  return *this;
}

Option& Option::show_default() {
  option_->capture_default_str();
  return *this;
}

// ---- CommandLine ------------------------------------------------------------------

CommandLine::CommandLine(const std::string& description, const std::string& name)
    : app_(std::make_unique<CLI::App>(description, name)) {}

CommandLine::~CommandLine() = default;

Option CommandLine::option(const std::string& name, unsigned& value, const std::string& help) {
  return Option(app_->add_option(name, value, help));
}

Option CommandLine::option(const std::string& name, std::size_t& value, const std::string& help) {
  return Option(app_->add_option(name, value, help));
}

Option CommandLine::option(const std::string& name, double& value, const std::string& help) {
  return Option(app_->add_option(name, value, help));
}

Option CommandLine::option(const std::string& name, std::string& value, const std::string& help) {
  return Option(app_->add_option(name, value, help));
}

Option CommandLine::option(const std::string& name, std::optional<unsigned>& value, const std::string& help) {
  return Option(app_->add_option(name, value, help));
}

Option CommandLine::option(const std::string& name, std::vector<std::string>& values, const std::string& help) {
  return Option(app_->add_option(name, values, help));
}

Option CommandLine::flag(const std::string& name, bool& value, const std::string& help) {
  return Option(app_->add_flag(name, value, help));
}

Option CommandLine::size(const std::string& name, std::size_t& value, const std::string& help) {
  return Option(app_->add_option(name, value, help)->transform(CLI::AsSizeValue(false))->capture_default_str());
}

Option CommandLine::milliseconds(const std::string& name, std::function<void(unsigned)> set, const std::string& help) {
  return Option(app_->add_option_function<unsigned>(name, std::move(set), help)->check(CLI::Range(0u, 86'400'000u)));
}

Option CommandLine::choice(const std::string& name, std::function<void(const std::string&)> set,
                           const std::string& help, std::initializer_list<std::string> choices) {
  return Option(
      app_->add_option_function<std::string>(name, std::move(set), help)->check(CLI::IsMember(std::vector(choices))));
}

void CommandLine::parse_or_exit(int argc, char** argv) {
  try {
    app_->parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app_->help().c_str(), stdout);
    std::exit(0);
  } catch (const CLI::ParseError& e) {
    bad_argument(e.what());
  }
}

void CommandLine::bad_argument(std::string_view message) const {
  std::fprintf(stderr, "%s: %.*s (see --help)\n", app_->get_name().c_str(), static_cast<int>(message.size()),
               message.data());
  std::exit(2);
}

// ---- ServerFlags ------------------------------------------------------------------

void ServerFlags::add_to(CommandLine& cli, Parts parts) {
  cli.option("--host", host, "address to listen on (IPv4 or IPv6)").show_default();
  cli.option("--port", port, "port to listen on (0 picks a free one)").range(0u, 65535u).show_default();
  if (parts.shards) {
    cli.option("--shards", shards, "shards (threads, one per core); 0: one per CPU").range(0u, 1024u).show_default();
    cli.option("--min-wait-us", min_wait_us,
               "batched waits: an idle shard sleeps until --wait-batch completions or, after this many "
               "microseconds, until one (0: wake at every completion; Linux 6.12)")
        .range(0u, 1'000'000u)
        .show_default();
    cli.option("--wait-batch", wait_batch, "completions a batched wait waits for").range(2u, 4096u).show_default();
    cli.flag("--registered-wait", registered_wait,
             "waits with a timeout or --min-wait-us name their argument in a wait region registered with the ring "
             "instead of passing it (Linux 6.13)");
  }
  if (parts.policy) {
    cli.choice("--policy", [this](const std::string& name) { policy = net::parse_policy(name); },
               "how accepted connections are spread over the shards (default round-robin)",
               {"round-robin", "least-connections", "reuse-port"});
  }
  if (parts.buffers) {
    cli.option("--buffers", buffers,
               "4 KiB receive buffers per shard (a power of two); with incremental buffers the same memory as 64 KiB "
               "buffers")
        .range(1u, 32768u)
        .power_of_two()
        .show_default();
    cli.flag("--no-incremental", no_incremental,
             "receives use whole buffers (no incremental consumption, IOU_PBUF_RING_INC)");
    cli.flag("--no-bundle", no_bundle, "one buffer per receive completion (no IORING_RECVSEND_BUNDLE)");
    cli.option("--fixed-files", fixed_files,
               "slots of each shard's fixed file table for direct descriptors (0: none, the framework's "
               "default; when full, connections use plain descriptors)")
        .range(0u, 1u << 20);
  }
  if (parts.metrics) {
    cli.option("--metrics-port", metrics_port,
               "serve Prometheus metrics at http://HOST:PORT/metrics (0 picks a free port; off by default)")
        .range(0u, 65535u);
  }
}

net::ReceiveBuffers ServerFlags::receive_buffers() const {
  net::ReceiveBuffers rb;
  rb.count = buffers;
  rb.size = 4096;
  rb.incremental = !no_incremental;
  rb.bundles = !no_bundle;
  return rb;
}

void ServerFlags::configure(net::ListenOptions& listen) const {
  listen.receive_buffers = receive_buffers();
  listen.fixed_files = fixed_files;
}

void ServerFlags::configure(RuntimeOptions& runtime) const {
  runtime.shards = shards;
  runtime.reactor.min_wait = std::chrono::microseconds(min_wait_us);
  runtime.reactor.wait_batch = wait_batch;
  runtime.reactor.registered_wait = registered_wait;
}

net::Address ServerFlags::address(const CommandLine& cli, unsigned which_port) const {
  try {
    return host.find(':') != std::string::npos ? net::Address::ipv6(host, static_cast<std::uint16_t>(which_port))
                                               : net::Address::ipv4(host, static_cast<std::uint16_t>(which_port));
  } catch (const std::exception& e) {
    cli.bad_argument("--host: " + std::string(e.what()));
  }
}

void ServerFlags::run(const CommandLine& cli, Runtime& runtime, const net::ListenerHandle& listener) const {
  std::printf("listening on %s\n", listener.address().to_string().c_str());
  std::fflush(stdout);
  serve_metrics(cli, runtime);
  runtime.run();
}

void ServerFlags::serve_metrics(const CommandLine& cli, Runtime& runtime) const {
  if (!metrics_port) return;
  net::ListenOptions listen;
  listen.address = address(cli, *metrics_port);
  const net::ListenerHandle handle = net::http::serve_metrics(runtime, listen);
  std::printf("metrics on %s\n", handle.address().to_string().c_str());
  std::fflush(stdout);
}

}  // namespace ringshard::samples
