// Actor addresses: shard + slot + generation. A slot is reused after its actor
// stops, with a new generation, so a message to a stopped actor is detected
// (a dead letter) and never reaches the stranger that took its slot.
#pragma once

#include <cstdint>
#include <functional>

namespace ringshard::actors {

struct RawRef {
  std::uint32_t shard = UINT32_MAX;
  std::uint32_t slot = 0;
  std::uint32_t gen = 0;

  [[nodiscard]] constexpr bool valid() const noexcept { return shard != UINT32_MAX; }
  friend constexpr bool operator==(const RawRef&, const RawRef&) = default;
};

/// A typed address: messages sent through it are checked at compile time
/// against T's on_message overloads.
template <class T>
class ActorRef {
 public:
  constexpr ActorRef() noexcept = default;
  constexpr explicit ActorRef(RawRef raw) noexcept : raw_(raw) {}
  [[nodiscard]] constexpr const RawRef& raw() const noexcept { return raw_; }
  [[nodiscard]] constexpr unsigned shard() const noexcept { return raw_.shard; }
  [[nodiscard]] constexpr bool valid() const noexcept { return raw_.valid(); }
  friend constexpr bool operator==(const ActorRef&, const ActorRef&) = default;

 private:
  RawRef raw_{};
};

}  // namespace ringshard::actors

template <>
struct std::hash<ringshard::actors::RawRef> {
  std::size_t operator()(const ringshard::actors::RawRef& r) const noexcept {
    return (static_cast<std::size_t>(r.shard) << 48) ^ (static_cast<std::size_t>(r.slot) << 20) ^ r.gen;
  }
};
