#pragma once
// Why a connection closed (ConnectionCore::on_close, the metrics).

namespace ringshard::net {

enum class CloseReason {
  closed,          ///< close() by this side, after everything queued was sent
  aborted,         ///< abort() by this side
  peer_closed,     ///< the peer closed (or shut down its sending side) cleanly
  peer_reset,      ///< the peer reset the connection
  error,           ///< a socket error (see the connection's last_error())
  idle_timeout,    ///< nothing sent or received within the idle timeout
  read_timeout,    ///< nothing received within the read timeout
  connect_failed,  ///< a client connection could not be established
  shutdown,        ///< the shard is stopping
  input_too_large, ///< buffered input passed ConnectionOptions::max_input_bytes
  send_timeout,    ///< bytes were queued and the peer took none within the send timeout
  timeout,         ///< the application's own timeout (see ConnectionCore::timed_out)
};
const char* to_string(CloseReason reason) noexcept;

}  // namespace ringshard::net
