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
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include "ringshard/net/stream.hpp"

namespace {

ringshard::Task<> echo(ringshard::net::Stream s) {
  for (;;) {
    auto r = co_await s.read();
    if (!r) co_return;  // the end of the stream, or an error
    if (auto error = co_await s.write(r.bytes)) co_return;
  }
}

[[noreturn]] void usage(const char* error) {
  std::fprintf(stderr,
               "%s\nusage: ringshard-echo-co [--host 127.0.0.1] [--port 0] [--shards N] "
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
    auto listener = ringshard::net::serve(runtime, listen, echo);
    std::printf("listening on %s\n", listener.address().to_string().c_str());
    std::fflush(stdout);
    runtime.run();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ringshard-echo-co: %s\n", e.what());
    return 1;
  }
}
