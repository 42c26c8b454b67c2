// ringshard-kv's actors: one Store per shard (the keys whose hash it owns)
// and one Client connection per client.
//
// A connection parses each request (kv/resp.hpp) and runs it where its keys
// live. A command whose keys all belong to the connection's own shard runs
// at once on that shard's Db, inside on_input, and its reply is appended to
// the bytes going out. Commands for other shards are gathered per shard
// while the received bytes are parsed, and each shard gets them as one
// Batch (one ask, answered with all their replies). MGET, MSET, DEL and
// EXISTS are split by owner and their parts reassembled (a Gather); DBSIZE
// and FLUSHALL go to every shard.
//
// Replies leave in request order. Replies produced while no earlier reply is
// owed go straight into the send; once a reply is owed by another shard,
// later ones take their place through the connection's ReplyQueue (a run of
// local replies shares one slot).
//
// Flow control: at most `max_pending` reply slots are open (then reading
// pauses until replies leave), and parsing stops and reading pauses while
// more than the connection's high watermark is unsent or waits in reply
// slots (it resumes once that drains), so a client that pipelines and never
// reads holds a bounded amount of memory. A malformed request is answered
// with `-ERR Protocol error: ...` after the replies owed before it, and the
// connection is closed (lingering, so the error is read before the close).
//
// Up to kWindow pipelined requests are parsed before any of them runs, and
// the table slots, then the items, of their keys are prefetched: the lookups
// of a batch then wait for their cache misses together.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kv/db.hpp"
#include "kv/resp.hpp"
#include "ringshard/net/listener.hpp"
#include "ringshard/net/reply_queue.hpp"

namespace kv {

struct ServerOptions {
  resp::Limits limits{};
  /// Reply slots open per connection (replies owed by other shards).
  std::size_t max_pending = 256;
  /// How often each shard samples its expiring keys (0: no active expiry).
  std::chrono::milliseconds sweep_interval{100};
  /// Time the active expiry may take per sweep.
  Millis sweep_budget = 1;
};

/// Commands for one shard, encoded: per command, the command byte, the
/// argument count and each argument (a 4-byte length, then its bytes). The
/// answer holds each reply in order (a 4-byte length, then the RESP bytes).
struct Batch {
  using Response = std::string;
  std::string ops;
};
struct Sweep {};

class Store : public ringshard::actors::Actor<Store> {
 public:
  Store(std::uint64_t seed, const ServerOptions& options) : db(seed), options_(options), seed_(seed) {}
  Db db;

  void on_start() override;
  std::string on_message(const Batch& batch);
  void on_message(const Sweep&);

 protected:
  // A failure (an allocation that failed) leaves the keyspace consistent:
  // the store goes on serving; the asker is told target_gone.
  void on_failure(std::exception_ptr) override {}

 private:
  struct Op {
    Cmd cmd;
    std::uint32_t first;  // its arguments in argv_
    std::uint32_t count;
    std::uint64_t hash;   // of its key (one-key commands), else 0
  };
  ServerOptions options_;
  std::uint64_t seed_;
  std::vector<Op> ops_;
  std::vector<std::string_view> argv_;
};

/// What every connection knows: the stores, the hash seed, the options.
struct Cluster {
  std::vector<ringshard::actors::ActorRef<Store>> stores;
  std::uint64_t seed = 0;
  ServerOptions options{};
  [[nodiscard]] unsigned shards() const noexcept { return static_cast<unsigned>(stores.size()); }
  [[nodiscard]] unsigned owner(std::string_view key) const noexcept {
    return stores.size() == 1 ? 0 : shard_of(hash_key(key, seed), shards());
  }
};
using ClusterPtr = std::shared_ptr<const Cluster>;

/// Appends one command to a Batch's ops.
void append_op(std::string& ops, Cmd cmd, std::span<const std::string_view> argv);

struct Gather;

class Client : public ringshard::net::Connection<Client> {
 public:
  explicit Client(ClusterPtr cluster);
  ~Client() override;

  std::size_t on_input(std::span<const std::byte> bytes) override;
  void on_drain() override;

 private:
  struct Sink {  // where one remote reply goes
    ringshard::net::ReplySlot slot;
    std::shared_ptr<Gather> gather;  // or a part of a split command
    std::uint32_t part = 0;
  };
  struct Outgoing {  // the commands for one shard, not sent yet
    std::string ops;
    std::vector<Sink> sinks;
  };

  // A request parsed and not run yet (see on_input).
  struct Parsed {
    std::size_t end;           // input offset after it
    std::uint32_t first;       // its arguments in args_
    std::uint32_t count;
    const CommandInfo* info;   // null: an empty request, nothing to run
    std::uint64_t hash;        // of its key, for a one-key command
    unsigned owner;            // the shard owning that key
  };
  static constexpr std::size_t kWindow = 16;  // requests parsed ahead, for prefetching

  void dispatch(const Parsed& p, std::span<const std::string_view> argv);
  void run_local(Cmd cmd, std::span<const std::string_view> argv);
  void split(const CommandInfo& c, std::span<const std::string_view> argv);
  void connection_command(Cmd cmd, std::span<const std::string_view> argv);
  void remote(unsigned shard, Cmd cmd, std::span<const std::string_view> argv, Sink sink);
  void answered(ringshard::actors::AskResult<std::string>& result, std::vector<Sink>& sinks);

  // The string the next reply is appended to, in its place in the order.
  std::string& reply_buffer();
  ringshard::net::ReplySlot take_slot();
  void flush_out();
  void close_group();
  void finish_batch();
  // Too much output unsent or held in slots (more than `high` bytes)?
  [[nodiscard]] bool congested(std::size_t high) const noexcept;
  void maybe_resume();
  void maybe_close();
  // How many commands may wait on other shards at once: the connection's
  // high watermark over the average size of their replies so far (at least
  // 4, at most max_pending).
  [[nodiscard]] std::size_t remote_limit() const noexcept;

  ClusterPtr cluster_;
  ringshard::net::ReplyQueue replies_;
  resp::RequestParser parser_;
  std::vector<Parsed> window_;
  std::vector<std::string_view> args_;
  Store* local_ = nullptr;  // this shard's store, looked up per batch
  unsigned here_ = 0;
  std::string out_;    // replies that go out with the next send
  std::string group_;  // replies that wait for group_slot_'s turn
  ringshard::net::ReplySlot group_slot_;
  std::vector<Outgoing> outgoing_;  // [shard]
  bool have_outgoing_ = false;
  bool closing_ = false;        // QUIT or a protocol error: close once the replies are out
  bool close_started_ = false;
  bool output_paused_ = false;  // reading paused while too much is unsent
  // Bytes of replies put into slots since none was open (an upper bound of
  // what waits in the ReplyQueue for an earlier reply).
  std::size_t held_ = 0;
  // Commands sent (or about to be) to other shards and not answered yet.
  // Their replies' size is unknown until they come: a client that pipelines
  // MGETs of large values and never reads would otherwise have max_pending
  // of them owed at once (hundreds of MB), so their number is bounded by
  // what their replies have been weighing.
  std::size_t remote_waiting_ = 0;
  std::size_t remote_reply_avg_ = 1 << 20;  // bytes; until replies come, each is counted at 1 MiB
  bool remote_paused_ = false;  // reading paused while remote_limit() commands wait
  std::string name_;            // CLIENT SETNAME
  std::uint64_t id_;
  // Scratch for split commands.
  std::vector<unsigned> owners_;
  std::vector<std::string_view> sub_;
  std::string scratch_;
};

}  // namespace kv
