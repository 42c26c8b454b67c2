// ringshard-echo-plain: a TCP echo server written against the uring layer
// alone: one thread, one Ring, no reactor and no actors. It shows the shape
// every io_uring server has underneath: a multishot accept, a multishot recv
// per connection that takes its memory from a provided-buffer ring, exactly
// one send in flight per connection, and a loop that enters the kernel once
// per turn and then drains every completion.
//
//   ringshard-echo-plain [--host 127.0.0.1] [--port 0] [--buffers 4096]
//                        [--no-direct] [--fixed-files N] [--no-bundle] [--no-incremental]
//                        [--send-zc BYTES | --send-bundle] [--napi-busy-poll-us N]
//
// The first line on stdout is `listening on HOST:PORT` (port 0 picks a free
// port). --buffers sets the receive memory the kernel may fill, in 4 KiB
// units (a power of two; tests use a tiny count to run the ring dry). SIGINT
// or SIGTERM closes every connection and exits with status 0.
//
// Three newer kernel features are used when the kernel has them; each is
// probed at start, a line on stderr says when one is unavailable, and each can
// be switched off (the other code path is the fallback):
//   direct descriptors (--no-direct): a sparse fixed file table of
//     --fixed-files slots (default: RLIMIT_NOFILE, at most 65536); accepted
//     sockets go straight into it (multishot accept with
//     IORING_FILE_INDEX_ALLOC) and recv, send and close use the slot
//     (IOSQE_FIXED_FILE), which saves the file lookup and reference count of
//     every operation. When the table is full, accepts switch to plain
//     descriptors until it has drained to three quarters; the exit line counts
//     those plain accepts, and connections the kernel had to drop at a full
//     table (a burst that raced the switch: the kernel closes them).
//     TCP_NODELAY is set on the listening socket: accepted sockets inherit it.
//   receive bundles (--no-bundle, 6.10+): one recv completion may cover
//     several provided buffers, in ring order from the one it names.
//   incremental buffers (--no-incremental, 6.12+): the buffer ring holds 64 KiB
//     buffers (--buffers / 16 of them) that the kernel fills in parts, one
//     receive after another, instead of a whole 4 KiB buffer per receive.
// Three more are off unless asked for:
//   zero-copy sends (--send-zc BYTES): a send of at least BYTES goes as
//     IORING_OP_SEND_ZC, which pins the pages instead of copying them into the
//     socket. Its completion carries IORING_CQE_F_MORE and a notification CQE
//     (IORING_CQE_F_NOTIF) follows when the kernel lets go of the pages; until
//     then the connection neither reuses nor frees its `sending` buffer, and
//     is not closed. The exit line counts the notifications and how many
//     reported IORING_NOTIF_USAGE_ZC_COPIED (the kernel copied after all:
//     always on loopback). On stop, connections whose peers do not take their
//     bytes can hold notifications back; after 1 s the process exits without
//     freeing the buffers (the kernel keeps the pages it pinned).
//   send bundles (--send-bundle, 6.10+): received bytes are not copied; they
//     wait in the receive buffers the kernel put them in, and each connection
//     has its own provided-buffer ring for sends (group 1 + its slot, 256
//     entries, one page, registered the first time the slot sends a bundle
//     and kept for the slot's next connections). The received parts go into that ring
//     in order and one IORING_OP_SEND with IOSQE_BUFFER_SELECT and
//     IORING_RECVSEND_BUNDLE sends as many of them as it finds (with
//     MSG_WAITALL, so that a bundle waits for room in the socket); a receive
//     buffer goes back to the shared receive ring when its last part is
//     sent. Less than 2 KiB waiting is copied and sent plainly (cheaper than
//     selecting buffers for it). When the receive ring runs low (1/8 of its
//     buffers free, at least one), received bytes are copied instead, so
//     that connections whose peers read slowly cannot hold every buffer. A
//     bundle that had to wait can end short with the send ring's head moved
//     past buffers it did not send (6.18, when the peer's FIN came
//     meanwhile); the count it reports is right, so the connection copies
//     its unsent parts, in order, into its plain queue and copies from then
//     on. The exit line counts the bundled sends, the parts they took, the
//     receives copied at a low ring and the connections that fell back.
//   NAPI busy polling (--napi-busy-poll-us N): IORING_REGISTER_NAPI, so that
//     waiting in io_uring_enter busy-polls the network device's queues for up
//     to N us first; unregistered at exit. Loopback has no NAPI instance, so
//     it changes nothing there.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "common/cli.hpp"
#include "ringshard/framework/uring.hpp"

namespace {

using namespace ringshard;
using namespace std::chrono_literals;

constexpr unsigned kSqEntries = 1024;
// Without an incremental ring every recv completion consumes at least one
// provided buffer, so a turn can bring as many recv CQEs as there are buffers
// (with one, as many as connections with data), plus the sends; size the CQ
// so that it rarely overflows (with IORING_FEAT_NODROP an overflow is slow,
// not lossy).
constexpr unsigned kCqEntries = 8192;
constexpr unsigned kBufferSize = 4096;  // one buffer per receive (no incremental ring)
// An incremental ring's buffers are filled in parts by consecutive receives of
// any connections; the same memory as --buffers x 4 KiB.
constexpr unsigned kIncrementalBufferSize = 65536;
constexpr unsigned kDefaultFixedFiles = 65536;
constexpr std::uint16_t kBufferGroup = 0;
// Send bundles: each connection's send ring is group kSendGroupBase + slot.
constexpr std::uint16_t kSendGroupBase = 1;
constexpr unsigned kSendRingEntries = 256;  // 4 KiB: one page
// Fewer bytes than this waiting to go out are copied and sent plainly even
// with send bundles: a bundle's buffer selection costs more than copying a
// few hundred bytes (measured: 128 B echo 0.92-0.94x per core at 500
// connections with every send a bundle, 1 KiB lockstep 0.97x).
constexpr std::size_t kBundleFrom = 2048;
// A client that sends but does not read makes its queue grow. Above the high
// mark the connection stops receiving (its multishot recv is cancelled), below
// the low mark it receives again, so one slow reader costs bounded memory.
constexpr std::size_t kHighWater = std::size_t{1} << 20;
constexpr std::size_t kLowWater = std::size_t{256} << 10;
constexpr int kListenBacklog = 4096;  // the kernel caps it at net.core.somaxconn

// user_data of every SQE: what the operation is, and for connection operations
// which slot and which generation of that slot. A slot is reused after its
// connection closes; the generation makes a late CQE (or a late cancel) of the
// previous occupant unable to touch the new one.
// For accept and close, the slot field says whether a direct descriptor is
// involved (1) or a plain one (0).
enum class Op : std::uint8_t { accept, accept_resume, signal, recv, send, cancel, close, stop_deadline };
enum Kind : std::uint32_t { plain = 0, direct = 1 };

constexpr std::uint64_t tag(Op op, std::uint32_t slot = 0, std::uint32_t generation = 0) {
  return (std::uint64_t{generation} << 32) | (std::uint64_t{slot} << 8) | static_cast<std::uint8_t>(op);
}
constexpr Op op_of(std::uint64_t data) { return static_cast<Op>(data & 0xff); }
constexpr std::uint32_t slot_of(std::uint64_t data) { return static_cast<std::uint32_t>(data >> 8) & 0xffffff; }
constexpr std::uint32_t generation_of(std::uint64_t data) { return static_cast<std::uint32_t>(data >> 32); }

// Send bundles: a connection's send ring, kept for its slot; `seq` counts
// the entries ever added, so the kernel's head and our tail stay in step
// from one connection of the slot to the next.
struct SendRing {
  std::unique_ptr<uring::BufferRing> ring;
  unsigned seq = 0;  // ring position (and send-ring bid, modulo its size) of the first unsent part
};

// Received bytes waiting to be sent back with a send bundle: inside receive
// buffer `bid`, or in `owned` when copied out of a low ring.
struct Part {
  const std::byte* data = nullptr;
  std::uint32_t len = 0;
  std::uint16_t bid = 0;  // unused when `owned`
  std::unique_ptr<std::byte[]> owned;
};

// Parts in arrival order. Not a std::deque: an empty one allocates (its map
// and a first block, about 600 bytes), and every idle connection has one.
class PartQueue {
 public:
  [[nodiscard]] bool empty() const noexcept { return head_ == items_.size(); }
  [[nodiscard]] std::size_t size() const noexcept { return items_.size() - head_; }
  Part& front() noexcept { return items_[head_]; }
  Part& operator[](std::size_t i) noexcept { return items_[head_ + i]; }
  void push_back(Part&& part) { items_.push_back(std::move(part)); }
  void pop_front() noexcept {
    items_[head_] = Part{};
    if (++head_ == items_.size()) {
      clear();
    } else if (head_ >= 64 && head_ * 2 >= items_.size()) {  // a queue that never empties stays bounded
      items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }
  void clear() noexcept {
    items_.clear();
    head_ = 0;
  }
  template <class F>
  void for_each(F&& f) const {
    for (std::size_t i = head_; i < items_.size(); ++i) f(items_[i]);
  }

 private:
  std::vector<Part> items_;
  std::size_t head_ = 0;
};

struct Connection {
  int fd = -1;                  // a descriptor, or a slot of the fixed file table when `fixed`
  bool fixed = false;
  std::uint32_t slot = 0;
  std::uint32_t generation = 0;
  bool recv_armed = false;      // a multishot recv is in the kernel
  bool recv_cancelled = false;  // ... and a cancel for it has been sent
  bool send_in_flight = false;
  bool paused = false;          // above the high mark: not receiving
  bool eof = false;             // the peer sent everything it will send
  bool failed = false;          // an error: drop what is unsent and close
  bool dirty = false;           // received this turn: settled when the turn's CQEs are done
  // Zero-copy sends whose notification has not arrived (signed: it cannot
  // come first, but the count stays right if it did). While it is not zero,
  // `sending` is not cleared, swapped or freed, and the connection stays open.
  int zc_notifs = 0;
  // Two byte queues, because the kernel reads a send's memory until the send
  // completes (a send that finds the socket full is parked and retried): the
  // bytes of the send in flight stay put in `sending`, bytes that arrive
  // meanwhile go to `queued`. When `sending` is done the two swap, keeping
  // both capacities, so a steady connection stops allocating.
  std::vector<std::byte> sending;
  std::size_t sent = 0;  // bytes of `sending` the kernel has taken
  std::vector<std::byte> queued;
  // Send bundles: parts in arrival order; the first `in_ring` are in the
  // send ring (added, not yet reported sent).
  bool bundles = false;     // --send-bundle: received bytes wait as parts (false: copied into `queued`)
  SendRing* out = nullptr;  // the slot's send ring, from the first bundle on
  bool bundle_in_flight = false;  // the send in flight is a bundle (not a plain send of copied bytes)
  PartQueue parts;
  std::size_t part_bytes = 0;
  unsigned in_ring = 0;

  [[nodiscard]] std::size_t pending() const { return sending.size() - sent + queued.size() + part_bytes; }
  [[nodiscard]] uring::File file() const {
    return fixed ? uring::File(uring::FixedFile{static_cast<unsigned>(fd)}) : uring::File(fd);
  }
};

struct Options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  unsigned buffers = 4096;  // receive memory in kBufferSize units
  bool direct = true;
  unsigned fixed_files = 0;  // 0: RLIMIT_NOFILE, at most kDefaultFixedFiles
  bool bundle = true;
  bool incremental = true;
  std::size_t send_zc = 0;        // 0: no zero-copy sends
  unsigned napi_busy_poll_us = 0;  // 0: no NAPI registration
  bool send_bundle = false;
};

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "echo-plain: %s\n", what.c_str());
  std::exit(1);
}

// The best setup the kernel accepts. SINGLE_ISSUER|DEFER_TASKRUN runs
// completion work only when this thread enters the kernel, so nothing
// interrupts the loop (6.1+); COOP_TASKRUN|TASKRUN_FLAG avoids the
// inter-processor interrupt at least (5.19+); plain setup works everywhere.
uring::Ring make_ring() {
  constexpr unsigned kChoices[] = {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
                                   IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG, 0U};
  std::string refused;
  for (const unsigned flags : kChoices) {
    uring::SetupOptions options;
    options.flags = flags;
    options.cq_entries = kCqEntries;
    try {
      uring::Ring ring(kSqEntries, options);
      std::fprintf(stderr, "echo-plain: io_uring setup flags %s%s\n",
                   flags ? uring::setup_flags_name(flags).c_str() : "none (defaults)", refused.c_str());
      return ring;
    } catch (const std::system_error& e) {
      if (flags == 0) throw;
      refused += "; refused: " + uring::setup_flags_name(flags) + " (" + e.code().message() + ")";
    }
  }
  die("unreachable");
}

class EchoServer {
 public:
  EchoServer(const Options& options, int listen_fd, int signal_fd)
      : ring_(make_ring()), listen_fd_(listen_fd), signal_fd_(signal_fd) {
    setup_direct(options);
    setup_buffers(options);
    setup_send_zc(options);
    setup_send_bundle(options);
    setup_napi(options);
    std::fprintf(stderr,
                 "echo-plain: direct descriptors %s, receive bundles %s, incremental buffers %s (%u x %u KiB), "
                 "zero-copy sends %s, send bundles %s, NAPI busy poll %s\n",
                 direct_ ? ("on (" + std::to_string(fixed_slots_) + " slots)").c_str() : "off", bundle_ ? "on" : "off",
                 incremental_ ? "on" : "off", buffer_count_, buffer_size_ / 1024,
                 zc_threshold_ ? ("on (from " + std::to_string(zc_threshold_) + " bytes)").c_str() : "off",
                 send_bundle_ ? "on" : "off",
                 napi_ ? ("on (" + std::to_string(napi_busy_poll_us_) + " us)").c_str() : "off");
  }

  // Runs until a signal arrives and every connection is closed.
  void run() {
    arm_signal_read();
    settle_accept();
    // One enter per turn submits everything the previous turn prepared and
    // waits for at least one completion; then all ready CQEs are handled and
    // the CQ head is published once.
    while (!(stopping_ && inflight_ == 0) && !abandon_) {
      const int ret = ring_.submit_and_wait(1);
      if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
        die(std::string("io_uring_enter: ") + std::strerror(-ret));
      }
      ring_.for_each_cqe([this](const io_uring_cqe& cqe) { dispatch(cqe); });
      settle_received();
      publish_buffers();
    }
    std::string zc;
    if (zc_threshold_) {
      zc = ", " + std::to_string(zc_sends_) + " zero-copy sends, " + std::to_string(zc_notifications_) +
           " notifications (" + std::to_string(zc_copied_) + " copied by the kernel)";
    }
    if (send_bundle_) {
      zc += ", " + std::to_string(bundle_sends_) + " bundled sends of " + std::to_string(bundle_parts_) +
            " parts (" + std::to_string(bundle_copies_) + " copied at a low receive ring, " +
            std::to_string(bundle_abandoned_) + " connections copying after a bundle that ended short)";
    }
    std::fprintf(stderr,
                 "echo-plain: stopped, %llu connections served, %llu accepted as plain descriptors "
                 "(fixed file table full), %llu dropped by the kernel at a full table%s\n",
                 accepted_, plain_fallbacks_, dropped_at_full_table_, zc.c_str());
    if (abandon_) {
      // Some peer has not taken bytes sent zero-copy: the kernel may still
      // read those buffers, so nothing is freed; the process ends here.
      std::fprintf(stderr, "echo-plain: %u operations (zero-copy notifications) still outstanding 1 s after the "
                   "stop; exiting without freeing their buffers\n", inflight_);
      std::fflush(stderr);
      std::_Exit(0);
    }
    if (napi_) {
      uring::abi::Napi napi{};
      const int ret = ring_.unregister_napi(napi);
      if (ret < 0) {
        std::fprintf(stderr, "echo-plain: unregistering NAPI busy poll failed: %s\n", std::strerror(-ret));
      } else {
        std::fprintf(stderr, "echo-plain: NAPI busy poll unregistered (was %u us)\n", napi.busy_poll_to);
      }
    }
  }

 private:
  // ---- features -------------------------------------------------------------------
  void setup_direct(const Options& options) {
    if (!options.direct) return;
    unsigned slots = options.fixed_files;
    if (slots == 0) {
      rlimit nofile{};
      ::getrlimit(RLIMIT_NOFILE, &nofile);
      slots = static_cast<unsigned>(std::min<rlim_t>(nofile.rlim_cur, kDefaultFixedFiles));
    }
    const int ret = ring_.register_files_sparse(slots);
    if (ret < 0) {
      std::fprintf(stderr, "echo-plain: direct descriptors unavailable (registering %u fixed files: %s); "
                   "using plain descriptors\n", slots, std::strerror(-ret));
      return;
    }
    direct_ = true;
    fixed_slots_ = slots;
    fixed_low_ = slots - std::max(1U, slots / 4);
  }

  void setup_buffers(const Options& options) {
    if (options.bundle) {
      bundle_ = ring_.has_feature(IORING_FEAT_RECVSEND_BUNDLE);
      if (!bundle_) {
        std::fprintf(stderr, "echo-plain: receive bundles unavailable (no IORING_FEAT_RECVSEND_BUNDLE); "
                     "one buffer per receive\n");
      }
    }
    if (options.incremental) {
      const unsigned count = std::max(1U, options.buffers / (kIncrementalBufferSize / kBufferSize));
      try {
        buffers_.emplace(ring_, count, kBufferGroup, IOU_PBUF_RING_INC);
        incremental_ = true;
        buffer_size_ = kIncrementalBufferSize;
      } catch (const std::system_error& e) {
        std::fprintf(stderr, "echo-plain: incremental buffers unavailable (%s); 4 KiB buffers used whole\n",
                     e.what());
      }
    }
    if (!buffers_) {
      buffers_.emplace(ring_, options.buffers, kBufferGroup);
      buffer_size_ = kBufferSize;
    }
    buffer_count_ = buffers_->entries();
    tracked_ = bundle_ || incremental_;
    if (tracked_) ring_bids_.resize(buffer_count_);
    buffer_memory_ = std::make_unique_for_overwrite<std::byte[]>(std::size_t{buffer_count_} * buffer_size_);
    for (unsigned bid = 0; bid < buffer_count_; ++bid) give_back(static_cast<std::uint16_t>(bid));
    publish_buffers();
  }

  void setup_send_zc(const Options& options) {
    if (options.send_zc == 0) return;
    if (!ring_.probe().opcode_supported(IORING_OP_SEND_ZC)) {
      std::fprintf(stderr, "echo-plain: zero-copy sends unavailable (no IORING_OP_SEND_ZC); plain sends\n");
      return;
    }
    zc_threshold_ = options.send_zc;
  }

  void setup_send_bundle(const Options& options) {
    if (!options.send_bundle) return;
    if (!ring_.has_feature(IORING_FEAT_RECVSEND_BUNDLE)) {
      std::fprintf(stderr, "echo-plain: send bundles unavailable (no IORING_FEAT_RECVSEND_BUNDLE); "
                   "received bytes are copied and sent\n");
      return;
    }
    send_bundle_ = true;
    refs_.assign(buffer_count_, 0);
    used_up_.assign(buffer_count_, 0);
  }

  // The slot's send ring, registered on first use; nullptr when the slot is
  // beyond the 16-bit group ids or registering fails (that connection copies).
  SendRing* send_ring_for(std::uint32_t slot) {
    if (slot >= 0xffffU - kSendGroupBase) return nullptr;
    if (send_rings_.size() <= slot) send_rings_.resize(slot + 1);
    SendRing& r = send_rings_[slot];
    if (!r.ring) {
      try {
        r.ring = std::make_unique<uring::BufferRing>(ring_, kSendRingEntries,
                                                     static_cast<std::uint16_t>(kSendGroupBase + slot));
        r.seq = 0;
      } catch (const std::system_error& e) {
        if (!send_ring_failed_reported_) {
          std::fprintf(stderr, "echo-plain: a send ring could not be registered (%s); that connection copies\n",
                       e.what());
          send_ring_failed_reported_ = true;
        }
        return nullptr;
      }
    }
    return &r;
  }

  void setup_napi(const Options& options) {
    if (options.napi_busy_poll_us == 0) return;
    uring::abi::Napi napi{};
    napi.busy_poll_to = options.napi_busy_poll_us;
    const int ret = ring_.register_napi(napi);
    if (ret < 0) {
      std::fprintf(stderr, "echo-plain: NAPI busy poll unavailable (IORING_REGISTER_NAPI: %s)\n",
                   std::strerror(-ret));
      return;
    }
    napi_ = true;
    napi_busy_poll_us_ = options.napi_busy_poll_us;
  }

  void dispatch(const io_uring_cqe& cqe) {
    switch (op_of(cqe.user_data)) {
      case Op::accept: on_accept(cqe); break;
      case Op::accept_resume:
        --inflight_;
        accept_paused_ = false;
        settle_accept();
        break;
      case Op::signal: on_signal(cqe); break;
      case Op::stop_deadline:  // not counted in inflight_; the ring's teardown cancels it
        if (cqe.res == -ETIME) abandon_ = true;
        break;
      case Op::recv: on_recv(connection(cqe), cqe); break;
      case Op::send: on_send(connection(cqe), cqe); break;
      case Op::cancel:  // -ENOENT / -EALREADY only mean the target had finished
        --inflight_;
        break;
      case Op::close:
        --inflight_;
        if (cqe.res < 0) std::fprintf(stderr, "echo-plain: close: %s\n", std::strerror(-cqe.res));
        if (slot_of(cqe.user_data) == Kind::direct) {
          --fixed_used_;
          settle_accept();  // a freed slot may take direct accepts again
        }
        break;
    }
  }

  // ---- accepting -------------------------------------------------------------
  // At most one multishot accept of each kind is wanted: a direct one while the
  // fixed file table has room, a plain one otherwise. Switching arms the new
  // kind at once and cancels the old one.
  void settle_accept() {
    if (stopping_ || accept_paused_) return;
    if (table_full_ && fixed_used_ <= fixed_low_) table_full_ = false;
    const Kind want = direct_ && !table_full_ ? Kind::direct : Kind::plain;
    const Kind other = want == Kind::direct ? Kind::plain : Kind::direct;
    if (!accept_armed_[want]) arm_accept(want);
    if (accept_armed_[other] && !accept_cancelled_[other]) {
      io_uring_sqe* sqe = next_sqe();
      uring::prep_cancel64(sqe, tag(Op::accept, other), 0);
      uring::sqe_set_data64(sqe, tag(Op::cancel));
      accept_cancelled_[other] = true;
      ++inflight_;
    }
  }

  void arm_accept(Kind kind) {
    io_uring_sqe* sqe = next_sqe();
    if (kind == Kind::direct) {
      // No SOCK_CLOEXEC: a fixed file has no descriptor to close on exec (the kernel refuses it).
      uring::prep_multishot_accept_direct(sqe, listen_fd_, nullptr, nullptr, 0);
    } else {
      uring::prep_multishot_accept(sqe, listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    }
    uring::sqe_set_data64(sqe, tag(Op::accept, kind));
    accept_armed_[kind] = true;
    accept_cancelled_[kind] = false;
    ++inflight_;
  }

  void on_accept(const io_uring_cqe& cqe) {
    const Kind kind = slot_of(cqe.user_data) == Kind::direct ? Kind::direct : Kind::plain;
    const bool more = uring::cqe_has_more(&cqe);
    if (!more) {
      --inflight_;
      accept_armed_[kind] = false;
    }
    if (cqe.res >= 0) {
      if (kind == Kind::direct) {
        if (++fixed_used_ >= fixed_slots_) note_table_full();
      } else if (direct_) {
        ++plain_fallbacks_;
      }
      open_connection(cqe.res, kind == Kind::direct);
      accept_error_reported_ = false;
    } else if (cqe.res == -ENFILE && kind == Kind::direct) {
      // No free slot: the kernel accepted the connection and had to close it.
      ++dropped_at_full_table_;
      note_table_full();
    } else if (cqe.res != -ECANCELED && !accept_error_reported_) {
      std::fprintf(stderr, "echo-plain: accept: %s; pausing accepts\n", std::strerror(-cqe.res));
      accept_error_reported_ = true;
    }
    if (more || stopping_) return;
    // The multishot accept ended. After an error (-EMFILE, -ENFILE, ...)
    // re-arming at once would fail again at once and spin the loop: wait
    // 100 ms (closing connections meanwhile frees descriptors). A full fixed
    // table is not such an error: plain accepts take over at once.
    if (cqe.res >= 0 || cqe.res == -ECANCELED || (cqe.res == -ENFILE && kind == Kind::direct)) {
      settle_accept();
    } else if (!accept_paused_) {
      accept_paused_ = true;
      io_uring_sqe* sqe = next_sqe();
      uring::prep_timeout(sqe, &accept_pause_, 0, 0);
      uring::sqe_set_data64(sqe, tag(Op::accept_resume));
      ++inflight_;
    }
  }

  void note_table_full() {
    if (!table_full_ && !table_full_reported_) {
      std::fprintf(stderr, "echo-plain: fixed file table full (%u slots): accepting plain descriptors until "
                   "%u are in use\n", fixed_slots_, fixed_low_);
      table_full_reported_ = true;
    }
    table_full_ = true;
    settle_accept();
  }

  void open_connection(int fd, bool fixed) {
    ++accepted_;
    // TCP_NODELAY comes from the listening socket (a direct descriptor has no
    // fd for setsockopt).
    std::uint32_t slot;
    if (!free_slots_.empty()) {
      slot = free_slots_.back();
      free_slots_.pop_back();
    } else {
      slot = static_cast<std::uint32_t>(connections_.size());
      connections_.emplace_back();  // a deque: references to other slots stay valid
      connections_.back().slot = slot;
    }
    Connection& c = connections_[slot];
    c.fd = fd;
    c.fixed = fixed;
    c.bundles = send_bundle_;  // its send ring is registered when a bundle first goes out
    settle(c);  // arms the recv (or closes at once when stopping)
  }

  Connection& connection(const io_uring_cqe& cqe) {
    Connection& c = connections_[slot_of(cqe.user_data)];
    if (c.generation != generation_of(cqe.user_data) || c.fd < 0) die("CQE for a closed connection");
    return c;
  }

  // ---- one connection ------------------------------------------------------------
  void on_recv(Connection& c, const io_uring_cqe& cqe) {
    if (!uring::cqe_has_more(&cqe)) {  // this recv ended; settle() re-arms it if wanted
      c.recv_armed = false;
      --inflight_;
    }
    if (uring::cqe_has_buffer(&cqe)) take_received(c, cqe);
    if (cqe.res == 0) {
      c.eof = true;
    } else if (cqe.res < 0 && cqe.res != -ECANCELED && cqe.res != -ENOBUFS) {
      // -ECANCELED is our own pause or stop; -ENOBUFS means the buffer ring ran
      // dry. The buffers handed back this turn are published before the next
      // submit, so the re-armed recv finds them.
      c.failed = true;
    }
    // Settled after the whole batch of CQEs: what several recvs brought in
    // one turn leaves in one send.
    if (!c.dirty) {
      c.dirty = true;
      received_.push_back(c.slot);
    }
  }

  // Copies the bytes out and gives the buffers back at once, so that buffers
  // never wait on a slow peer and every connection can keep receiving.
  void take_received(Connection& c, const io_uring_cqe& cqe) {
    const std::uint16_t bid = uring::cqe_buffer_id(&cqe);
    if (!tracked_) {  // one whole buffer per completion, named by the CQE
      const std::byte* data = buffer(bid);
      if (cqe.res > 0) keep(c, bid, data, static_cast<std::size_t>(cqe.res));
      used_up(bid);
      return;
    }
    // Bundles and incremental rings: the kernel takes buffers in ring order,
    // so the bytes start in the buffer at our copy of the ring's head (for an
    // incremental ring, head_offset_ bytes into it: the part earlier receives
    // filled) and go on in the next ones. Without data nothing is consumed.
    if (cqe.res <= 0) return;
    if (ring_bids_[head_ & (buffer_count_ - 1)] != bid) die("buffer ring out of step: the CQE's buffer is not at the head");
    std::size_t left = static_cast<std::size_t>(cqe.res);
    bool partial = false;
    while (left > 0) {
      const std::uint16_t b = ring_bids_[head_ & (buffer_count_ - 1)];
      const std::size_t room = buffer_size_ - head_offset_;
      const std::size_t take = std::min(left, room);
      keep(c, b, buffer(b) + head_offset_, take);
      left -= take;
      if (incremental_ && take < room) {  // the kernel goes on filling this buffer
        head_offset_ += static_cast<unsigned>(take);
        partial = true;
        break;
      }
      used_up(b);  // without an incremental ring a buffer is used up even when partly filled
      ++head_;
      head_offset_ = 0;
    }
    if (left > 0 || (incremental_ && partial != ((cqe.flags & IORING_CQE_F_BUF_MORE) != 0))) {
      die("buffer ring out of step: the CQE's byte count does not match the buffers");
    }
  }

  // Received bytes for the connection to send back: copied into its queue, or
  // with send bundles kept where they are (a copy when the receive ring is low).
  void keep(Connection& c, std::uint16_t bid, const std::byte* data, std::size_t n) {
    if (!c.bundles) {
      c.queued.insert(c.queued.end(), data, data + n);
      return;
    }
    Part part;
    part.len = static_cast<std::uint32_t>(n);
    // Copied when the ring would be low with this buffer held too: an eighth
    // of the buffers (at least one) stays free for every other connection,
    // even if every part waits on a peer that does not read.
    if (held_ + std::max(1U, buffer_count_ / 8) >= buffer_count_) {
      part.owned = std::make_unique_for_overwrite<std::byte[]>(n);
      std::memcpy(part.owned.get(), data, n);
      part.data = part.owned.get();
      ++bundle_copies_;
    } else {
      part.data = data;
      part.bid = bid;
      ++refs_[bid];
    }
    c.parts.push_back(std::move(part));
    c.part_bytes += n;
  }

  // The kernel has moved past receive buffer `bid`: back to the ring unless
  // parts of it still wait to be sent.
  void used_up(std::uint16_t bid) {
    if (send_bundle_ && refs_[bid] != 0) {
      used_up_[bid] = 1;
      ++held_;
      return;
    }
    give_back(bid);
  }

  // A part was sent (or dropped): its receive buffer may go back.
  void release(const Part& part) {
    if (part.owned) return;
    const std::uint16_t bid = part.bid;
    if (--refs_[bid] == 0 && used_up_[bid] != 0) {
      used_up_[bid] = 0;
      --held_;
      give_back(bid);
    }
  }

  void settle_received() {
    for (const std::uint32_t slot : received_) {
      Connection& c = connections_[slot];
      if (!c.dirty) continue;  // closed (and possibly reused) since
      c.dirty = false;
      if (c.fd >= 0) settle(c);
    }
    received_.clear();
  }

  void on_send(Connection& c, const io_uring_cqe& cqe) {
    if (c.bundle_in_flight) {
      on_bundle_sent(c, cqe);
      return;
    }
    if (uring::cqe_is_notif(&cqe)) {  // a zero-copy send's pages are free: `sending` may change again
      --c.zc_notifs;
      --inflight_;
      ++zc_notifications_;
      if (static_cast<std::uint32_t>(cqe.res) & IORING_NOTIF_USAGE_ZC_COPIED) ++zc_copied_;
      settle(c);
      return;
    }
    c.send_in_flight = false;
    if (uring::cqe_has_more(&cqe)) {
      ++c.zc_notifs;  // the send stays in inflight_ until its notification
    } else {
      --inflight_;
    }
    if (cqe.res < 0) {
      c.failed = true;
    } else {
      c.sent += static_cast<std::size_t>(cqe.res);  // a short send continues from here
    }
    settle(c);
  }

  // A bundled send reports what it sent, in one or more CQEs (IORING_CQE_F_MORE:
  // it goes on with buffers added since), each naming the first buffer it took.
  void on_bundle_sent(Connection& c, const io_uring_cqe& cqe) {
    const bool ended = !uring::cqe_has_more(&cqe);
    if (ended) {
      c.send_in_flight = false;
      c.bundle_in_flight = false;
      --inflight_;
    }
    if (cqe.res == -ECANCELED && ended && !stopping_) {
      // Not our cancel (sends are cancelled only at stop): the kernel ended
      // the bundle, seen on 6.18 after a bundle that had ended short.
      abandon_bundles(c, 0);
    } else if (cqe.res < 0) {
      if (cqe.res != -ECANCELED && cqe.res != -EPIPE && cqe.res != -ECONNRESET) {
        std::fprintf(stderr, "echo-plain: bundled send: %s\n", std::strerror(-cqe.res));
      }
      c.failed = true;
    } else if (cqe.res == 0) {
      // Nothing sent although the ring held parts: sending again would spin.
      std::fprintf(stderr, "echo-plain: a bundled send sent nothing; closing the connection\n");
      c.failed = true;
    } else {
      ++bundle_sends_;
      const unsigned mask = kSendRingEntries - 1;
      if (!uring::cqe_has_buffer(&cqe) || uring::cqe_buffer_id(&cqe) != (c.out->seq & mask)) {
        die("send ring out of step: the CQE's buffer is not the first unsent part");
      }
      std::size_t left = static_cast<std::size_t>(cqe.res);
      while (left > 0 && c.in_ring > 0 && left >= c.parts.front().len) {
        Part& p = c.parts.front();
        left -= p.len;
        c.part_bytes -= p.len;
        release(p);
        c.parts.pop_front();
        --c.in_ring;
        ++c.out->seq;
        ++bundle_parts_;
      }
      if (left > 0 && c.in_ring == 0) {
        // More reported sent than the ring held: the count cannot be
        // placed in the stream, so this connection ends (not the process).
        std::fprintf(stderr, "echo-plain: a bundled send reported %zu bytes more than its ring held; closing the "
                     "connection\n", left);
        c.failed = true;
      } else if (!ended) {
        // Still going, yet stopped inside a buffer: the kernel goes on with
        // later buffers, so the stream cannot go on in order.
        if (left > 0) {
          std::fprintf(stderr, "echo-plain: a bundled send ended inside a buffer (%zu bytes over) and goes on; "
                       "closing the connection\n", left);
          c.failed = true;
        }
      } else if (left > 0 || (c.in_ring > 0 && !ring_as_left(c))) {
        // The bundle ended short (it waited for room in the socket and did
        // not get it all): the kernel may have moved the send ring's head
        // past buffers it did not send (on 6.18: every buffer the bundle had
        // selected consumed, the count ending inside one).
        abandon_bundles(c, left);
      }
    }
    settle(c);
  }

  // After a bundle ended with parts still in the send ring and none of them
  // sent: the kernel's head is where the ring's first unsent part is.
  bool ring_as_left(Connection& c) {
    std::uint16_t head = 0;
    if (ring_.buf_ring_head(c.out->ring->bgid(), head) != 0) return false;
    return head == static_cast<std::uint16_t>(c.out->seq);
  }

  // A bundle ended without sending what it took (the first part
  // `sent_of_first` bytes sent). What the kernel reported sent is right, and
  // nothing is in flight: the unsent parts are copied in order into the
  // plain send queue, the slot's send ring (whose entries no longer match)
  // is unregistered, and this connection copies from now on.
  void abandon_bundles(Connection& c, std::size_t sent_of_first) {
    ++bundle_abandoned_;
    copy_parts_to_queue(c, sent_of_first);
    c.in_ring = 0;
    send_rings_[c.slot] = SendRing{};
    c.out = nullptr;
    c.bundles = false;
  }

  // Brings a connection's operations in line with its state: sends what is
  // waiting, pauses or resumes receiving, closes when nothing is left to do.
  // Every event on a connection ends here, so the rules live in one place.
  void settle(Connection& c) {
    if (!c.failed && !stopping_) start_send(c);
    const std::size_t pending = c.pending();
    if (pending > kHighWater) {
      c.paused = true;
    } else if (pending <= kLowWater) {
      c.paused = false;
    }
    const bool want_recv = !stopping_ && !c.eof && !c.failed && !c.paused;
    if (want_recv && !c.recv_armed) arm_recv(c);
    // On stop the single cancel-all already covers this recv.
    if (!want_recv && c.recv_armed && !c.recv_cancelled && !stopping_) cancel_recv(c);
    const bool finished = c.failed || stopping_ || (c.eof && pending == 0);
    if (finished && !c.recv_armed && !c.send_in_flight && c.zc_notifs == 0) close(c);
  }

  void arm_recv(Connection& c) {
    io_uring_sqe* sqe = next_sqe();
    uring::prep_recv_multishot_group(sqe, c.file(), 0, kBufferGroup);
    if (bundle_) sqe->ioprio |= IORING_RECVSEND_BUNDLE;
    uring::sqe_set_data64(sqe, tag(Op::recv, c.slot, c.generation));
    c.recv_armed = true;
    c.recv_cancelled = false;
    ++inflight_;
  }

  void cancel_recv(Connection& c) {
    io_uring_sqe* sqe = next_sqe();
    uring::prep_cancel64(sqe, tag(Op::recv, c.slot, c.generation), 0);
    uring::sqe_set_data64(sqe, tag(Op::cancel));
    c.recv_cancelled = true;
    ++inflight_;
  }

  // The waiting parts, in order, into the plain send queue (the first one
  // from byte `skip` on); their receive buffers may go back.
  void copy_parts_to_queue(Connection& c, std::size_t skip) {
    c.parts.for_each([&](const Part& p) {
      c.queued.insert(c.queued.end(), p.data + skip, p.data + p.len);
      skip = 0;
      release(p);
    });
    c.parts.clear();
    c.part_bytes = 0;
  }

  // Send bundles: parts not in the send ring yet go in (a bundle in flight
  // may take them too).
  void fill_send_ring(Connection& c) {
    int added = 0;
    while (c.in_ring < c.parts.size() && c.in_ring < kSendRingEntries) {
      Part& p = c.parts[c.in_ring];
      const auto bid = static_cast<std::uint16_t>((c.out->seq + c.in_ring) & (kSendRingEntries - 1));
      c.out->ring->add(const_cast<std::byte*>(p.data), p.len, bid, added);
      ++c.in_ring;
      ++added;
    }
    if (added != 0) c.out->ring->advance(added);
  }

  // With send bundles: true when the parts went out as a bundle (or join
  // the bundle in flight); false when the plain path below sends what
  // waits, the parts copied into `queued` if they are few bytes.
  bool start_bundle_send(Connection& c) {
    if (c.bundle_in_flight) {
      fill_send_ring(c);
      return true;
    }
    // A plain send in flight, or one that still has bytes to go: the parts
    // wait for it (they are not in the send ring, so they may still be copied).
    if (c.send_in_flight || c.sent != c.sending.size() || c.parts.empty()) return false;
    if (c.in_ring == 0 && c.out == nullptr && c.part_bytes >= kBundleFrom) {
      // The first bundle of this connection: a page per connection is paid
      // only by connections that send this much at once.
      c.out = send_ring_for(c.slot);
      if (c.out == nullptr) c.bundles = false;  // no ring: this connection copies from now on
    }
    if (c.in_ring == 0 && (c.part_bytes < kBundleFrom || c.out == nullptr)) {
      copy_parts_to_queue(c, 0);
      return false;
    }
    fill_send_ring(c);
    io_uring_sqe* sqe = next_sqe();
    uring::prep_send(sqe, c.file(), uring::ConstBuffer(nullptr, 0), MSG_NOSIGNAL | MSG_WAITALL);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = c.out->ring->bgid();
    sqe->ioprio |= IORING_RECVSEND_BUNDLE;
    uring::sqe_set_data64(sqe, tag(Op::send, c.slot, c.generation));
    c.send_in_flight = true;
    c.bundle_in_flight = true;
    ++inflight_;
    return true;
  }

  void start_send(Connection& c) {
    if (c.bundles && start_bundle_send(c)) return;
    if (c.send_in_flight) return;  // one send per socket: two could reach the wire out of order
    if (c.sent == c.sending.size()) {
      if (c.queued.empty()) return;
      // The kernel may still read `sending` for a zero-copy send: the rest
      // waits for its notification (which settles the connection again).
      if (c.zc_notifs != 0) return;
      c.sending.clear();
      c.sent = 0;
      std::swap(c.sending, c.queued);
    }
    io_uring_sqe* sqe = next_sqe();
    // MSG_NOSIGNAL: a peer that reset gets -EPIPE, not a SIGPIPE for the process.
    const uring::ConstBuffer data(c.sending.data() + c.sent, c.sending.size() - c.sent);
    if (zc_threshold_ && data.size() >= zc_threshold_) {
      uring::prep_send_zc(sqe, c.file(), data, MSG_NOSIGNAL, IORING_SEND_ZC_REPORT_USAGE);
      ++zc_sends_;
    } else {
      uring::prep_send(sqe, c.file(), data, MSG_NOSIGNAL);
    }
    uring::sqe_set_data64(sqe, tag(Op::send, c.slot, c.generation));
    c.send_in_flight = true;
    ++inflight_;
  }

  void close(Connection& c) {
    // No send is in flight: parts left (a failed or stopped connection) are
    // dropped. Entries left in the send ring would go out on the slot's next
    // connection: that ring is unregistered instead (the slot registers a new
    // one when it needs one).
    c.parts.for_each([this](const Part& p) { release(p); });
    if (c.in_ring != 0) send_rings_[c.slot] = SendRing{};
    io_uring_sqe* sqe = next_sqe();
    if (c.fixed) {
      uring::prep_close_direct(sqe, static_cast<unsigned>(c.fd));
    } else {
      uring::prep_close(sqe, c.fd);
    }
    uring::sqe_set_data64(sqe, tag(Op::close, c.fixed ? Kind::direct : Kind::plain));
    ++inflight_;
    // Nothing of this connection is in the kernel any more, so the slot can
    // be reused right away; the new generation tells its CQEs apart.
    const std::uint32_t slot = c.slot;
    const std::uint32_t generation = c.generation + 1;
    c = Connection{};
    c.slot = slot;
    c.generation = generation;
    free_slots_.push_back(slot);
  }

  // ---- signals and stopping ------------------------------------------------------
  void arm_signal_read() {
    io_uring_sqe* sqe = next_sqe();
    uring::prep_read(sqe, signal_fd_, uring::MutableBuffer(&siginfo_, sizeof siginfo_), 0);
    uring::sqe_set_data64(sqe, tag(Op::signal));
    ++inflight_;
  }

  void on_signal(const io_uring_cqe& cqe) {
    --inflight_;
    if (cqe.res == static_cast<int>(sizeof siginfo_)) {
      std::fprintf(stderr, "echo-plain: %s, stopping\n", strsignal(static_cast<int>(siginfo_.ssi_signo)));
    } else {
      std::fprintf(stderr, "echo-plain: reading the signalfd failed (%d), stopping\n", cqe.res);
    }
    stop();
  }

  void stop() {
    stopping_ = true;
    // One request cancels everything in the ring: the accept, the accept
    // pause, every recv and every send parked on a peer that does not read.
    io_uring_sqe* sqe = next_sqe();
    uring::prep_cancel_any(sqe, IORING_ASYNC_CANCEL_ALL);
    uring::sqe_set_data64(sqe, tag(Op::cancel));
    ++inflight_;
    for (Connection& c : connections_) {
      if (c.fd >= 0) settle(c);  // idle connections close now, busy ones when their CQEs arrive
    }
    if (zc_threshold_) {
      // Notifications wait for the peer to take the bytes; bound the wait.
      io_uring_sqe* deadline = next_sqe();
      uring::prep_timeout(deadline, &stop_grace_, 0, 0);
      uring::sqe_set_data64(deadline, tag(Op::stop_deadline));
    }
  }

  // ---- submission queue and provided buffers -------------------------------------
  io_uring_sqe* next_sqe() {
    if (io_uring_sqe* sqe = ring_.get_sqe()) return sqe;
    // The SQ is full within one turn: hand what is queued to the kernel now.
    publish_buffers();
    const int ret = ring_.submit();
    if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
      die(std::string("io_uring_enter: ") + std::strerror(-ret));
    }
    if (io_uring_sqe* sqe = ring_.get_sqe()) return sqe;
    die("the submission queue stays full");
  }

  std::byte* buffer(std::uint16_t bid) { return buffer_memory_.get() + std::size_t{bid} * buffer_size_; }

  // Stages a buffer for the kernel; publish_buffers() makes the staged ones
  // visible with one release store per turn.
  void give_back(std::uint16_t bid) {
    if (tracked_) ring_bids_[filled_++ & (buffer_count_ - 1)] = bid;
    buffers_->add(buffer(bid), buffer_size_, bid, staged_buffers_++);
  }

  void publish_buffers() {
    if (staged_buffers_ == 0) return;
    buffers_->advance(staged_buffers_);
    staged_buffers_ = 0;
  }

  // The kernel writes into the provided buffers until the ring goes:
  // declared first, their memory is freed last (after the ring closes).
  std::unique_ptr<std::byte[]> buffer_memory_;
  uring::Ring ring_;
  std::optional<uring::BufferRing> buffers_;  // declared after ring_: unregistered before the ring goes
  // Send bundles: one send ring per connection slot (declared after ring_),
  // parts of each receive buffer not sent yet (refs_), buffers the kernel
  // has moved past that wait for their parts (used_up_; held_ of them).
  bool send_bundle_ = false;
  std::deque<SendRing> send_rings_;  // a deque: connections point at their ring while others are added
  std::vector<std::uint32_t> refs_;
  std::vector<std::uint8_t> used_up_;
  unsigned held_ = 0;
  bool send_ring_failed_reported_ = false;
  unsigned long long bundle_sends_ = 0;
  unsigned long long bundle_parts_ = 0;
  unsigned long long bundle_copies_ = 0;  // receives copied at a low ring (sent plainly or in a bundle)
  unsigned long long bundle_abandoned_ = 0;  // connections whose bundle ended short: they copy from then on
  unsigned buffer_size_ = kBufferSize;
  unsigned buffer_count_ = 0;
  int staged_buffers_ = 0;
  bool bundle_ = false;
  bool incremental_ = false;
  // With bundles or an incremental ring, which buffer sits at each ring
  // position: filled_ positions were given to the kernel, head_ consumed.
  bool tracked_ = false;
  std::vector<std::uint16_t> ring_bids_;
  unsigned filled_ = 0;
  unsigned head_ = 0;
  unsigned head_offset_ = 0;
  // Direct descriptors.
  bool direct_ = false;
  unsigned fixed_slots_ = 0;
  unsigned fixed_low_ = 0;   // a full table takes direct accepts again at this many slots in use
  unsigned fixed_used_ = 0;  // slots accepted into and not closed yet
  bool table_full_ = false;
  bool table_full_reported_ = false;
  unsigned long long plain_fallbacks_ = 0;
  unsigned long long dropped_at_full_table_ = 0;
  bool accept_armed_[2] = {false, false};
  bool accept_cancelled_[2] = {false, false};
  bool accept_paused_ = false;
  int listen_fd_;
  int signal_fd_;
  signalfd_siginfo siginfo_{};
  const uring::Timespec accept_pause_{100ms};  // the kernel reads it at submit: lives as long as the server
  const uring::Timespec stop_grace_{1s};
  bool abandon_ = false;  // stopping, and notifications still outstanding after stop_grace_
  // Zero-copy sends and NAPI busy polling.
  std::size_t zc_threshold_ = 0;  // 0: off
  unsigned long long zc_sends_ = 0;
  unsigned long long zc_notifications_ = 0;
  unsigned long long zc_copied_ = 0;
  bool napi_ = false;
  unsigned napi_busy_poll_us_ = 0;
  bool accept_error_reported_ = false;
  std::deque<Connection> connections_;
  std::vector<std::uint32_t> free_slots_;
  std::vector<std::uint32_t> received_;  // slots with a recv CQE this turn
  unsigned inflight_ = 0;  // operations whose last CQE has not arrived yet
  bool stopping_ = false;
  unsigned long long accepted_ = 0;
};

Options parse_options(int argc, char** argv) {
  samples::CommandLine app("ringshard-echo-plain: a TCP echo server on the uring layer alone (one thread)",
                           "ringshard-echo-plain");
  samples::ServerFlags flags;
  flags.add_to(app, {.shards = false, .policy = false, .metrics = false});
  bool no_direct = false;
  std::size_t send_zc = 0;
  unsigned napi_busy_poll_us = 0;
  bool send_bundle = false;
  app.flag("--no-direct", no_direct,
           "plain descriptors instead of a fixed file table (direct accept; on by default here, with "
           "--fixed-files slots, default RLIMIT_NOFILE, at most 65536)");
  app.option("--send-zc", send_zc,
             "send with IORING_OP_SEND_ZC from this many bytes on (default 0: never); the buffer is kept until "
             "the kernel's notification")
      .range(std::size_t{0}, std::size_t{1} << 30);
  app.flag("--send-bundle", send_bundle,
           "send received bytes from the receive buffers with send bundles (a provided-buffer ring per "
           "connection, IORING_RECVSEND_BUNDLE) instead of copying them; off by default");
  app.option("--napi-busy-poll-us", napi_busy_poll_us,
             "register NAPI busy polling for this many microseconds (IORING_REGISTER_NAPI; default 0: off)")
      .range(0u, 1000000u);
  app.parse_or_exit(argc, argv);
  if (send_bundle && send_zc != 0) app.bad_argument("--send-bundle and --send-zc cannot be combined");
  in_addr ignored{};
  if (::inet_pton(AF_INET, flags.host.c_str(), &ignored) != 1) {
    app.bad_argument("--host: must be an IPv4 address, got " + flags.host);
  }
  return Options{flags.host, static_cast<std::uint16_t>(flags.port), flags.buffers, !no_direct && flags.fixed_files != 0U,
                 flags.fixed_files.value_or(0),
                 !flags.no_bundle, !flags.no_incremental, send_zc, napi_busy_poll_us, send_bundle};
}

int open_listener(const Options& options) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(options.port);
  if (::inet_pton(AF_INET, options.host.c_str(), &addr.sin_addr) != 1) {
    die("--host must be an IPv4 address, got " + options.host);
  }
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die(std::string("socket: ") + std::strerror(errno));
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  // Echo is request/response: without NODELAY, Nagle holds back small
  // replies. Accepted sockets inherit it from the listening socket on Linux.
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    die("bind " + options.host + ":" + std::to_string(options.port) + ": " + std::strerror(errno));
  }
  if (::listen(fd, kListenBacklog) != 0) die(std::string("listen: ") + std::strerror(errno));
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse_options(argc, argv);

  // SIGINT and SIGTERM are blocked and read from a signalfd through the ring,
  // so a signal is one more completion and never interrupts the loop. A shell
  // without job control starts `cmd &` with SIGINT ignored, and an ignored
  // signal is dropped before it reaches the signalfd: restore the default.
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  if (sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) die(std::string("sigprocmask: ") + std::strerror(errno));
  const int signal_fd = ::signalfd(-1, &mask, SFD_CLOEXEC);
  if (signal_fd < 0) die(std::string("signalfd: ") + std::strerror(errno));

  const int listen_fd = open_listener(options);
  sockaddr_in bound{};
  socklen_t len = sizeof bound;
  ::getsockname(listen_fd, reinterpret_cast<sockaddr*>(&bound), &len);
  char host[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &bound.sin_addr, host, sizeof host);

  try {
    EchoServer server(options, listen_fd, signal_fd);
    std::printf("listening on %s:%u\n", host, static_cast<unsigned>(ntohs(bound.sin_port)));
    std::fflush(stdout);
    server.run();
  } catch (const std::system_error& e) {
    die(e.what());
  }
  ::close(listen_fd);
  ::close(signal_fd);
  return 0;
}
