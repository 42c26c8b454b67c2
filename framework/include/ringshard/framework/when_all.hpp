// when_all: a handful of tasks at once on the calling shard.
//
//   auto [user, stock] = co_await ringshard::when_all(load_user(id), load_stock(item));
//   std::vector<int> sizes = co_await ringshard::when_all(std::move(tasks));
//
// - Each task runs as a task of its own on the calling shard (they take
//   turns at their awaits; no thread is involved); when_all resumes once
//   every one has ended, with their values in order (std::monostate for a
//   Task<void>).
// - An exception from one does not stop the others: once all have ended,
//   the first one's (in argument order) is rethrown.
// - Cancelling the awaiting task cancels every one of them (each resumes
//   with operation_canceled where it waits) and when_all resumes when they
//   have ended; a task that ended without a value then makes it throw
//   std::system_error(operation_canceled). Stopping the awaiting task stops
//   them.
#pragma once

#include <array>
#include <cstddef>
#include <exception>
#include <optional>
#include <span>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "ringshard/framework/task.hpp"

namespace ringshard {

/// What awaiting a Task<T> gives, with void as std::monostate.
template <class T>
using TaskValue = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

namespace detail {

/// The await of when_all: starts the children as roots of their own and
/// resumes when the last one ended.
class Gather final : public Suspension {
 public:
  Gather(std::span<Task<>> children, std::span<TaskHandle> handles) noexcept
      : children_(children), handles_(handles) {}
  Gather(const Gather&) = delete;
  Gather& operator=(const Gather&) = delete;
  ~Gather();

  bool await_ready() const noexcept { return children_.empty(); }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    return suspend(h, root_of(h));
  }
  void await_resume() const noexcept {}

  bool cancel() noexcept override;
  void resume_cancelled() noexcept override { h_.resume(); }

 private:
  bool suspend(std::coroutine_handle<> h, TaskRoot* root) noexcept;
  static void child_ended(void* self, std::exception_ptr error) noexcept;
  void resume_later() noexcept;

  std::span<Task<>> children_;
  std::span<TaskHandle> handles_;
  std::size_t remaining_ = 0;
  std::coroutine_handle<> h_{};
  TaskRoot* root_ = nullptr;
  bool armed_ = false;       // the last child ending resumes the awaiter
  bool cancelling_ = false;  // cancel() returned false: the root waits for settled()
};

template <class T>
Task<> gather_child(Task<T> task, std::optional<TaskValue<T>>* slot, std::exception_ptr* error) {
  try {
    if constexpr (std::is_void_v<T>) {
      co_await task;
      slot->emplace();
    } else {
      T value = co_await task;
      slot->emplace(std::move(value));
    }
  } catch (...) {
    *error = std::current_exception();
  }
}

template <class V>
V take_gathered(std::optional<V>& slot) {
  if (!slot) throw std::system_error(std::make_error_code(std::errc::operation_canceled), "when_all");
  return std::move(*slot);
}

template <class Slots, std::size_t... I, class... T>
std::array<Task<>, sizeof...(T)> gather_children(Slots& slots, std::exception_ptr* errors, std::index_sequence<I...>,
                                                 Task<T>... tasks) {
  return {gather_child(std::move(tasks), &std::get<I>(slots), &errors[I])...};
}

}  // namespace detail

template <class... T>
Task<std::tuple<TaskValue<T>...>> when_all(Task<T>... tasks) {
  constexpr std::size_t n = sizeof...(T);
  std::tuple<std::optional<TaskValue<T>>...> slots;
  std::array<std::exception_ptr, n> errors{};
  std::array<Task<>, n> children =
      detail::gather_children(slots, errors.data(), std::index_sequence_for<T...>{}, std::move(tasks)...);
  std::array<TaskHandle, n> handles{};
  detail::Gather gather(children, handles);
  co_await gather;
  for (std::exception_ptr& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  co_return std::apply([](auto&... slot) { return std::tuple<TaskValue<T>...>(detail::take_gathered(slot)...); },
                       slots);
}

template <class T>
Task<std::vector<TaskValue<T>>> when_all(std::vector<Task<T>> tasks) {
  std::vector<std::optional<TaskValue<T>>> slots(tasks.size());
  std::vector<std::exception_ptr> errors(tasks.size());
  std::vector<Task<>> children;
  children.reserve(tasks.size());
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    children.push_back(detail::gather_child(std::move(tasks[i]), &slots[i], &errors[i]));
  }
  std::vector<TaskHandle> handles(tasks.size());
  detail::Gather gather(children, handles);
  co_await gather;
  for (std::exception_ptr& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  std::vector<TaskValue<T>> values;
  values.reserve(slots.size());
  for (auto& slot : slots) values.push_back(detail::take_gathered(slot));
  co_return values;
}

}  // namespace ringshard
