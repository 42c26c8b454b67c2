#include "send_queue.hpp"

#include <exception>
#include <utility>

#include "ringshard/framework/log.hpp"

namespace ringshard::net::detail {

SendBlockPool::~SendBlockPool() {
  while (spare_ != nullptr) delete std::exchange(spare_, spare_->next);
}

SendBlock* SendBlockPool::take() {
  if (spare_ == nullptr) return new SendBlock;
  SendBlock* b = std::exchange(spare_, spare_->next);
  --count_;
  b->next = nullptr;
  return b;
}

std::size_t SendBlockPool::release() noexcept {
  const std::size_t freed = count_ * sizeof(SendBlock);
  while (spare_ != nullptr) delete std::exchange(spare_, spare_->next);
  count_ = 0;
  return freed;
}

void SendBlockPool::give(SendBlock* block) noexcept {
  if (count_ >= kMaxSpare) {
    delete block;
    return;
  }
  block->next = spare_;
  spare_ = block;
  ++count_;
}

SendEntry& SendQueue::push_back() {
  if (tail_ == nullptr || tail_index_ == SendBlock::kEntries) {
    SendBlock* b = pool_->take();
    if (tail_ == nullptr) {
      head_ = tail_ = b;
      head_index_ = 0;
    } else {
      tail_->next = b;
      tail_ = b;
    }
    tail_index_ = 0;
  }
  ++size_;
  return tail_->entries[tail_index_++];
}

void SendQueue::Done::run() noexcept {
  if (!done) return;
  try {
    done(sent);
  } catch (const std::exception& e) {
    RINGSHARD_LOG_ERROR("a send's completion callback threw: {}", e.what());
  } catch (...) {
    RINGSHARD_LOG_ERROR("a send's completion callback threw an unknown exception");
  }
}

SendQueue::Done SendQueue::release(SendEntry& e, bool sent) noexcept {
  Done d;
  if (auto* ext = std::get_if<External>(&e.body)) {
    d.done = std::move(ext->done);
    d.sent = sent && e.offset == ext->size;
  }
  e.body.emplace<std::monostate>();
  e.offset = 0;
  return d;
}

void SendQueue::pop_front(bool sent) noexcept {
  Done d = release(front(), sent);
  --size_;
  if (++head_index_ == SendBlock::kEntries || size_ == 0) {
    SendBlock* b = head_;
    if (size_ == 0) {
      head_ = tail_ = nullptr;
      head_index_ = tail_index_ = 0;
    } else {
      head_ = b->next;
      head_index_ = 0;
    }
    pool_->give(b);
  }
  d.run();  // last: the callback may queue more
}

void SendQueue::truncate(std::size_t keep) noexcept {
  while (size_ > keep) {
    Done d = release(back(), false);
    --size_;
    --tail_index_;
    if (size_ == 0) {
      pool_->give(head_);
      head_ = tail_ = nullptr;
      head_index_ = tail_index_ = 0;
    } else if (tail_index_ == 0) {
      // The tail block is empty: the new tail is the block before it.
      SendBlock* b = head_;
      while (b->next != tail_) b = b->next;
      pool_->give(tail_);
      b->next = nullptr;
      tail_ = b;
      tail_index_ = SendBlock::kEntries;
    }
    d.run();  // may queue more: the loop goes on from the new size
  }
}

}  // namespace ringshard::net::detail
