#include "ringshard/net/address.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <charconv>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace ringshard::net {

namespace {
std::uint16_t parse_port(std::string_view text, std::string_view whole) {
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value > 65535 || text.empty()) {
    throw std::invalid_argument("bad port in address '" + std::string(whole) + "'");
  }
  return static_cast<std::uint16_t>(value);
}
}  // namespace

Address Address::ipv4(std::string_view host, std::uint16_t port) {
  Address a;
  auto* sin = reinterpret_cast<sockaddr_in*>(&a.storage_);
  sin->sin_family = AF_INET;
  sin->sin_port = htons(port);
  const std::string h(host.empty() || host == "*" ? "0.0.0.0" : std::string(host));
  if (::inet_pton(AF_INET, h.c_str(), &sin->sin_addr) != 1) {
    throw std::invalid_argument("not an IPv4 address: '" + h + "'");
  }
  a.length_ = sizeof(sockaddr_in);
  return a;
}

Address Address::ipv6(std::string_view host, std::uint16_t port) {
  Address a;
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&a.storage_);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(port);
  const std::string h(host.empty() ? "::" : std::string(host));
  if (::inet_pton(AF_INET6, h.c_str(), &sin6->sin6_addr) != 1) {
    throw std::invalid_argument("not an IPv6 address: '" + h + "'");
  }
  a.length_ = sizeof(sockaddr_in6);
  return a;
}

Address Address::unix_path(std::string_view path) {
  Address a;
  auto* sun = reinterpret_cast<sockaddr_un*>(&a.storage_);
  if (path.empty() || path.size() >= sizeof(sun->sun_path)) {
    throw std::invalid_argument("Unix socket path empty or longer than " +
                                std::to_string(sizeof(sun->sun_path) - 1) + " bytes");
  }
  sun->sun_family = AF_UNIX;
  std::memcpy(sun->sun_path, path.data(), path.size());
  a.length_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  return a;
}

Address Address::parse(std::string_view text) {
  if (text.rfind("unix:", 0) == 0) return unix_path(text.substr(5));
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      throw std::invalid_argument("expected [IPv6]:port, got '" + std::string(text) + "'");
    }
    return ipv6(text.substr(1, close - 1), parse_port(text.substr(close + 2), text));
  }
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    throw std::invalid_argument("expected host:port, got '" + std::string(text) + "'");
  }
  return ipv4(text.substr(0, colon), parse_port(text.substr(colon + 1), text));
}

Address Address::of_socket(int fd, bool peer) {
  Address a;
  a.length_ = sizeof(a.storage_);
  const int rc = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&a.storage_), &a.length_)
                      : ::getsockname(fd, reinterpret_cast<sockaddr*>(&a.storage_), &a.length_);
  if (rc != 0) throw std::system_error(errno, std::generic_category(), peer ? "getpeername" : "getsockname");
  return a;
}

std::uint16_t Address::port() const noexcept {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
  if (family() == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
  return 0;
}

std::string Address::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family() == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(port());
  }
  if (family() == AF_INET6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, buf, sizeof buf);
    // Built by appending: g++ 12 -O3 warns falsely (-Wrestrict) on "[" + std::string.
    std::string out = "[";
    out.append(buf).append("]:").append(std::to_string(port()));
    return out;
  }
  if (family() == AF_UNIX) {
    const auto* sun = reinterpret_cast<const sockaddr_un*>(&storage_);
    std::string out = "unix:";
    out.append(sun->sun_path);
    return out;
  }
  return "unspecified";
}

}  // namespace ringshard::net
