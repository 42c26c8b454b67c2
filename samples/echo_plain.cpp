// ringshard-echo-plain: a TCP echo server written against the uring layer
// alone: one thread, one Ring, no reactor and no actors. It shows the shape
// every io_uring server has underneath: a multishot accept, a multishot recv
// per connection that takes its memory from a provided-buffer ring, exactly
// one send in flight per connection, and a loop that enters the kernel once
// per turn and then drains every completion.
//
//   ringshard-echo-plain [--host 127.0.0.1] [--port 0] [--buffers 4096]
//
// The first line on stdout is `listening on HOST:PORT` (port 0 picks a free
// port). --buffers sets how many 4 KiB receive buffers the kernel may fill
// (a power of two; tests use a tiny count to run the ring dry). SIGINT or
// SIGTERM closes every connection and exits with status 0.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

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
// Every recv completion consumes one provided buffer, so a turn can bring as
// many recv CQEs as there are buffers, plus the sends; size the CQ so that it
// rarely overflows (with IORING_FEAT_NODROP an overflow is slow, not lossy).
constexpr unsigned kCqEntries = 8192;
constexpr unsigned kBufferSize = 4096;
constexpr std::uint16_t kBufferGroup = 0;
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
enum class Op : std::uint8_t { accept, accept_resume, signal, recv, send, cancel, close };

constexpr std::uint64_t tag(Op op, std::uint32_t slot = 0, std::uint32_t generation = 0) {
  return (std::uint64_t{generation} << 32) | (std::uint64_t{slot} << 8) | static_cast<std::uint8_t>(op);
}
constexpr Op op_of(std::uint64_t data) { return static_cast<Op>(data & 0xff); }
constexpr std::uint32_t slot_of(std::uint64_t data) { return static_cast<std::uint32_t>(data >> 8) & 0xffffff; }
constexpr std::uint32_t generation_of(std::uint64_t data) { return static_cast<std::uint32_t>(data >> 32); }

struct Connection {
  int fd = -1;
  std::uint32_t slot = 0;
  std::uint32_t generation = 0;
  bool recv_armed = false;      // a multishot recv is in the kernel
  bool recv_cancelled = false;  // ... and a cancel for it has been sent
  bool send_in_flight = false;
  bool paused = false;          // above the high mark: not receiving
  bool eof = false;             // the peer sent everything it will send
  bool failed = false;          // an error: drop what is unsent and close
  bool dirty = false;           // received this turn: settled when the turn's CQEs are done
  // Two byte queues, because the kernel reads a send's memory until the send
  // completes (a send that finds the socket full is parked and retried): the
  // bytes of the send in flight stay put in `sending`, bytes that arrive
  // meanwhile go to `queued`. When `sending` is done the two swap, keeping
  // both capacities, so a steady connection stops allocating.
  std::vector<std::byte> sending;
  std::size_t sent = 0;  // bytes of `sending` the kernel has taken
  std::vector<std::byte> queued;

  [[nodiscard]] std::size_t pending() const { return sending.size() - sent + queued.size(); }
};

struct Options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  unsigned buffers = 4096;  // provided receive buffers, kBufferSize each
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
      : ring_(make_ring()),
        buffer_memory_(std::make_unique_for_overwrite<std::byte[]>(std::size_t{options.buffers} * kBufferSize)),
        buffers_(ring_, options.buffers, kBufferGroup),
        listen_fd_(listen_fd),
        signal_fd_(signal_fd) {
    for (unsigned bid = 0; bid < options.buffers; ++bid) give_back(static_cast<std::uint16_t>(bid));
    publish_buffers();
  }

  // Runs until a signal arrives and every connection is closed.
  void run() {
    arm_signal_read();
    arm_accept();
    // One enter per turn submits everything the previous turn prepared and
    // waits for at least one completion; then all ready CQEs are handled and
    // the CQ head is published once.
    while (!(stopping_ && inflight_ == 0)) {
      const int ret = ring_.submit_and_wait(1);
      if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
        die(std::string("io_uring_enter: ") + std::strerror(-ret));
      }
      ring_.for_each_cqe([this](const io_uring_cqe& cqe) { dispatch(cqe); });
      settle_received();
      publish_buffers();
    }
    std::fprintf(stderr, "echo-plain: stopped, %llu connections served\n",
                 static_cast<unsigned long long>(accepted_));
  }

 private:
  void dispatch(const io_uring_cqe& cqe) {
    switch (op_of(cqe.user_data)) {
      case Op::accept: on_accept(cqe); break;
      case Op::accept_resume:
        --inflight_;
        if (!stopping_) arm_accept();
        break;
      case Op::signal: on_signal(cqe); break;
      case Op::recv: on_recv(connection(cqe), cqe); break;
      case Op::send: on_send(connection(cqe), cqe); break;
      case Op::cancel:  // -ENOENT / -EALREADY only mean the target had finished
        --inflight_;
        break;
      case Op::close:
        --inflight_;
        if (cqe.res < 0) std::fprintf(stderr, "echo-plain: close: %s\n", std::strerror(-cqe.res));
        break;
    }
  }

  // ---- accepting -------------------------------------------------------------
  void arm_accept() {
    io_uring_sqe* sqe = next_sqe();
    uring::prep_multishot_accept(sqe, listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    uring::sqe_set_data64(sqe, tag(Op::accept));
    ++inflight_;
  }

  void on_accept(const io_uring_cqe& cqe) {
    const bool more = uring::cqe_has_more(&cqe);
    if (!more) --inflight_;
    if (cqe.res >= 0) {
      open_connection(cqe.res);
      accept_error_reported_ = false;
    } else if (cqe.res != -ECANCELED && !accept_error_reported_) {
      std::fprintf(stderr, "echo-plain: accept: %s; pausing accepts\n", std::strerror(-cqe.res));
      accept_error_reported_ = true;
    }
    if (more || stopping_) return;
    // The multishot accept ended. After an error (-EMFILE, -ENFILE, ...)
    // re-arming at once would fail again at once and spin the loop: wait
    // 100 ms (closing connections meanwhile frees descriptors).
    if (cqe.res >= 0) {
      arm_accept();
    } else {
      io_uring_sqe* sqe = next_sqe();
      uring::prep_timeout(sqe, &accept_pause_, 0, 0);
      uring::sqe_set_data64(sqe, tag(Op::accept_resume));
      ++inflight_;
    }
  }

  void open_connection(int fd) {
    ++accepted_;
    // Echo is request/response: without NODELAY, Nagle holds back small replies.
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
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
    if (uring::cqe_has_buffer(&cqe)) {
      // Copy the bytes out and give the buffer back at once, so that buffers
      // never wait on a slow peer and every connection can keep receiving.
      const std::uint16_t bid = uring::cqe_buffer_id(&cqe);
      const std::byte* data = buffer(bid);
      if (cqe.res > 0) c.queued.insert(c.queued.end(), data, data + cqe.res);
      give_back(bid);
    }
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
    c.send_in_flight = false;
    --inflight_;
    if (cqe.res < 0) {
      c.failed = true;
    } else {
      c.sent += static_cast<std::size_t>(cqe.res);  // a short send continues from here
    }
    settle(c);
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
    if (finished && !c.recv_armed && !c.send_in_flight) close(c);
  }

  void arm_recv(Connection& c) {
    io_uring_sqe* sqe = next_sqe();
    uring::prep_recv_multishot_group(sqe, c.fd, 0, kBufferGroup);
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

  void start_send(Connection& c) {
    if (c.send_in_flight) return;  // one send per socket: two could reach the wire out of order
    if (c.sent == c.sending.size()) {
      if (c.queued.empty()) return;
      c.sending.clear();
      c.sent = 0;
      std::swap(c.sending, c.queued);
    }
    io_uring_sqe* sqe = next_sqe();
    // MSG_NOSIGNAL: a peer that reset gets -EPIPE, not a SIGPIPE for the process.
    uring::prep_send(sqe, c.fd, uring::ConstBuffer(c.sending.data() + c.sent, c.sending.size() - c.sent),
                     MSG_NOSIGNAL);
    uring::sqe_set_data64(sqe, tag(Op::send, c.slot, c.generation));
    c.send_in_flight = true;
    ++inflight_;
  }

  void close(Connection& c) {
    io_uring_sqe* sqe = next_sqe();
    uring::prep_close(sqe, c.fd);
    uring::sqe_set_data64(sqe, tag(Op::close));
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

  std::byte* buffer(std::uint16_t bid) { return buffer_memory_.get() + std::size_t{bid} * kBufferSize; }

  // Stages a buffer for the kernel; publish_buffers() makes the staged ones
  // visible with one release store per turn.
  void give_back(std::uint16_t bid) { buffers_.add(buffer(bid), kBufferSize, bid, staged_buffers_++); }

  void publish_buffers() {
    if (staged_buffers_ == 0) return;
    buffers_.advance(staged_buffers_);
    staged_buffers_ = 0;
  }

  uring::Ring ring_;
  std::unique_ptr<std::byte[]> buffer_memory_;
  uring::BufferRing buffers_;  // declared after ring_: unregistered before the ring goes
  int staged_buffers_ = 0;
  int listen_fd_;
  int signal_fd_;
  signalfd_siginfo siginfo_{};
  const uring::Timespec accept_pause_{100ms};  // the kernel reads it at submit: lives as long as the server
  bool accept_error_reported_ = false;
  std::deque<Connection> connections_;
  std::vector<std::uint32_t> free_slots_;
  std::vector<std::uint32_t> received_;  // slots with a recv CQE this turn
  unsigned inflight_ = 0;  // operations whose last CQE has not arrived yet
  bool stopping_ = false;
  unsigned long long accepted_ = 0;
};

Options parse_options(int argc, char** argv) {
  CLI::App app("ringshard-echo-plain: a TCP echo server on the uring layer alone (one thread)",
               "ringshard-echo-plain");
  samples::ServerFlags flags;
  flags.add_to(app, {.shards = false, .policy = false, .metrics = false});
  samples::parse_or_exit(app, argc, argv);
  in_addr ignored{};
  if (::inet_pton(AF_INET, flags.host.c_str(), &ignored) != 1) {
    samples::bad_argument(app, "--host: must be an IPv4 address, got " + flags.host);
  }
  return Options{flags.host, static_cast<std::uint16_t>(flags.port), flags.buffers};
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
