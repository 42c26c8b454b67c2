// Job: a move-only, type-erased `void()` callable that lives inline in a
// 64-byte slot when its captures fit (48 bytes), so that posting work to a
// shard's run queue or another shard's mailbox costs no heap allocation.
// Larger callables are boxed on the heap (one allocation).
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace ringshard {

template <class Sig, std::size_t Capacity>
class InlineFunction;

/// Move-only callable with `Capacity` bytes of inline storage.
template <class R, class... Args, std::size_t Capacity>
class InlineFunction<R(Args...), Capacity> {
 public:
  static constexpr std::size_t capacity = Capacity;

  InlineFunction() noexcept = default;
  InlineFunction(std::nullptr_t) noexcept {}  // NOLINT: implicit like std::function

  template <class F>
    requires(!std::is_same_v<std::decay_t<F>, InlineFunction> && std::is_invocable_r_v<R, std::decay_t<F>&, Args...>)
  InlineFunction(F&& f) {  // NOLINT: implicit like std::function
    using Fn = std::decay_t<F>;
    if constexpr (fits<Fn>()) {
      ::new (static_cast<void*>(storage_)) Fn(std::forward<F>(f));
      ops_ = &inline_ops<Fn>;
    } else {
      ::new (static_cast<void*>(storage_)) Fn*(new Fn(std::forward<F>(f)));
      ops_ = &boxed_ops<Fn>;
    }
  }

  InlineFunction(InlineFunction&& other) noexcept : ops_(other.ops_) {
    if (ops_) {
      relocate_from(other);
      other.ops_ = nullptr;
    }
  }
  InlineFunction& operator=(InlineFunction&& other) noexcept {
    if (this != &other) {
      reset();
      ops_ = other.ops_;
      if (ops_) {
        relocate_from(other);
        other.ops_ = nullptr;
      }
    }
    return *this;
  }
  InlineFunction(const InlineFunction&) = delete;
  InlineFunction& operator=(const InlineFunction&) = delete;
  ~InlineFunction() { reset(); }

  void reset() noexcept {
    if (ops_) {
      if (ops_->destroy) ops_->destroy(storage_);
      ops_ = nullptr;
    }
  }
  explicit operator bool() const noexcept { return ops_ != nullptr; }
  R operator()(Args... args) { return ops_->invoke(storage_, std::forward<Args>(args)...); }

  /// True when F would be stored without a heap allocation.
  template <class F>
  static constexpr bool fits() noexcept {
    return sizeof(F) <= Capacity && alignof(F) <= alignof(std::max_align_t) &&
           std::is_nothrow_move_constructible_v<F>;
  }

 private:
  // A null relocate means "copy the storage bytes" and a null destroy "nothing
  // to do": most tasks (a message and an address) are trivially copyable, and
  // their moves and destruction then cost no indirect call.
  struct Ops {
    R (*invoke)(void*, Args&&...);
    void (*relocate)(void* from, void* to) noexcept;  // move-construct into `to`, destroy `from`
    void (*destroy)(void*) noexcept;
  };
  template <class Fn>
  static constexpr Ops inline_ops{
      [](void* s, Args&&... args) -> R { return (*static_cast<Fn*>(s))(std::forward<Args>(args)...); },
      std::is_trivially_copyable_v<Fn> ? nullptr
                                       : +[](void* from, void* to) noexcept {
                                           ::new (to) Fn(std::move(*static_cast<Fn*>(from)));
                                           static_cast<Fn*>(from)->~Fn();
                                         },
      std::is_trivially_destructible_v<Fn> ? nullptr : +[](void* s) noexcept { static_cast<Fn*>(s)->~Fn(); }};
  template <class Fn>
  static constexpr Ops boxed_ops{
      [](void* s, Args&&... args) -> R { return (**static_cast<Fn**>(s))(std::forward<Args>(args)...); },
      nullptr,  // the storage holds just the pointer
      [](void* s) noexcept { delete *static_cast<Fn**>(s); }};

  void relocate_from(InlineFunction& other) noexcept {
    if (ops_->relocate) {
      ops_->relocate(other.storage_, storage_);
    } else {
      // The whole slot, a fixed size the compiler copies inline; bytes past
      // the callable are copied but never read.
      std::memcpy(storage_, other.storage_, Capacity);
    }
  }

  const Ops* ops_ = nullptr;
  alignas(std::max_align_t) unsigned char storage_[Capacity];
};

/// A unit of work for a shard: 64 bytes, 48 of them for the callable's captures.
using Job = InlineFunction<void(), 48>;
static_assert(sizeof(Job) == 64);

}  // namespace ringshard
