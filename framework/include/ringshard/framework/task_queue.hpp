// TaskQueue: a single-threaded FIFO of Tasks on a power-of-two ring buffer.
// It grows by doubling and never shrinks, so a shard's run queue stops
// allocating once it has seen its peak.
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <utility>

#include "ringshard/framework/task.hpp"

namespace ringshard {

class TaskQueue {
 public:
  explicit TaskQueue(std::size_t initial_capacity = 1024) : mask_(round_up(initial_capacity) - 1) {
    slots_ = allocate(mask_ + 1);
  }
  ~TaskQueue() {
    while (!empty()) pop_front().reset();
    deallocate(slots_);
  }
  TaskQueue(const TaskQueue&) = delete;
  TaskQueue& operator=(const TaskQueue&) = delete;

  [[nodiscard]] bool empty() const noexcept { return head_ == tail_; }
  [[nodiscard]] std::size_t size() const noexcept { return tail_ - head_; }
  [[nodiscard]] std::size_t capacity() const noexcept { return mask_ + 1; }

  void push_back(Task&& t) {
    if (size() == capacity()) grow();
    ::new (static_cast<void*>(&slots_[tail_ & mask_])) Task(std::move(t));
    ++tail_;
  }
  template <class F>
  void emplace_back(F&& f) {
    if (size() == capacity()) grow();
    ::new (static_cast<void*>(&slots_[tail_ & mask_])) Task(std::forward<F>(f));
    ++tail_;
  }
  /// Removes and returns the oldest task. Precondition: !empty().
  Task pop_front() noexcept {
    Task* slot = &slots_[head_ & mask_];
    Task t(std::move(*slot));
    slot->~Task();
    ++head_;
    return t;
  }
  /// Removes the oldest task, then runs it. It is taken out of its slot first:
  /// the task may push enough to make the queue grow, which moves every slot.
  void run_front() {
    Task t = pop_front();
    t();
  }

 private:
  static std::size_t round_up(std::size_t n) {
    std::size_t c = 16;
    while (c < n) c <<= 1;
    return c;
  }
  static Task* allocate(std::size_t n) {
    return static_cast<Task*>(::operator new(n * sizeof(Task), std::align_val_t{alignof(Task)}));
  }
  static void deallocate(Task* p) { ::operator delete(p, std::align_val_t{alignof(Task)}); }
  void grow() {
    const std::size_t cap = capacity();
    Task* bigger = allocate(cap * 2);
    std::size_t i = 0;
    for (std::size_t pos = head_; pos != tail_; ++pos, ++i) {
      Task* from = &slots_[pos & mask_];
      ::new (static_cast<void*>(&bigger[i])) Task(std::move(*from));
      from->~Task();
    }
    deallocate(slots_);
    slots_ = bigger;
    head_ = 0;
    tail_ = i;
    mask_ = cap * 2 - 1;
  }

  Task* slots_;
  std::size_t mask_;
  std::size_t head_ = 0;
  std::size_t tail_ = 0;
};

}  // namespace ringshard
