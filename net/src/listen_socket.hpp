// The listening socket of listen() and StreamListener.
#pragma once

#include "ringshard/net/listener.hpp"

namespace ringshard::net::detail {

/// socket, SO_REUSEADDR (and SO_REUSEPORT), bind and listen with
/// options.backlog; throws std::system_error naming the step.
int open_listening_socket(const ListenOptions& options, const Address& address, bool reuse_port);

}  // namespace ringshard::net::detail
