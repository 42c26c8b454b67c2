// Responder: the right to answer one request, now or later.
#pragma once

#include <cstdint>
#include <memory>

#include "ringshard/net/http/message.hpp"

namespace ringshard::net::http {

namespace detail {
class SessionCore;
}

/// Move-only handle a handler receives to answer its request, at once or
/// later (for instance after asking an actor on another shard). Responses
/// still go out in request order: an answer to a later request waits for the
/// earlier ones.
///
/// - Answering after the session is gone (connection closed) does nothing.
/// - A Responder dropped without answering answers 500, so the responses
///   pipelined behind it are not held forever.
/// - Not thread-safe: call it on the shard thread that owns the connection.
class Responder {
 public:
  Responder() noexcept = default;
  Responder(Responder&& other) noexcept;
  /// Answers 500 for the request this one still owed, then takes `other`'s.
  Responder& operator=(Responder&& other) noexcept;
  Responder(const Responder&) = delete;
  Responder& operator=(const Responder&) = delete;
  ~Responder();

  /// Answers the request. Only the first call counts; later calls and calls
  /// after the session is gone do nothing.
  void operator()(Response response);

  /// True while this Responder still owes an answer.
  [[nodiscard]] explicit operator bool() const noexcept { return owed_; }
  /// True while answering would still reach the connection.
  [[nodiscard]] bool session_alive() const noexcept;

 private:
  friend class detail::SessionCore;
  Responder(std::weak_ptr<detail::SessionCore> core, std::uint64_t seq) noexcept
      : core_(std::move(core)), seq_(seq), owed_(true) {}
  void answer_internal_error() noexcept;

  std::weak_ptr<detail::SessionCore> core_;
  std::uint64_t seq_ = 0;
  bool owed_ = false;
};

}  // namespace ringshard::net::http
