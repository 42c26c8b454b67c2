// ringshard-echo-co: the sharded echo server written Go-style: one coroutine
// per connection, a loop of read then write.
//
//   ringshard-echo-co [--host 127.0.0.1] [--port 0] [--shards N] [--policy round-robin|least-connections|reuse-port]
//                  [--buffers 4096]
//
// Every accepted connection runs echo() on the shard the policy picks. The
// read yields the received buffer itself and the write sends that buffer
// back (no copy). The first line on stdout is
// `listening on HOST:PORT`. SIGINT/SIGTERM stop it cleanly (exit status 0).
#include <cstdio>
#include <exception>
#include <string>

#include "common/cli.hpp"
#include "ringshard/net/stream.hpp"

namespace {

ringshard::Task<> echo(ringshard::net::Stream s) {
  for (;;) {
    auto r = co_await s.read();
    if (!r) co_return;  // the end of the stream, or an error
    if (auto error = co_await s.write(r.bytes)) co_return;
  }
}


}  // namespace

int main(int argc, char** argv) {
  ringshard::samples::CommandLine app("ringshard-echo-co: the sharded echo server (a coroutine per connection)",
                                      "ringshard-echo-co");
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
    auto listener = ringshard::net::serve(runtime, listen, echo);
    flags.run(app, runtime, listener);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ringshard-echo-co: %s\n", e.what());
    return 1;
  }
}
