// submit_to: run a step on another shard and come back.
//
//   // on any shard, in a Task:
//   std::size_t n = co_await ringshard::submit_to(2, [key] { return table_on_this_shard().count(key); });
//   auto v = co_await ringshard::submit_to(0, [key]() -> Task<std::string> { co_return co_await load(key); });
//
// - fn runs on shard `shard` of the calling shard's runtime (from its run
//   queue; the calling shard's own index works too) and the awaiting task
//   resumes on its own shard with fn's result. fn may return a value, void,
//   or a Task (started there as a task of its own and awaited there).
// - An exception from fn (or from its Task) is rethrown to the awaiter.
// - fn, its result and its exception cross threads: capture by value, and
//   nothing that belongs to the calling shard.
// - Cancelling the awaiting task resumes it at once with
//   std::system_error(operation_canceled); fn still runs there (a Task of
//   fn's goes on) and its result is dropped. Stopping it drops the result
//   the same way. A shard index out of range throws std::out_of_range.
// - When the runtime stops, work not done yet on the other shard is dropped
//   with everything else: a task waiting for it is stopped with its shard.
//
// g++ 12 (Debian bookworm's compiler) destroys a lambda written inside a
// co_await expression twice when it captures something with a destructor
// (a std::string, a vector): a crash or a bad free. Pass such values as
// arguments instead, `co_await submit_to(n, [](std::string k) {...}, key)`,
// or build the lambda in a local first. Lambdas that capture nothing, or
// only pointers and numbers, are fine; clang is not affected.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <type_traits>
#include <utility>

#include "ringshard/framework/shard.hpp"
#include "ringshard/framework/task.hpp"
#include "ringshard/framework/when_all.hpp"

namespace ringshard {

namespace detail {

template <class R>
struct SubmitValue {
  using type = R;
  static constexpr bool is_task = false;
};
template <class U>
struct SubmitValue<Task<U>> {
  using type = U;
  static constexpr bool is_task = true;
};

}  // namespace detail

template <class F>
class SubmitAwait final : public Suspension {
  using R = std::invoke_result_t<F&>;
  using T = typename detail::SubmitValue<R>::type;

  struct Outcome {
    std::optional<TaskValue<T>> value;
    std::exception_ptr error;
  };
  // Where the result goes back to; checked there before it is used.
  struct Back {
    Runtime* runtime;
    unsigned shard;
    TaskRoot* root;
    std::uint32_t generation;
    std::uint64_t suspensions;
    SubmitAwait* self;
  };

 public:
  SubmitAwait(unsigned shard, F fn) : target_(shard), fn_(std::move(fn)) {}
  SubmitAwait(const SubmitAwait&) = delete;
  SubmitAwait& operator=(const SubmitAwait&) = delete;

  bool await_ready() const noexcept { return false; }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    Shard* here = Shard::current();
    if (here == nullptr) throw std::logic_error("ringshard: co_await submit_to() outside a shard thread");
    Runtime& runtime = here->runtime();
    if (target_ >= runtime.shard_count()) throw std::out_of_range("ringshard: submit_to: no such shard");
    TaskRoot* root = detail::root_of(h);
    if (root != nullptr) {
      const TaskRoot::Admit admit = root->suspend_in(*this);
      if (admit == TaskRoot::Admit::cancelled) {
        cancelled_ = true;
        return false;
      }
      if (admit == TaskRoot::Admit::parked) return true;
    }
    h_ = h;
    Back back{&runtime, here->id(), root, root ? root->generation() : 0, root ? root->suspensions() : 0, this};
    try {
      runtime.post(target_, Job([fn = std::move(fn_), back]() mutable { run_there(std::move(fn), back); }));
    } catch (...) {
      if (root != nullptr) root->resumed();
      throw;
    }
    return true;
  }
  T await_resume() {
    if (cancelled_) throw std::system_error(std::make_error_code(std::errc::operation_canceled), "submit_to");
    if (outcome_.error) std::rethrow_exception(outcome_.error);
    if constexpr (!std::is_void_v<T>) return std::move(*outcome_.value);
  }

  bool cancel() noexcept override { return true; }  // the result, when it comes, is dropped
  void resume_cancelled() noexcept override {
    cancelled_ = true;
    h_.resume();
  }

 private:
  static void run_there(F fn, Back back) {
    if constexpr (detail::SubmitValue<R>::is_task) {
      std::optional<R> task;
      try {
        task.emplace(fn());
      } catch (...) {
        deliver(back, Outcome{std::nullopt, std::current_exception()});
        return;
      }
      spawn(await_there(std::move(*task), back));
    } else {
      Outcome outcome;
      try {
        if constexpr (std::is_void_v<T>) {
          fn();
          outcome.value.emplace();
        } else {
          outcome.value.emplace(fn());
        }
      } catch (...) {
        outcome.error = std::current_exception();
      }
      deliver(back, std::move(outcome));
    }
  }
  static Task<> await_there(Task<T> task, Back back) {
    Outcome outcome;
    try {
      if constexpr (std::is_void_v<T>) {
        co_await task;
        outcome.value.emplace();
      } else {
        T value = co_await task;
        outcome.value.emplace(std::move(value));
      }
    } catch (...) {
      outcome.error = std::current_exception();
    }
    deliver(back, std::move(outcome));
  }
  static void deliver(const Back& back, Outcome outcome) {
    back.runtime->post(back.shard, Job([back, outcome = std::move(outcome)]() mutable {
      if (TaskRoot* root = back.root) {
        if (root->generation() != back.generation || root->suspensions() != back.suspensions ||
            root->pending() != back.self) {
          return;  // cancelled or stopped meanwhile
        }
        root->resumed();
      }
      back.self->outcome_ = std::move(outcome);
      back.self->h_.resume();
    }));
  }

  unsigned target_;
  F fn_;
  std::coroutine_handle<> h_{};
  Outcome outcome_{};
  bool cancelled_ = false;
};

/// co_await submit_to(shard, fn): see the file comment.
template <class F>
  requires std::is_invocable_v<std::decay_t<F>&>
[[nodiscard]] SubmitAwait<std::decay_t<F>> submit_to(unsigned shard, F&& fn) {
  return SubmitAwait<std::decay_t<F>>(shard, std::forward<F>(fn));
}

/// co_await submit_to(shard, fn, args...): fn(args...) there, the arguments
/// copied or moved along (the way to hand a step its values on g++ 12: see
/// the file comment).
template <class F, class... Args>
  requires(sizeof...(Args) > 0 && std::is_invocable_v<std::decay_t<F>&, std::decay_t<Args>...>)
[[nodiscard]] auto submit_to(unsigned shard, F&& fn, Args&&... args) {
  auto bound = [fn = std::forward<F>(fn), ... args = std::forward<Args>(args)]() mutable {
    return std::invoke(fn, std::move(args)...);
  };
  return SubmitAwait<decltype(bound)>(shard, std::move(bound));
}

}  // namespace ringshard
