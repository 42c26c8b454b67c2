// Address: an IPv4, IPv6 or Unix-domain socket address.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace ringshard::net {

class Address {
 public:
  Address() = default;
  /// "127.0.0.1:8080", "[::1]:8080", "*:8080" / ":8080" (all IPv4 interfaces),
  /// "unix:/path/to/socket". Numeric hosts only (no name lookup). Throws
  /// std::invalid_argument with the reason.
  static Address parse(std::string_view text);
  static Address ipv4(std::string_view host, std::uint16_t port);
  static Address ipv6(std::string_view host, std::uint16_t port);
  static Address unix_path(std::string_view path);
  /// The local (or, with peer = true, remote) address of a socket.
  static Address of_socket(int fd, bool peer = false);

  [[nodiscard]] const sockaddr* get() const noexcept { return reinterpret_cast<const sockaddr*>(&storage_); }
  [[nodiscard]] socklen_t length() const noexcept { return length_; }
  [[nodiscard]] int family() const noexcept { return storage_.ss_family; }
  [[nodiscard]] bool is_unix() const noexcept { return family() == AF_UNIX; }
  /// 0 for Unix-domain addresses.
  [[nodiscard]] std::uint16_t port() const noexcept;
  /// "127.0.0.1:8080", "[::1]:8080", "unix:/path".
  [[nodiscard]] std::string to_string() const;

 private:
  sockaddr_storage storage_{};
  socklen_t length_ = 0;
};

}  // namespace ringshard::net
