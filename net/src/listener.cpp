#include "ringshard/net/listener.hpp"

#include "listen_socket.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <system_error>

#include "ringshard/framework/log.hpp"

namespace ringshard::net {

Policy parse_policy(std::string_view name) {
  if (name == "round-robin") return Policy::round_robin;
  if (name == "least-connections") return Policy::least_connections;
  if (name == "reuse-port") return Policy::reuse_port;
  throw std::invalid_argument("unknown policy '" + std::string(name) +
                              "' (round-robin, least-connections or reuse-port)");
}

const char* to_string(Policy policy) noexcept {
  switch (policy) {
    case Policy::round_robin: return "round-robin";
    case Policy::least_connections: return "least-connections";
    case Policy::reuse_port: return "reuse-port";
  }
  return "unknown";
}

std::vector<int> connections_per_shard(Runtime& rt) {
  std::vector<int> out;
  for (unsigned i = 0; i < rt.shard_count(); ++i) {
    out.push_back(NetShard::of(rt.shard(i)).connections.load(std::memory_order_relaxed));
  }
  return out;
}

namespace {

struct Shared {
  ConnectionFactory factory;
  Policy policy;
  std::chrono::milliseconds emfile_pause;
};

// Keeps a multishot accept armed on one listening socket. Lives until its
// last CQE after the listener actor let go of it. When a stop is asked for,
// it stops accepting at once: the socket stops listening (connects are
// refused, the backlog not accepted yet is reset) while the shards drain.
class Acceptor final : public MultishotCompletion, Timer, Drainable {
 public:
  Acceptor(int fd, std::shared_ptr<const Shared> shared, Shard& shard)
      : fd_(fd), shared_(std::move(shared)), shard_(&shard) {}

  void start() {
    enlist(NetShard::of(*shard_));
    shard_->reactor().arm(*this);
  }

  void on_stop_requested() override {
    if (detached_ || draining_) return;
    draining_ = true;
    MultishotCompletion::stop();
    shard_->reactor().cancel(static_cast<Timer&>(*this));
    if (armed()) shard_->reactor().cancel(static_cast<Completion&>(*this));
    ::shutdown(fd_, SHUT_RDWR);  // a listening socket: it stops listening
  }

  void detach() {
    detached_ = true;
    MultishotCompletion::stop();
    shard_->reactor().cancel(static_cast<Timer&>(*this));
    if (armed()) {
      shard_->reactor().cancel(static_cast<Completion&>(*this));
    } else {
      finish();
    }
  }

  void prep(io_uring_sqe* sqe) override {
    uring::prep_multishot_accept(sqe, fd_, nullptr, nullptr, SOCK_CLOEXEC);
  }

  void on_cqe(const io_uring_cqe& cqe) override {
    if (cqe.res >= 0) {
      warned_ = false;
      if (draining_) {
        ::close(cqe.res);  // accepted as the stop began: not taken any more
      } else {
        dispatch(cqe.res);
      }
    } else if (cqe.res == -EMFILE || cqe.res == -ENFILE) {
      // Out of fds: no busy loop. Stop re-arming, wait, then try again.
      if (!warned_) {
        RINGSHARD_LOG_WARN("accept on {}: {}; pausing accepts for {} ms", Address::of_socket(fd_).to_string(),
                           cqe.res == -EMFILE ? "too many open files (EMFILE)" : "file table full (ENFILE)",
                           shared_->emfile_pause.count());
        warned_ = true;
      }
      if (!detached_ && !draining_ && !paused_) {
        paused_ = true;
        MultishotCompletion::stop();
        shard_->reactor().schedule(static_cast<Timer&>(*this), shared_->emfile_pause);
      }
    } else if (cqe.res != -ECANCELED && cqe.res != -ECONNABORTED && cqe.res != -EINTR) {
      RINGSHARD_LOG_DEBUG("accept: {}", std::strerror(-cqe.res));
    }
    if (detached_ && !(cqe.flags & IORING_CQE_F_MORE)) finish();
  }

  void fire() override {
    paused_ = false;
    if (!detached_ && !draining_ && !armed()) shard_->reactor().arm(*this);
  }

 private:
  void dispatch(int fd) {
    Runtime& rt = shard_->runtime();
    unsigned target = shard_->id();
    if (shared_->policy == Policy::round_robin) {
      target = next_ % rt.shard_count();
      ++next_;
    } else if (shared_->policy == Policy::least_connections) {
      int best = std::numeric_limits<int>::max();
      const unsigned n = rt.shard_count();
      for (unsigned k = 0; k < n; ++k) {
        const unsigned i = (next_ + k) % n;  // ties go round
        const int c = NetShard::of(rt.shard(i)).connections.load(std::memory_order_relaxed);
        if (c < best) {
          best = c;
          target = i;
        }
      }
      ++next_;
    }
    // Counted now, not when the target gets to it: the next choice sees it.
    NetShard& net = NetShard::of(rt.shard(target));
    net.connections.fetch_add(1, std::memory_order_relaxed);
    net.accepted.fetch_add(1, std::memory_order_relaxed);
    if (target == shard_->id()) {
      shared_->factory(fd, Address{});
    } else {
      rt.post(target, [shared = shared_, fd] { shared->factory(fd, Address{}); });
    }
  }

  // Called from on_cqe, inside the reactor's completion of this object: the
  // object goes away after that completion has returned.
  void finish() {
    ::close(fd_);
    fd_ = -1;
    shard_->reactor().retire(this);  // even when the shard runs no more tasks
  }

  int fd_;
  std::shared_ptr<const Shared> shared_;
  Shard* shard_;
  unsigned next_ = 0;
  bool warned_ = false;
  bool paused_ = false;
  bool detached_ = false;
  bool draining_ = false;
};

class ListenerActor final : public actors::Actor<ListenerActor> {
 public:
  ListenerActor(int fd, std::shared_ptr<const Shared> shared) : fd_(fd), shared_(std::move(shared)) {}
  ~ListenerActor() override {
    if (acceptor_ == nullptr && fd_ >= 0) ::close(fd_);
  }
  void on_start() override {
    acceptor_ = new Acceptor(fd_, shared_, shard());
    acceptor_->start();
  }
  void on_stop() override {
    if (acceptor_ != nullptr) acceptor_->detach();
  }
  struct Close {};
  void on_message(const Close&) { stop(); }

 private:
  int fd_;
  std::shared_ptr<const Shared> shared_;
  Acceptor* acceptor_ = nullptr;
};


}  // namespace

namespace detail {

int open_listening_socket(const ListenOptions& o, const Address& address, bool reuse_port) {
  const int fd = ::socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "socket for " + address.to_string());
  int one = 1;
  if (!address.is_unix()) {
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuse_port && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
      const int err = errno;
      ::close(fd);
      throw std::system_error(err, std::generic_category(), "SO_REUSEPORT on " + address.to_string());
    }
  } else {
    // A stale socket file from an earlier run would make bind fail.
    const std::string path = address.to_string().substr(5);
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(path.c_str());
  }
  if (::bind(fd, address.get(), address.length()) != 0) {
    const int err = errno;
    ::close(fd);
    throw std::system_error(err, std::generic_category(), "bind " + address.to_string());
  }
  if (::listen(fd, o.backlog) != 0) {
    const int err = errno;
    ::close(fd);
    throw std::system_error(err, std::generic_category(), "listen on " + address.to_string());
  }
  return fd;
}

}  // namespace detail

ListenerHandle listen(Runtime& rt, const ListenOptions& options, ConnectionFactory factory) {
  if (options.receive_buffers) {
    for (unsigned i = 0; i < rt.shard_count(); ++i) NetShard::of(rt.shard(i)).set_receive_buffers(*options.receive_buffers);
  }
  if (options.fixed_files) {
    for (unsigned i = 0; i < rt.shard_count(); ++i) NetShard::of(rt.shard(i)).set_fixed_files(*options.fixed_files);
  }
  auto shared = std::make_shared<Shared>(Shared{std::move(factory), options.policy, options.emfile_pause});
  std::vector<actors::RawRef> refs;
  const bool reuse = options.policy == Policy::reuse_port;
  if (reuse && options.address.is_unix()) {
    throw std::invalid_argument("reuse-port needs a TCP address, not " + options.address.to_string());
  }
  const int first = detail::open_listening_socket(options, options.address, reuse);
  const Address bound = options.address.is_unix() ? options.address : Address::of_socket(first);
  if (!reuse) {
    refs.push_back(actors::spawn<ListenerActor>(rt, options.accept_shard % rt.shard_count(), first, shared).raw());
  } else {
    refs.push_back(actors::spawn<ListenerActor>(rt, 0, first, shared).raw());
    for (unsigned i = 1; i < rt.shard_count(); ++i) {
      const int fd = detail::open_listening_socket(options, bound, true);  // the same port, chosen by the first
      refs.push_back(actors::spawn<ListenerActor>(rt, i, fd, shared).raw());
    }
  }
  RINGSHARD_LOG_DEBUG("listening on {} ({}, backlog {})", bound.to_string(), to_string(options.policy),
                      options.backlog);
  return ListenerHandle(rt, bound, std::move(refs));
}

void ListenerHandle::close() {
  if (runtime_ == nullptr) return;
  for (const auto& raw : listeners_) actors::send(actors::ActorRef<ListenerActor>(raw), ListenerActor::Close{});
  listeners_.clear();
}

}  // namespace ringshard::net
