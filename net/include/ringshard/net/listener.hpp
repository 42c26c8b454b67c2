// The listener: accepts connections and spreads them over the shards.
//
//   auto l = net::listen<Echo>(runtime, {.address = net::Address::parse("127.0.0.1:0"),
//                                        .policy = net::Policy::least_connections});
//   std::printf("listening on %s\n", l.address().to_string().c_str());
//
// The listening socket is created, bound and put in listen mode by listen()
// itself, so the bound address (port 0 picks one) and any error are known at
// once. A listener actor keeps a multishot accept armed; each accepted socket
// goes to a shard chosen by the policy, where a new connection actor of the
// user's type is created for it.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string_view>
#include <tuple>
#include <vector>

#include "ringshard/net/address.hpp"
#include "ringshard/net/connection.hpp"

namespace ringshard::net {

enum class Policy {
  round_robin,        ///< shard after shard
  least_connections,  ///< the shard with the fewest live connections (live counters)
  reuse_port,         ///< every shard has its own SO_REUSEPORT listener; the kernel spreads
};
/// "round-robin", "least-connections", "reuse-port"; throws std::invalid_argument otherwise.
Policy parse_policy(std::string_view name);
const char* to_string(Policy policy) noexcept;

struct ListenOptions {
  Address address = Address::ipv4("127.0.0.1", 0);
  int backlog = 4096;
  Policy policy = Policy::round_robin;
  unsigned accept_shard = 0;  ///< where the listener runs (not with reuse_port)
  ConnectionOptions connection{};
  std::chrono::milliseconds emfile_pause{100};  ///< pause after EMFILE/ENFILE
  /// The shape of every shard's receive ring, for shards that have not built
  /// it yet (see NetShard::set_receive_buffers); unset: leave it as it is.
  std::optional<ReceiveBuffers> receive_buffers{};
  /// Slots of every shard's fixed file table for direct descriptors (see
  /// NetShard::set_fixed_files; 0, the default: none), for shards that have
  /// not built it yet; unset: leave it as it is.
  std::optional<unsigned> fixed_files{};
};

/// Creates a connection actor for an accepted socket, on the calling shard.
using ConnectionFactory = std::function<void(int fd, const Address& peer)>;

class ListenerHandle {
 public:
  ListenerHandle() = default;
  ListenerHandle(Runtime& rt, Address bound, std::vector<actors::RawRef> listeners)
      : runtime_(&rt), address_(bound), listeners_(std::move(listeners)) {}
  [[nodiscard]] const Address& address() const noexcept { return address_; }
  /// Stops accepting (connections already accepted stay).
  void close();

 private:
  Runtime* runtime_ = nullptr;
  Address address_{};
  std::vector<actors::RawRef> listeners_;
};

/// Binds and listens; throws std::system_error naming the address on failure.
ListenerHandle listen(Runtime& rt, const ListenOptions& options, ConnectionFactory factory);

/// listen() for a connection actor type T constructed with `args` (copied for
/// every connection).
template <class T, class... Args>
ListenerHandle listen(Runtime& rt, const ListenOptions& options, Args... args) {
  static_assert(std::is_base_of_v<ConnectionCore, T>, "listen<T>: T must derive from net::Connection<T>");
  const ConnectionOptions conn = options.connection;
  return listen(rt, options, [conn, args...](int fd, const Address& peer) {
    auto actor = std::apply([](const auto&... a) { return std::make_unique<T>(a...); }, std::tuple<Args...>(args...));
    actor->set_options(conn);
    actor->attach_accepted(fd, peer);
    Shard& shard = *Shard::current();
    auto& table = actors::ActorTable::of(shard);
    actors::RawRef ref = table.reserve();
    ref.shard = shard.id();
    table.install(ref, std::move(actor));
  });
}

/// Opens a client connection to `target` from a new T on shard `shard`; T's
/// on_open runs once connected, on_close(connect_failed) if that fails.
template <class T, class... Args>
actors::ActorRef<T> connect(Runtime& rt, unsigned shard, const Address& target, Args&&... args) {
  static_assert(std::is_base_of_v<ConnectionCore, T>, "connect<T>: T must derive from net::Connection<T>");
  auto& table = actors::ActorTable::of(rt.shard(shard));
  actors::RawRef ref = table.reserve();
  ref.shard = shard;
  rt.post(shard, [&table, ref, target, tup = std::make_tuple(std::decay_t<Args>(std::forward<Args>(args))...)]() mutable {
    auto actor = std::apply([](auto&&... a) { return std::make_unique<T>(std::move(a)...); }, std::move(tup));
    actor->attach_connect(target);
    table.install(ref, std::move(actor));
  });
  return actors::ActorRef<T>(ref);
}

/// Live connections per shard, as the listeners see them.
std::vector<int> connections_per_shard(Runtime& rt);

}  // namespace ringshard::net
