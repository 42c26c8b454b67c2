#include "ringshard/net/reply_queue.hpp"

#include "ringshard/net/connection.hpp"
#include "ringshard/net/detail/ordered_slots.hpp"

namespace ringshard::net {

namespace detail {

struct ReplyCore {
  struct Slot {
    std::string bytes;
    bool ready = false;
    bool abandoned = false;
    void reset() noexcept {
      bytes.clear();
      ready = false;
      abandoned = false;
    }
  };

  ConnectionCore* conn;
  std::size_t max_open;
  std::string abandoned_reply;
  OrderedSlots<Slot> slots;
  bool closed = false;  // an abandoned slot closed the stream: nothing more leaves

  void fill(std::uint64_t seq, std::string&& bytes, bool abandoned) {
    Slot* s = slots.find(seq);
    if (s == nullptr || s->ready) return;
    s->ready = true;
    s->abandoned = abandoned;
    s->bytes = std::move(bytes);
    release();
  }

  // Sends the filled slots at the front, in order.
  void release() {
    if (conn == nullptr) return;
    bool left = false;
    while (!slots.empty() && slots.front().ready) {
      Slot& s = slots.front();
      if (!closed) {
        if (s.abandoned && abandoned_reply.empty()) {
          closed = true;
          conn->close();  // after the replies queued before this one
        } else if (s.abandoned) {
          conn->send(std::string_view(abandoned_reply));
        } else {
          conn->send(std::move(s.bytes));
        }
      }
      slots.pop();
      left = true;
    }
    if (!left) return;
    if (slots.size() < max_open) conn->set_paused(ConnectionCore::kPausedByReplies, false);
    conn->check_done();
  }
};

}  // namespace detail

ReplyQueue::ReplyQueue(ConnectionCore& connection, std::size_t max_open, std::string abandoned_reply)
    : core_(std::make_shared<detail::ReplyCore>(
          detail::ReplyCore{&connection, max_open == 0 ? 1 : max_open, std::move(abandoned_reply), {}, false})) {
  connection.replies_ = this;
}

ReplyQueue::~ReplyQueue() {
  if (core_->conn != nullptr) {
    core_->conn->replies_ = nullptr;
    core_->conn->set_paused(ConnectionCore::kPausedByReplies, false);
  }
  core_->conn = nullptr;
}

void ReplyQueue::detach() noexcept { core_->conn = nullptr; }

ReplySlot ReplyQueue::reserve() {
  const std::uint64_t seq = core_->slots.push().second;
  if (core_->conn != nullptr && core_->slots.size() >= core_->max_open) {
    core_->conn->set_paused(ConnectionCore::kPausedByReplies, true);
  }
  return ReplySlot(core_, seq);
}

std::size_t ReplyQueue::open() const noexcept { return core_->slots.size(); }
std::size_t ReplyQueue::max_open() const noexcept { return core_->max_open; }

// ---- ReplySlot -----------------------------------------------------------------------

ReplySlot::ReplySlot(ReplySlot&& other) noexcept
    : core_(std::move(other.core_)), seq_(other.seq_), owed_(std::exchange(other.owed_, false)) {}

ReplySlot& ReplySlot::operator=(ReplySlot&& other) noexcept {
  if (this != &other) {
    abandon();
    core_ = std::move(other.core_);
    seq_ = other.seq_;
    owed_ = std::exchange(other.owed_, false);
  }
  return *this;
}

ReplySlot::~ReplySlot() { abandon(); }

void ReplySlot::operator()(std::string&& bytes) {
  if (!owed_) return;
  owed_ = false;
  if (auto core = core_.lock()) core->fill(seq_, std::move(bytes), false);
}

void ReplySlot::abandon() noexcept {
  if (!owed_) return;
  owed_ = false;
  if (auto core = core_.lock()) {
    try {
      core->fill(seq_, std::string(), true);
    } catch (...) {
      // fill() allocates nothing for an abandoned slot; sending may, and a
      // failure there leaves the connection to its own error handling.
    }
  }
}

}  // namespace ringshard::net
