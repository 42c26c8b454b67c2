// ringshard-echo: the sharded actor echo server.
//
//   ringshard-echo [--host 127.0.0.1] [--port 0] [--shards N] [--policy round-robin|least-connections|reuse-port]
//                  [--buffers 4096]
//
// Every accepted connection becomes an Echo actor on the shard the policy
// picks; the actor sends back what it receives. The first line on stdout is
// `listening on HOST:PORT`. SIGINT/SIGTERM stop it cleanly (exit status 0).
#include <cstdio>
#include <exception>
#include <string>

#include "common/cli.hpp"
#include "ringshard/net/listener.hpp"

namespace {

struct Echo : ringshard::net::Connection<Echo> {
  // The received buffer itself is sent back (no copy); it returns to the
  // shard's receive ring when that send completes.
  void on_data(std::span<const std::byte>) override { send(keep_received()); }
};

}  // namespace

int main(int argc, char** argv) {
  ringshard::samples::CommandLine app("ringshard-echo: the sharded echo server", "ringshard-echo");
  ringshard::samples::ServerFlags flags;
  flags.add_to(app, {});
  app.parse_or_exit(argc, argv);
  ringshard::net::ListenOptions listen;
  listen.address = flags.address(app);
  listen.policy = flags.policy;
  flags.configure(listen);
  try {
    ringshard::RuntimeOptions options;
    flags.configure(options);
    ringshard::Runtime runtime(options);
    runtime.start();
    auto listener = ringshard::net::listen<Echo>(runtime, listen);
    flags.run(app, runtime, listener);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ringshard-echo: %s\n", e.what());
    return 1;
  }
}
