// ringshard-kv: a Redis-protocol (RESP2) key-value server on shared-nothing shards.
//
//   ringshard-kv [--host 127.0.0.1] [--port 0] [--shards N] [--policy round-robin|least-connections|reuse-port]
//                [--max-bulk BYTES] [--max-array N] [--max-query BYTES] [--max-pending N]
//                [--sweep-interval MS] [--buffers N]
//
// Each key is owned by one shard, chosen by a hash of the key; each shard has
// one Store actor holding its keys. A client's connection lives on the shard
// the listener gave it and runs each command where its keys live: at once
// when that is its own shard, else through one ask per shard per batch of
// pipelined commands. Replies leave in request order (samples/kv/server.hpp
// says how). Commands: PING ECHO GET SET (EX PX NX XX KEEPTTL) DEL EXISTS
// INCR INCRBY DECR DECRBY MGET MSET DBSIZE EXPIRE PEXPIRE (NX XX GT LT) TTL
// PTTL FLUSHALL, what redis-cli and redis-benchmark send on connect (COMMAND,
// CLIENT SETNAME/GETNAME/ID/SETINFO, CONFIG GET, HELLO [2], INFO, SELECT 0),
// QUIT, and SHARDOF key (the shard that owns a key).
//
//   --max-bulk      the longest argument (512M, as Redis' proto-max-bulk-len)
//   --max-array     the most arguments in one request (1048576)
//   --max-query     the most bytes one connection may have received and not
//                   yet run (1G, as Redis' client-query-buffer-limit)
//   --max-pending   replies owed by other shards per connection before it
//                   stops reading (256)
//   --sweep-interval  how often each shard deletes expired keys it has not
//                   seen (100 ms; 0: only when they are accessed)
//   --buffers       receive buffers per shard (4096 of 4 KiB)
//
// The first line on stdout is `listening on HOST:PORT`; SIGINT/SIGTERM stop
// it cleanly (exit status 0).
#include <sys/random.h>

#include <cstdio>
#include <cstring>
#include <latch>
#include <memory>
#include <stdexcept>
#include <string>

#include "common/cli.hpp"
#include "kv/server.hpp"

using namespace ringshard;

namespace {

std::uint64_t random_seed() {
  std::uint64_t seed = 0;
  if (::getrandom(&seed, sizeof seed, 0) != static_cast<ssize_t>(sizeof seed)) {
    seed = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  }
  return seed;
}

}  // namespace

int main(int argc, char** argv) {
  samples::CommandLine app("ringshard-kv: a Redis-protocol (RESP2) key-value server on shared-nothing shards",
                           "ringshard-kv");
  samples::ServerFlags flags;
  flags.add_to(app, {});
  kv::ServerOptions server;
  std::size_t max_query = std::size_t{1} << 30;
  app.size("--max-bulk", server.limits.max_bulk, "the longest argument (bytes, K/M/G)");
  app.size("--max-array", server.limits.max_array, "the most arguments in one request");
  app.size("--max-query", max_query, "bytes received and not yet run per connection (at least 64K)");
  app.size("--max-pending", server.max_pending, "replies owed by other shards per connection (at least 1)");
  app.millis("--sweep-interval", server.sweep_interval, "expired keys deleted this often (0: on access only)");
  app.parse_or_exit(argc, argv);
  if (server.max_pending == 0) app.bad_argument("--max-pending: must be at least 1");
  if (max_query < server.limits.max_inline) app.bad_argument("--max-query: must be at least 64K");
  net::ListenOptions listen;
  listen.address = flags.address(app);
  listen.policy = flags.policy;
  flags.configure(listen);
  listen.connection.max_input_bytes = max_query;
  try {
    RuntimeOptions options;
    flags.configure(options);
    Runtime runtime(options);
    runtime.start();
    auto cluster = std::make_shared<kv::Cluster>();
    cluster->seed = random_seed();
    cluster->options = server;
    for (unsigned s = 0; s < runtime.shard_count(); ++s) {
      cluster->stores.push_back(actors::spawn<kv::Store>(runtime, s, cluster->seed, server));
    }
    // Every store is installed before the first client arrives (each shard
    // runs this thread's tasks in the order they were posted).
    std::latch stores_ready(runtime.shard_count());
    for (unsigned s = 0; s < runtime.shard_count(); ++s) runtime.post(s, [&stores_ready] { stores_ready.count_down(); });
    stores_ready.wait();
    auto listener = net::listen<kv::Client>(runtime, listen, kv::ClusterPtr(cluster));
    flags.run(app, runtime, listener);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ringshard-kv: %s\n", e.what());
    return 1;
  }
}
