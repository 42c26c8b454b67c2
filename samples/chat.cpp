// ringshard-chat: line-based chat across shards.
//
//   ringshard-chat [--host 127.0.0.1] [--port 0] [--shards N] [--policy round-robin|least-connections|reuse-port]
//                  [--buffers 4096] [--max-output BYTES] [--stall-timeout MS]
//
// Every line a client sends reaches every other client, whichever shard it
// is on. Each shard has a Room actor that knows the connections on its shard;
// a line goes to the Room of every shard, and each Room hands it to its own
// connections. The first line on stdout is `listening on HOST:PORT`.
//
// Memory stays bounded, whatever the clients do:
//
// - Lines travel as one SharedBuffer per batch (the complete lines of one
//   receive, up to kMaxBatch), shared by every recipient on every shard: a
//   line is in memory once, whatever the fan-out.
// - Flow control. A sender has at most kWindow bytes (each batch counted
//   with kBatchOverhead more) per Room handed over and not acknowledged;
//   beyond that it stops reading (pause_reading) until Acks bring it back
//   under half of that. A Room acknowledges a batch once its members have
//   queued it (a Settle message behind their Hears in the run queue), but
//   holds its Acks while any of its members is congested: more than a
//   quarter of --max-output unsent (the connection's high watermark), until
//   its output drains to a sixteenth (on_drain). So the senders go at the
//   pace of the slowest reader that keeps up.
// - Slow consumers are disconnected; no line is dropped. One congestion of
//   a member holds the senders back for at most --stall-timeout (500 ms).
//   A member that has not drained by then no longer holds them back (until
//   it drains and congests again). If its unsent output would pass
//   --max-output (4 MiB), it is aborted (one log line, "slow consumer").
//   So a client that does not read stalls the room for 500 ms at most and
//   holds 4 MiB at most, and every other client gets every line, in order.
//   Clients must read while they write: one that waits for its own writes
//   to finish before reading is such a slow consumer.
// - Memory goes back after load. When the last client of a shard has left
//   (and 200 ms later still none is there), its Room gives back the shard's
//   pooled send memory and receive-ring pages (NetShard::release_idle_memory)
//   and asks malloc to return free memory of every arena (malloc_trim).
//
// A line longer than 64 KiB (no '\n' within 64 KiB) aborts its connection.
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "ringshard/framework/log.hpp"
#include "ringshard/net/listener.hpp"

using namespace ringshard;
using actors::ActorRef;

namespace {

constexpr std::size_t kMaxLine = 64 * 1024;
constexpr std::size_t kMaxBatch = 16 * 1024;     // lines handed on at once (a longer line goes alone)
constexpr std::size_t kWindow = 32 * 1024;       // per sender and Room, unacknowledged
constexpr std::size_t kBatchOverhead = 256;      // what a batch costs besides its bytes
constexpr std::size_t kSharedFrom = 512;         // smaller batches are copied into the send queue
constexpr auto kTrimDelay = std::chrono::milliseconds(200);

struct Limits {
  std::size_t max_output = 4 << 20;                 // unsent bytes of one connection
  std::chrono::milliseconds stall_timeout{500};     // how long one congestion may hold senders back
};

struct Chat;

struct Join {
  ActorRef<Chat> who;
};
struct Leave {
  ActorRef<Chat> who;
};
struct Say {
  ActorRef<Chat> from;
  net::SharedBuffer lines;  // complete lines, each with its '\n'
  std::size_t charge;       // what the sender counts against its window
};
struct Hear {
  net::SharedBuffer lines;
};
struct Settle {
  ActorRef<Chat> from;
  std::size_t charge;
};
struct Ack {
  std::size_t charge;
};
struct Congested {  // a member holds the senders back...
  ActorRef<Chat> who;
};
struct Released {   // ...or no longer does
  ActorRef<Chat> who;
};
struct Trim {
  std::uint64_t generation;
};
struct StallCheck {
  std::uint64_t congestion;
};

struct Room : actors::Actor<Room> {
  std::vector<ActorRef<Chat>> members;
  std::vector<ActorRef<Chat>> holding;                        // congested members
  std::vector<std::pair<ActorRef<Chat>, std::size_t>> held;  // Acks held back meanwhile
  std::uint64_t trim_generation = 0;

  void on_message(const Join& j) { members.push_back(j.who); }
  void on_message(const Leave& l) {
    std::erase(members, l.who);
    release(l.who);
    if (members.empty()) after(kTrimDelay, Trim{++trim_generation});
  }
  void on_message(const Say& s) {
    for (const auto& m : members)
      if (m != s.from) actors::send(m, Hear{s.lines});
    // Through the run queue, behind the Hears: settled once every member
    // has queued the lines (and said whether it is congested now).
    actors::send(self(), Settle{s.from, s.charge});
  }
  void on_message(const Settle& s) {
    if (holding.empty()) {
      actors::send(s.from, Ack{s.charge});
    } else {
      held.emplace_back(s.from, s.charge);
    }
  }
  void on_message(const Congested& c) {
    if (std::find(holding.begin(), holding.end(), c.who) == holding.end()) holding.push_back(c.who);
  }
  void on_message(const Released& r) { release(r.who); }
  void on_message(const Trim& t) {
    if (t.generation != trim_generation || !members.empty()) return;
    std::vector<std::pair<ActorRef<Chat>, std::size_t>>().swap(held);
    std::vector<ActorRef<Chat>>().swap(holding);
    std::vector<ActorRef<Chat>>().swap(members);
    const std::size_t pooled = net::NetShard::of(shard()).release_idle_memory();
    ::malloc_trim(0);
    RINGSHARD_LOG_DEBUG("chat: shard idle, {} bytes of pooled memory given back", pooled);
  }

  void release(const ActorRef<Chat>& who) {
    std::erase(holding, who);
    if (!holding.empty()) return;
    for (const auto& [to, charge] : held) actors::send(to, Ack{charge});
    held.clear();
  }
};

using Rooms = std::shared_ptr<const std::vector<ActorRef<Room>>>;

struct Chat : net::Connection<Chat> {
  Rooms rooms;
  Limits limits;
  // As a sender: bytes charged to the Rooms and not acknowledged yet.
  std::size_t unacked = 0;
  bool paused = false;
  bool peer_done = false;  // the peer shut down its sending side
  // As a recipient: a congestion lasts from above the high watermark of
  // unsent bytes until on_drain (down to the low one).
  bool congested = false;
  bool holding = false;            // the Room holds the senders back for us
  std::uint64_t congestion = 0;    // which congestion a StallCheck is about

  Chat(Rooms r, Limits l) : rooms(std::move(r)), limits(l) {}
  ActorRef<Room> my_room() const { return (*rooms)[shard().id()]; }

  void on_open() override { actors::send(my_room(), Join{self()}); }
  void on_close(net::CloseReason) override { actors::send(my_room(), Leave{self()}); }

  // Framed input: whole lines, at most about kMaxBatch bytes per batch; what
  // is not consumed stays with the connection (also while reading is paused).
  std::size_t on_input(std::span<const std::byte> bytes) override {
    const auto* data = reinterpret_cast<const char*>(bytes.data());
    const auto* first = static_cast<const char*>(std::memchr(data, '\n', std::min(bytes.size(), kMaxLine + 1)));
    if (first == nullptr) {
      if (bytes.size() > kMaxLine) {
        abort();  // a "line" without end: not a chat client
      } else if (peer_done) {
        close();  // the peer's last line has no end: dropped
      }
      return 0;
    }
    const std::size_t first_end = static_cast<std::size_t>(first - data) + 1;
    const std::size_t span = std::max(first_end, std::min(bytes.size(), kMaxBatch));
    const auto* last = static_cast<const char*>(memrchr(data, '\n', span));
    const std::size_t used = static_cast<std::size_t>(last - data) + 1;
    const auto batch = net::SharedBuffer::copy_of(bytes.first(used));
    const std::size_t charge = used + kBatchOverhead;
    for (const auto& room : *rooms) actors::send(room, Say{self(), batch, charge});
    unacked += charge * rooms->size();
    if (!paused && unacked > kWindow * rooms->size()) {
      paused = true;
      pause_reading();  // the rest waits, unread, until the Rooms catch up
    }
    if (peer_done && used == bytes.size()) close();
    return used;
  }
  // The peer sent everything it will send. Lines held back by the pause
  // still go out first (the default, close_when_done(), would close as soon
  // as the pause lifts, before the drain of what is held back).
  void on_peer_shutdown() override {
    peer_done = true;
    if (!paused || buffered_input() == 0) close();
  }
  void on_message(const Ack& a) {
    unacked -= a.charge;
    if (paused && unacked <= kWindow * rooms->size() / 2) {
      paused = false;
      resume_reading();
    }
  }

  void on_message(const Hear& h) {
    if (!is_open()) return;
    const std::size_t n = h.lines.size();
    if (pending_send_bytes() + n > limits.max_output) {
      RINGSHARD_LOG_INFO("chat: {} dropped: slow consumer ({} bytes unsent, limit {})", peer().to_string(),
                         pending_send_bytes(), limits.max_output);
      abort();
      return;
    }
    if (n < kSharedFrom) {
      send(std::as_bytes(h.lines.bytes()));  // a copy: joins the last queued string
    } else {
      send(h.lines);  // shared, no copy
    }
    if (!congested && pending_send_bytes() > options().high_watermark) {
      congested = true;
      hold(true);
      after(limits.stall_timeout, StallCheck{++congestion});
    }
  }
  void on_drain() override {
    congested = false;
    hold(false);
  }
  void on_message(const StallCheck& c) {
    // Still not drained: too slow a reader to set everyone's pace. The
    // senders go on; --max-output decides whether it stays.
    if (c.congestion != congestion || !congested || !holding) return;
    RINGSHARD_LOG_DEBUG("chat: {} still congested after {} ms, {} bytes unsent", peer().to_string(),
                        limits.stall_timeout.count(), pending_send_bytes());
    hold(false);
  }
  void hold(bool on) {
    if (holding == on) return;
    holding = on;
    if (on) {
      actors::send(my_room(), Congested{self()});
    } else {
      actors::send(my_room(), Released{self()});
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  samples::CommandLine app("ringshard-chat: line-based chat across shards", "ringshard-chat");
  samples::ServerFlags flags;
  flags.add_to(app, {});
  Limits limits;
  app.size("--max-output", limits.max_output, "a client with more unsent is dropped (bytes, K/M/G; at least 64K)");
  app.millis("--stall-timeout", limits.stall_timeout, "one congested client holds the senders back at most this");
  app.parse_or_exit(argc, argv);
  if (limits.max_output < 64 * 1024) app.bad_argument("--max-output: must be at least 64K");
  net::ListenOptions listen;
  listen.address = flags.address(app);
  listen.policy = flags.policy;
  flags.configure(listen);
  // Congested above a quarter of the limit, drained at a sixteenth.
  listen.connection.high_watermark = limits.max_output / 4;
  listen.connection.low_watermark = limits.max_output / 16;
  try {
    // The Rooms call malloc_trim on the shard threads. The process's first
    // call must come from this (the main) thread: when glibc's allocator is
    // not the one in use (a sanitizer's, or a preloaded malloc), malloc_trim
    // initialises it and attaches the calling thread to its main arena, and
    // glibc aborts when a second thread attached that way exits.
    ::malloc_trim(0);
    RuntimeOptions options;
    flags.configure(options);
    Runtime runtime(options);
    runtime.start();
    auto rooms = std::make_shared<std::vector<ActorRef<Room>>>();
    for (unsigned s = 0; s < runtime.shard_count(); ++s) rooms->push_back(actors::spawn<Room>(runtime, s));
    auto listener = net::listen<Chat>(runtime, listen, Rooms(rooms), limits);
    flags.run(app, runtime, listener);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ringshard-chat: %s\n", e.what());
    return 1;
  }
}
