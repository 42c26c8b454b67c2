// JobQueue: a single-threaded FIFO of Tasks on a power-of-two ring buffer.
// It grows by doubling and shrinks only when asked (shrink()), so a shard's
// run queue stops allocating once it has seen its peak, and an idle shard can
// give a burst's peak back.
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <utility>

#include "ringshard/framework/job.hpp"

namespace ringshard {

class JobQueue {
 public:
  explicit JobQueue(std::size_t initial_capacity = 1024) : mask_(round_up(initial_capacity) - 1) {
    slots_ = allocate(mask_ + 1);
  }
  ~JobQueue() {
    while (!empty()) pop_front().reset();
    deallocate(slots_);
  }
  JobQueue(const JobQueue&) = delete;
  JobQueue& operator=(const JobQueue&) = delete;

  [[nodiscard]] bool empty() const noexcept { return head_ == tail_; }
  [[nodiscard]] std::size_t size() const noexcept { return tail_ - head_; }
  [[nodiscard]] std::size_t capacity() const noexcept { return mask_ + 1; }

  void push_back(Job&& t) {
    if (size() == capacity()) grow();
    ::new (static_cast<void*>(&slots_[tail_ & mask_])) Job(std::move(t));
    ++tail_;
  }
  template <class F>
  void emplace_back(F&& f) {
    if (size() == capacity()) grow();
    ::new (static_cast<void*>(&slots_[tail_ & mask_])) Job(std::forward<F>(f));
    ++tail_;
  }
  /// Removes and returns the oldest task. Precondition: !empty().
  Job pop_front() noexcept {
    Job* slot = &slots_[head_ & mask_];
    Job t(std::move(*slot));
    slot->~Job();
    ++head_;
    return t;
  }
  /// Gives memory back after a burst: a queue that grew past `keep` slots
  /// (rounded up to a power of two) and holds at most half of that now
  /// moves its jobs to a ring of `keep` slots. Returns the bytes freed.
  std::size_t shrink(std::size_t keep = 1024) {
    keep = round_up(keep);
    if (capacity() <= keep || size() > keep / 2) return 0;
    const std::size_t freed = (capacity() - keep) * sizeof(Job);
    reallocate(keep);
    return freed;
  }
  /// Removes the oldest task, then runs it. It is taken out of its slot first:
  /// the task may push enough to make the queue grow, which moves every slot.
  void run_front() {
    Job t = pop_front();
    t();
  }

 private:
  static std::size_t round_up(std::size_t n) {
    std::size_t c = 16;
    while (c < n) c <<= 1;
    return c;
  }
  static Job* allocate(std::size_t n) {
    return static_cast<Job*>(::operator new(n * sizeof(Job), std::align_val_t{alignof(Job)}));
  }
  static void deallocate(Job* p) { ::operator delete(p, std::align_val_t{alignof(Job)}); }
  void grow() { reallocate(capacity() * 2); }
  // Moves the jobs, in order, to a new ring of `cap` slots (cap >= size()).
  void reallocate(std::size_t cap) {
    Job* fresh = allocate(cap);
    std::size_t i = 0;
    for (std::size_t pos = head_; pos != tail_; ++pos, ++i) {
      Job* from = &slots_[pos & mask_];
      ::new (static_cast<void*>(&fresh[i])) Job(std::move(*from));
      from->~Job();
    }
    deallocate(slots_);
    slots_ = fresh;
    head_ = 0;
    tail_ = i;
    mask_ = cap - 1;
  }

  Job* slots_;
  std::size_t mask_;
  std::size_t head_ = 0;
  std::size_t tail_ = 0;
};

}  // namespace ringshard
