// ringshard-echo: the sharded actor echo server.
//
//   ringshard-echo [--host 127.0.0.1] [--port 0] [--shards N] [--policy round-robin|least-connections|reuse-port]
//                  [--buffers 4096]
//
// Every accepted connection becomes an Echo actor on the shard the policy
// picks; the actor sends back what it receives. The first line on stdout is
// `listening on HOST:PORT`. SIGINT/SIGTERM stop it cleanly (exit status 0).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include "ringshard/net/listener.hpp"

namespace {

struct Echo : ringshard::net::Connection<Echo> {
  // The received buffer itself is sent back (no copy); it returns to the
  // shard's receive ring when that send completes.
  void on_data(std::span<const std::byte>) override { send(keep_received()); }
};

[[noreturn]] void usage(const char* error) {
  std::fprintf(stderr,
               "%s\nusage: ringshard-echo [--host 127.0.0.1] [--port 0] [--shards N] "
               "[--policy round-robin|least-connections|reuse-port] [--buffers 4096]\n",
               error);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  unsigned port = 0;
  unsigned buffers = 4096;
  ringshard::net::ListenOptions listen;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) usage(("missing value for " + arg).c_str());
        return argv[++i];
      };
      if (arg == "--host") host = value();
      else if (arg == "--port") port = static_cast<unsigned>(std::stoul(value()));
      else if (arg == "--shards") value();  // read by shards_from_args
      else if (arg == "--policy") listen.policy = ringshard::net::parse_policy(value());
      else if (arg == "--buffers") buffers = static_cast<unsigned>(std::stoul(value()));
      else usage(("unknown argument " + arg).c_str());
    }
    listen.address = host.find(':') != std::string::npos ? ringshard::net::Address::ipv6(host, static_cast<std::uint16_t>(port))
                                                         : ringshard::net::Address::ipv4(host, static_cast<std::uint16_t>(port));
    listen.receive_buffers = ringshard::net::ReceiveBuffers{buffers, 4096};
  } catch (const std::exception& e) {
    usage(e.what());
  }
  try {
    ringshard::RuntimeOptions options;
    options.shards = ringshard::shards_from_args(argc, argv);
    ringshard::Runtime runtime(options);
    runtime.start();
    auto listener = ringshard::net::listen<Echo>(runtime, listen);
    std::printf("listening on %s\n", listener.address().to_string().c_str());
    std::fflush(stdout);
    runtime.run();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ringshard-echo: %s\n", e.what());
    return 1;
  }
}
