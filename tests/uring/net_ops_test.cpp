// Network opcodes against the running kernel: socket setup (socket, bind,
// listen, connect, accept in all their forms, shutdown), data transfer (send,
// sendto, bundles, recv, multishot recv with a buffer ring, sendmsg, recvmsg,
// multishot recvmsg, zero-copy sends, recv_zc) and socket commands.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <poll.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "support.hpp"

using namespace ringshard;
using namespace ringshard::uring;
using namespace std::chrono_literals;
using ringshard::test::Fd;
using ringshard::test::next_sqe;
using ringshard::test::reap_within;
using ringshard::test::reap_n;
using ringshard::test::by_data;
using ringshard::test::no_cqe_within;

namespace {

/// True when no CQE shows up within `quiet` (submits what is pending first).
sockaddr_in loopback(std::uint16_t port_host_order = 0) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port_host_order);
  return addr;
}

const sockaddr* sa(const sockaddr_in& a) { return reinterpret_cast<const sockaddr*>(&a); }
sockaddr* sa(sockaddr_in& a) { return reinterpret_cast<sockaddr*>(&a); }

Fd udp_bound() {
  Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  REQUIRE(s.get() >= 0);
  const sockaddr_in addr = loopback();
  REQUIRE(::bind(s.get(), sa(addr), sizeof addr) == 0);
  return s;
}

Fd tcp_client_to(const sockaddr_in& addr) {
  Fd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(c.get() >= 0);
  REQUIRE(::connect(c.get(), sa(addr), sizeof addr) == 0);
  return c;
}

void send_all(int fd, std::string_view data) {
  REQUIRE(::send(fd, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size()));
}

/// Receives exactly `n` bytes with plain recv(2), giving up after ~4 s.
std::string recv_n(int fd, std::size_t n) {
  std::string out;
  char buf[4096];
  for (int i = 0; i < 200 && out.size() < n; ++i) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 20) <= 0) continue;
    const ssize_t r = ::recv(fd, buf, std::min(sizeof buf, n - out.size()), MSG_DONTWAIT);
    if (r <= 0) break;
    out.append(buf, static_cast<std::size_t>(r));
  }
  return out;
}

/// Waits (bounded) until `fd` has `n` bytes queued for reading.
void wait_readable_bytes(int fd, int n) {
  for (int i = 0; i < 200; ++i) {
    int queued = 0;
    REQUIRE(::ioctl(fd, SIOCINQ, &queued) == 0);
    if (queued >= n) return;
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, 20);
  }
  FAIL("data did not arrive");
}

int sockopt_int(int fd, int level, int name) {
  int v = -1;
  socklen_t len = sizeof v;
  REQUIRE(::getsockopt(fd, level, name, &v, &len) == 0);
  return v;
}

std::uint16_t port_of(const sockaddr_in& a) { return ntohs(a.sin_port); }

std::uint16_t peer_port(int fd) {
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  REQUIRE(::getpeername(fd, sa(addr), &len) == 0);
  return port_of(addr);
}

}  // namespace

// ---- socket setup -----------------------------------------------------------------

TEST_CASE("net ops: socket, bind, listen, accept, connect, send, recv and shutdown make a TCP conversation") {
  RINGSHARD_REQUIRE_OPCODE(IORING_OP_SOCKET);
  RINGSHARD_REQUIRE_OPCODE(abi::op_bind);
  RINGSHARD_REQUIRE_OPCODE(abi::op_listen);
  Ring ring(8);

  prep_socket(next_sqe(ring, 1), AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0, 0);
  io_uring_cqe c = reap_within(ring);
  REQUIRE(c.res >= 0);
  Fd listener(c.res);
  CHECK(sockopt_int(listener.get(), SOL_SOCKET, SO_TYPE) == SOCK_STREAM);
  CHECK(sockopt_int(listener.get(), SOL_SOCKET, SO_DOMAIN) == AF_INET);
  CHECK((::fcntl(listener.get(), F_GETFD) & FD_CLOEXEC) != 0);

  const sockaddr_in want = loopback();
  prep_bind(next_sqe(ring, 2), listener.get(), sa(want), sizeof want);
  c = reap_within(ring);
  REQUIRE(c.res == 0);
  const sockaddr_in bound = test::local_address(listener.get());
  CHECK(bound.sin_addr.s_addr == htonl(INADDR_LOOPBACK));
  CHECK(port_of(bound) != 0);

  CHECK(sockopt_int(listener.get(), SOL_SOCKET, SO_ACCEPTCONN) == 0);
  prep_listen(next_sqe(ring, 3), listener.get(), 8);
  c = reap_within(ring);
  REQUIRE(c.res == 0);
  CHECK(sockopt_int(listener.get(), SOL_SOCKET, SO_ACCEPTCONN) == 1);

  prep_socket(next_sqe(ring, 4), AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0, 0);
  c = reap_within(ring);
  REQUIRE(c.res >= 0);
  Fd client(c.res);

  // The accept waits for the connect submitted with it.
  sockaddr_in peer{};
  socklen_t peer_len = sizeof peer;
  prep_accept(next_sqe(ring, 5), listener.get(), sa(peer), &peer_len, SOCK_CLOEXEC);
  prep_connect(next_sqe(ring, 6), client.get(), sa(bound), sizeof bound);
  auto cqes = reap_n(ring, 2);
  REQUIRE(by_data(cqes, 5).res >= 0);
  Fd server(by_data(cqes, 5).res);
  CHECK(by_data(cqes, 6).res == 0);
  CHECK(peer_len == sizeof(sockaddr_in));
  CHECK(port_of(peer) == port_of(test::local_address(client.get())));
  CHECK(peer_port(client.get()) == port_of(bound));

  // recv first (it parks), then the send that satisfies it.
  const std::string msg = "ping over the ring";
  char buf[64] = {};
  prep_recv(next_sqe(ring, 7), server.get(), MutableBuffer(buf, sizeof buf), 0);
  prep_send(next_sqe(ring, 8), client.get(), ConstBuffer(msg), MSG_NOSIGNAL);
  cqes = reap_n(ring, 2);
  CHECK(by_data(cqes, 8).res == static_cast<int>(msg.size()));
  REQUIRE(by_data(cqes, 7).res == static_cast<int>(msg.size()));
  CHECK(std::string(buf, msg.size()) == msg);

  // Half-close: the server sees end of stream, but can still answer.
  prep_shutdown(next_sqe(ring, 9), client.get(), SHUT_WR);
  c = reap_within(ring);
  CHECK(c.res == 0);
  prep_recv(next_sqe(ring, 10), server.get(), MutableBuffer(buf, sizeof buf), 0);
  c = reap_within(ring);
  CHECK(c.res == 0);
  send_all(server.get(), "pong");
  CHECK(recv_n(client.get(), 4) == "pong");
}

TEST_CASE("net ops: socket_direct and socket_direct_alloc put working sockets in registered slots") {
  RINGSHARD_REQUIRE_OPCODE(IORING_OP_SOCKET);
  Ring ring(8);
  REQUIRE(ring.register_files_sparse(4) == 0);
  const int fds_before = test::open_fd_count();

  prep_socket_direct(next_sqe(ring, 1), AF_INET, SOCK_STREAM, 0, 1, 0);
  CHECK(reap_within(ring).res == 0);
  // The allocator hands out the free slots (it continues after the last
  // installed slot and wraps around), never an occupied one.
  std::set<int> allocated;
  for (std::uint64_t i = 0; i < 3; ++i) {
    prep_socket_direct_alloc(next_sqe(ring, 2 + i), AF_INET, SOCK_STREAM, 0, 0);
    allocated.insert(reap_within(ring).res);
  }
  CHECK(allocated == std::set<int>{0, 2, 3});
  prep_socket_direct_alloc(next_sqe(ring, 5), AF_INET, SOCK_STREAM, 0, 0);
  CHECK(reap_within(ring).res == -ENFILE);  // table full
  CHECK(test::open_fd_count() == fds_before);  // no regular descriptors were created

  Fd listener = test::listen_loopback();
  const sockaddr_in addr = test::local_address(listener.get());
  for (unsigned slot : {1U, 0U, 2U}) {
    CAPTURE(slot);
    prep_connect(next_sqe(ring, 10 + slot), FixedFile{slot}, sa(addr), sizeof addr);
    REQUIRE(reap_within(ring).res == 0);
    Fd server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    REQUIRE(server.get() >= 0);
    const std::string msg = "slot-" + std::to_string(slot);
    prep_send(next_sqe(ring, 20 + slot), FixedFile{slot}, ConstBuffer(msg), MSG_NOSIGNAL);
    CHECK(reap_within(ring).res == static_cast<int>(msg.size()));
    CHECK(recv_n(server.get(), msg.size()) == msg);
  }
}

TEST_CASE("net ops: accept_direct installs accepted connections at a chosen or allocated slot") {
  Ring ring(8);
  REQUIRE(ring.register_files_sparse(4) == 0);
  Fd listener = test::listen_loopback();
  const sockaddr_in addr = test::local_address(listener.get());

  sockaddr_in peer{};
  socklen_t peer_len = sizeof peer;
  prep_accept_direct(next_sqe(ring, 1), listener.get(), sa(peer), &peer_len, 0, 3);
  REQUIRE(ring.submit() == 1);
  CHECK(no_cqe_within(ring, 10ms));  // nobody connected yet
  Fd first = tcp_client_to(addr);
  CHECK(reap_within(ring).res == 0);
  CHECK(port_of(peer) == port_of(test::local_address(first.get())));

  prep_accept_direct(next_sqe(ring, 2), listener.get(), nullptr, nullptr, 0, IORING_FILE_INDEX_ALLOC);
  REQUIRE(ring.submit() == 1);
  Fd second = tcp_client_to(addr);
  CHECK(reap_within(ring).res == 0);  // the allocator wraps around after slot 3

  send_all(first.get(), "one");
  send_all(second.get(), "two");
  char a[8] = {}, b[8] = {};
  prep_recv(next_sqe(ring, 3), FixedFile{3}, MutableBuffer(a, sizeof a), 0);
  prep_recv(next_sqe(ring, 4), FixedFile{0}, MutableBuffer(b, sizeof b), 0);
  const auto cqes = reap_n(ring, 2);
  REQUIRE(by_data(cqes, 3).res == 3);
  REQUIRE(by_data(cqes, 4).res == 3);
  CHECK(std::string(a, 3) == "one");
  CHECK(std::string(b, 3) == "two");
}

TEST_CASE("net ops: multishot accept stays armed (F_MORE) across several clients until cancelled") {
  Ring ring(16);
  Fd listener = test::listen_loopback();
  const sockaddr_in addr = test::local_address(listener.get());
  prep_multishot_accept(next_sqe(ring, 7), listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
  REQUIRE(ring.submit() == 1);

  std::vector<Fd> clients;
  std::set<std::uint16_t> client_ports;
  std::vector<Fd> accepted;
  auto connect_and_accept = [&](int n) {
    for (int i = 0; i < n; ++i) {
      clients.push_back(tcp_client_to(addr));
      client_ports.insert(port_of(test::local_address(clients.back().get())));
    }
    for (int i = 0; i < n; ++i) {
      const io_uring_cqe c = reap_within(ring);
      CHECK(c.user_data == 7);
      REQUIRE(c.res >= 0);
      CHECK(cqe_has_more(&c));
      accepted.emplace_back(c.res);
    }
  };
  connect_and_accept(3);
  CHECK(no_cqe_within(ring, 20ms));
  connect_and_accept(2);  // still armed after the pause

  std::set<std::uint16_t> accepted_ports;
  std::set<int> fds;
  for (const Fd& fd : accepted) {
    accepted_ports.insert(peer_port(fd.get()));
    fds.insert(fd.get());
    CHECK((::fcntl(fd.get(), F_GETFD) & FD_CLOEXEC) != 0);
  }
  CHECK(accepted_ports == client_ports);
  CHECK(fds.size() == 5);

  prep_cancel64(next_sqe(ring, 8), 7, 0);
  const auto cqes = reap_n(ring, 2);
  CHECK(by_data(cqes, 8).res == 0);
  CHECK(by_data(cqes, 7).res == -ECANCELED);
  CHECK_FALSE(cqe_has_more(&by_data(cqes, 7)));
}

TEST_CASE("net ops: multishot accept_direct fills registered slots with usable connections") {
  Ring ring(16);
  REQUIRE(ring.register_files_sparse(8) == 0);
  Fd listener = test::listen_loopback();
  const sockaddr_in addr = test::local_address(listener.get());
  prep_multishot_accept_direct(next_sqe(ring, 7), listener.get(), nullptr, nullptr, 0);
  REQUIRE(ring.submit() == 1);

  std::vector<Fd> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(tcp_client_to(addr));
    send_all(clients.back().get(), "client-" + std::to_string(i));
  }
  std::set<int> slots;
  for (int i = 0; i < 3; ++i) {
    const io_uring_cqe c = reap_within(ring);
    CHECK(c.user_data == 7);
    REQUIRE(c.res >= 0);
    CHECK(c.res < 8);
    CHECK(cqe_has_more(&c));
    slots.insert(c.res);
  }
  REQUIRE(slots.size() == 3);

  std::set<std::string> got;
  for (int slot : slots) {
    char buf[16] = {};
    prep_recv(next_sqe(ring, 100 + static_cast<unsigned>(slot)), FixedFile{static_cast<unsigned>(slot)},
              MutableBuffer(buf, sizeof buf), 0);
    const io_uring_cqe c = reap_within(ring);
    REQUIRE(c.res == 8);
    got.insert(std::string(buf, 8));
  }
  CHECK(got == std::set<std::string>{"client-0", "client-1", "client-2"});

  prep_cancel64(next_sqe(ring, 8), 7, 0);
  const auto cqes = reap_n(ring, 2);
  CHECK(by_data(cqes, 7).res == -ECANCELED);
  CHECK_FALSE(cqe_has_more(&by_data(cqes, 7)));
}

// ---- datagrams and vectored messages ----------------------------------------------

TEST_CASE("net ops: sendto and send_set_addr deliver UDP datagrams to the given address") {
  Ring ring(8);
  Fd a = udp_bound();
  Fd b = udp_bound();
  const sockaddr_in addr_a = test::local_address(a.get());
  const sockaddr_in addr_b = test::local_address(b.get());

  // Without an address an unconnected UDP socket cannot send.
  prep_send(next_sqe(ring, 1), a.get(), ConstBuffer("nowhere"), 0);
  CHECK(reap_within(ring).res == -EDESTADDRREQ);

  prep_sendto(next_sqe(ring, 2), a.get(), ConstBuffer("datagram-to"), 0, sa(addr_b), sizeof addr_b);
  CHECK(reap_within(ring).res == 11);
  io_uring_sqe* sqe = next_sqe(ring, 3);
  prep_send(sqe, a.get(), ConstBuffer("set-addr"), 0);
  prep_send_set_addr(sqe, sa(addr_b), sizeof addr_b);
  CHECK(reap_within(ring).res == 8);

  for (std::string_view want : {std::string_view("datagram-to"), std::string_view("set-addr")}) {
    char buf[32] = {};
    sockaddr_in from{};
    socklen_t from_len = sizeof from;
    pollfd p{b.get(), POLLIN, 0};
    REQUIRE(::poll(&p, 1, 2000) == 1);
    const ssize_t n = ::recvfrom(b.get(), buf, sizeof buf, MSG_DONTWAIT, sa(from), &from_len);
    REQUIRE(n == static_cast<ssize_t>(want.size()));
    CHECK(std::string_view(buf, want.size()) == want);
    CHECK(port_of(from) == port_of(addr_a));
  }
}

TEST_CASE("net ops: sendmsg and recvmsg carry iovec arrays and the peer address over UDP") {
  Ring ring(8);
  Fd a = udp_bound();
  Fd b = udp_bound();
  sockaddr_in addr_b = test::local_address(b.get());
  const sockaddr_in addr_a = test::local_address(a.get());

  char head[] = "head-";
  char tail[] = "tail";
  iovec out_iov[2] = {{head, 5}, {tail, 4}};
  msghdr out{};
  out.msg_name = &addr_b;
  out.msg_namelen = sizeof addr_b;
  out.msg_iov = out_iov;
  out.msg_iovlen = 2;

  char first[3] = {}, second[16] = {};
  iovec in_iov[2] = {{first, sizeof first}, {second, sizeof second}};
  sockaddr_in from{};
  msghdr in{};
  in.msg_name = &from;
  in.msg_namelen = sizeof from;
  in.msg_iov = in_iov;
  in.msg_iovlen = 2;

  prep_recvmsg(next_sqe(ring, 1), b.get(), &in, 0);
  prep_sendmsg(next_sqe(ring, 2), a.get(), &out, 0);
  const auto cqes = reap_n(ring, 2);
  CHECK(by_data(cqes, 2).res == 9);
  REQUIRE(by_data(cqes, 1).res == 9);
  CHECK(std::string(first, 3) == "hea");
  CHECK(std::string(second, 6) == "d-tail");
  CHECK(in.msg_namelen == sizeof(sockaddr_in));
  CHECK(port_of(from) == port_of(addr_a));
  CHECK((in.msg_flags & MSG_TRUNC) == 0);
}

TEST_CASE("net ops: multishot recvmsg over UDP fills ring buffers that RecvmsgOut parses") {
  Ring ring(16);
  constexpr std::uint16_t kGroup = 11;
  constexpr unsigned kBufs = 8;
  constexpr unsigned kSize = 128;
  BufferRing br(ring, kBufs, kGroup);
  std::vector<char> mem(kBufs * kSize);
  for (unsigned i = 0; i < kBufs; ++i)
    br.add(mem.data() + i * kSize, kSize, static_cast<std::uint16_t>(i), static_cast<int>(i));
  br.advance(kBufs);

  Fd a = udp_bound();
  Fd b = udp_bound();
  const sockaddr_in addr_a = test::local_address(a.get());
  const sockaddr_in addr_b = test::local_address(b.get());

  // Ask for IP_PKTINFO so that each buffer also carries a control message.
  int one = 1;
  REQUIRE(::setsockopt(b.get(), IPPROTO_IP, IP_PKTINFO, &one, sizeof one) == 0);
  msghdr msg{};
  msg.msg_namelen = sizeof(sockaddr_in);
  msg.msg_controllen = CMSG_SPACE(sizeof(in_pktinfo));
  io_uring_sqe* sqe = next_sqe(ring, 5);
  prep_recvmsg_multishot(sqe, b.get(), &msg, 0);
  sqe->buf_group = kGroup;
  sqe_add_flags(sqe, IOSQE_BUFFER_SELECT);
  REQUIRE(ring.submit() == 1);

  const std::vector<std::string> sent = {"first datagram", "second", "third one here"};
  for (const auto& s : sent) {
    REQUIRE(::sendto(a.get(), s.data(), s.size(), 0, sa(addr_b), sizeof addr_b) ==
            static_cast<ssize_t>(s.size()));
  }
  std::set<std::uint16_t> bids;
  for (const auto& s : sent) {
    const io_uring_cqe c = reap_within(ring);
    CAPTURE(s);
    CHECK(c.user_data == 5);
    REQUIRE(c.res > 0);
    CHECK(cqe_has_more(&c));
    REQUIRE(cqe_has_buffer(&c));
    const std::uint16_t bid = cqe_buffer_id(&c);
    REQUIRE(bid < kBufs);
    bids.insert(bid);
    RecvmsgOut out(mem.data() + bid * kSize, c.res, msg);
    REQUIRE(out.valid());
    CHECK(out.header().namelen == sizeof(sockaddr_in));
    CHECK(out.header().payloadlen == s.size());
    CHECK((out.header().flags & MSG_TRUNC) == 0);
    sockaddr_in name{};
    std::memcpy(&name, out.name(), sizeof name);
    CHECK(name.sin_family == AF_INET);
    CHECK(port_of(name) == port_of(addr_a));
    CHECK(out.header().controllen == CMSG_SPACE(sizeof(in_pktinfo)));
    cmsghdr* cmsg = out.cmsg_firsthdr();
    REQUIRE(cmsg != nullptr);
    CHECK(cmsg->cmsg_level == IPPROTO_IP);
    CHECK(cmsg->cmsg_type == IP_PKTINFO);
    in_pktinfo info{};
    std::memcpy(&info, CMSG_DATA(cmsg), sizeof info);
    CHECK(info.ipi_addr.s_addr == htonl(INADDR_LOOPBACK));
    CHECK(out.cmsg_nexthdr(cmsg) == nullptr);
    const auto payload = out.payload();
    REQUIRE(payload.size() == s.size());
    CHECK(std::string(reinterpret_cast<const char*>(payload.data()), payload.size()) == s);
  }
  CHECK(bids.size() == sent.size());

  prep_cancel64(next_sqe(ring, 6), 5, 0);
  const auto cqes = reap_n(ring, 2);
  CHECK(by_data(cqes, 5).res == -ECANCELED);
  CHECK_FALSE(cqe_has_more(&by_data(cqes, 5)));
}

// ---- provided buffers -----------------------------------------------------------------

TEST_CASE("net ops: send_bundle sends the contents of several provided buffers in order") {
  Ring ring(8);
  if (!ring.has_feature(IORING_FEAT_RECVSEND_BUNDLE)) RINGSHARD_SKIP("kernel lacks IORING_FEAT_RECVSEND_BUNDLE");
  constexpr std::uint16_t kGroup = 3;
  BufferRing br(ring, 4, kGroup);
  std::string parts[3] = {"alpha", "beta", "gamma"};
  for (int i = 0; i < 3; ++i)
    br.add(parts[i].data(), static_cast<unsigned>(parts[i].size()), static_cast<std::uint16_t>(i), i);
  br.advance(3);

  auto pair = test::tcp_pair();
  prep_send_bundle(next_sqe(ring, 1), pair.client.get(), 0, MSG_NOSIGNAL, kGroup);
  const io_uring_cqe c = reap_within(ring);
  if (c.res == -EINVAL) RINGSHARD_SKIP("the kernel refused a provided-buffer send bundle with -EINVAL");
  REQUIRE(c.res == 14);
  REQUIRE(cqe_has_buffer(&c));
  CHECK(cqe_buffer_id(&c) == 0);  // the first buffer of the bundle
  CHECK(recv_n(pair.server.get(), 14) == "alphabetagamma");
  const int avail = br.available(ring);
  if (avail >= 0) CHECK(avail == 0);  // all three were consumed
}

TEST_CASE("net ops: multishot recv with a buffer ring reports buffer ids, ends with ENOBUFS when dry, and resumes without loss") {
  Ring ring(16);
  constexpr std::uint16_t kGroup = 9;
  constexpr unsigned kBufs = 4;
  constexpr unsigned kSize = 16;
  BufferRing br(ring, kBufs, kGroup);
  std::vector<char> mem(kBufs * kSize);
  auto fill = [&] {
    for (unsigned i = 0; i < kBufs; ++i)
      br.add(mem.data() + i * kSize, kSize, static_cast<std::uint16_t>(i), static_cast<int>(i));
    br.advance(kBufs);
  };
  fill();
  auto pair = test::tcp_pair();

  prep_recv_multishot_group(next_sqe(ring, 1), pair.server.get(), 0, kGroup);
  REQUIRE(ring.submit() == 1);
  CHECK(no_cqe_within(ring, 10ms));

  // One chunk per CQE: each takes the next buffer of the ring.
  for (unsigned i = 0; i < kBufs; ++i) {
    const std::string chunk = "chunk-" + std::to_string(i);
    send_all(pair.client.get(), chunk);
    const io_uring_cqe c = reap_within(ring);
    CAPTURE(i);
    CHECK(c.user_data == 1);
    REQUIRE(c.res == static_cast<int>(chunk.size()));
    CHECK(cqe_has_more(&c));
    REQUIRE(cqe_has_buffer(&c));
    CHECK(cqe_buffer_id(&c) == i);
    CHECK(std::string(mem.data() + cqe_buffer_id(&c) * kSize, chunk.size()) == chunk);
  }
  if (const int avail = br.available(ring); avail >= 0) CHECK(avail == 0);

  // The ring is dry: the next data ends the request, and stays in the socket.
  send_all(pair.client.get(), "chunk-4");
  io_uring_cqe c = reap_within(ring);
  CHECK(c.user_data == 1);
  CHECK(c.res == -ENOBUFS);
  CHECK_FALSE(cqe_has_more(&c));
  CHECK(no_cqe_within(ring, 10ms));

  // Replenish, send more, re-arm: everything arrives, in order.
  fill();
  if (const int avail = br.available(ring); avail >= 0) CHECK(avail == static_cast<int>(kBufs));
  send_all(pair.client.get(), "chunk-5");
  prep_recv_multishot_group(next_sqe(ring, 2), pair.server.get(), 0, kGroup);
  std::string got;
  std::vector<std::uint16_t> bids;
  for (int i = 0; i < 8 && got.size() < 14; ++i) {
    c = reap_within(ring);
    CHECK(c.user_data == 2);
    REQUIRE(c.res > 0);
    CHECK(cqe_has_more(&c));
    REQUIRE(cqe_has_buffer(&c));
    bids.push_back(cqe_buffer_id(&c));
    got.append(mem.data() + cqe_buffer_id(&c) * kSize, static_cast<std::size_t>(c.res));
  }
  CHECK(got == "chunk-4chunk-5");
  REQUIRE_FALSE(bids.empty());
  CHECK(bids.front() == 0);

  prep_cancel64(next_sqe(ring, 3), 2, 0);
  const auto cqes = reap_n(ring, 2);
  CHECK(by_data(cqes, 2).res == -ECANCELED);
}

// ---- zero-copy --------------------------------------------------------------------

namespace {

/// Reaps the two CQEs of a zero-copy send: the result (F_MORE) and the notification (F_NOTIF).
void check_zc_pair(Ring& ring, std::uint64_t user_data, int expected_res) {
  const io_uring_cqe first = reap_within(ring);
  const io_uring_cqe second = reap_within(ring);
  CHECK(first.user_data == user_data);
  CHECK(second.user_data == user_data);
  CHECK(first.res == expected_res);
  CHECK(cqe_has_more(&first));
  CHECK_FALSE(cqe_is_notif(&first));
  CHECK(cqe_is_notif(&second));
  CHECK_FALSE(cqe_has_more(&second));
}

}  // namespace

TEST_CASE("net ops: send_zc and sendmsg_zc post a result CQE with F_MORE, then an F_NOTIF CQE") {
  RINGSHARD_REQUIRE_OPCODE(IORING_OP_SEND_ZC);
  RINGSHARD_REQUIRE_OPCODE(IORING_OP_SENDMSG_ZC);
  Ring ring(8);
  auto pair = test::tcp_pair();

  std::string payload(3000, '\0');
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>('a' + i % 26);
  prep_send_zc(next_sqe(ring, 1), pair.client.get(), ConstBuffer(payload), MSG_NOSIGNAL, 0);
  check_zc_pair(ring, 1, static_cast<int>(payload.size()));
  CHECK(recv_n(pair.server.get(), payload.size()) == payload);

  char p1[] = "zero-";
  char p2[] = "copy msg";
  iovec iov[2] = {{p1, 5}, {p2, 8}};
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = 2;
  prep_sendmsg_zc(next_sqe(ring, 2), pair.client.get(), &msg, MSG_NOSIGNAL);
  check_zc_pair(ring, 2, 13);
  CHECK(recv_n(pair.server.get(), 13) == "zero-copy msg");
}

TEST_CASE("net ops: send_zc_fixed sends from a slice of a registered buffer") {
  RINGSHARD_REQUIRE_OPCODE(IORING_OP_SEND_ZC);
  Ring ring(8);
  auto pair = test::tcp_pair();
  std::vector<char> region(4096);
  for (std::size_t i = 0; i < region.size(); ++i) region[i] = static_cast<char>('A' + i % 23);
  const iovec iov{region.data(), region.size()};
  REQUIRE(ring.register_buffers(std::span<const iovec>(&iov, 1)) == 0);

  prep_send_zc_fixed(next_sqe(ring, 1), pair.client.get(), ConstBuffer(region.data() + 100, 50), MSG_NOSIGNAL, 0, 0);
  check_zc_pair(ring, 1, 50);
  CHECK(recv_n(pair.server.get(), 50) == std::string(region.data() + 100, 50));

  // A slice outside the registered buffer is refused.
  std::vector<char> other(64);
  prep_send_zc_fixed(next_sqe(ring, 2), pair.client.get(), ConstBuffer(other), MSG_NOSIGNAL, 0, 0);
  const io_uring_cqe c = reap_within(ring);
  CHECK(c.res == -EFAULT);
  if (cqe_has_more(&c)) {
    const io_uring_cqe notif = reap_within(ring);
    CHECK(cqe_is_notif(&notif));
  }
}

TEST_CASE("net ops: recv_zc is refused without a zcrx interface queue") {
  RINGSHARD_REQUIRE_OPCODE(abi::op_recv_zc);
  SetupOptions opt;
  opt.flags = IORING_SETUP_SQE128 | IORING_SETUP_CQE32 | IORING_SETUP_SINGLE_ISSUER |
              IORING_SETUP_DEFER_TASKRUN;
  Ring ring(8, opt);
  auto pair = test::tcp_pair();
  prep_recv_zc(next_sqe(ring, 1), pair.server.get(), 0, 0, 0);
  const io_uring_cqe c = reap_within(ring);
  REQUIRE(c.res == -EINVAL);
  RINGSHARD_SKIP(
      "IORING_OP_RECV_ZC needs a zcrx interface queue registered on a NIC RX queue with header split "
      "and flow steering (IORING_REGISTER_ZCRX_IFQ); loopback has none, and the kernel refused the "
      "request with -EINVAL as expected");
}

// ---- socket commands ---------------------------------------------------------------

TEST_CASE("net ops: uring_cmd and cmd_sock run SIOCINQ, SIOCOUTQ, GETSOCKOPT and SETSOCKOPT on TCP") {
  RINGSHARD_REQUIRE_OPCODE(IORING_OP_URING_CMD);
  Ring ring(8);
  auto pair = test::tcp_pair();

  send_all(pair.client.get(), "12345");
  wait_readable_bytes(pair.server.get(), 5);
  prep_uring_cmd(next_sqe(ring, 1), abi::socket_uring_op_siocinq, pair.server.get());
  io_uring_cqe c = reap_within(ring);
  if (c.res == -EOPNOTSUPP) RINGSHARD_SKIP("sockets do not implement uring_cmd");
  CHECK(c.res == 5);

  int outq = -1;
  REQUIRE(::ioctl(pair.client.get(), SIOCOUTQ, &outq) == 0);
  prep_uring_cmd(next_sqe(ring, 2), abi::socket_uring_op_siocoutq, pair.client.get());
  CHECK(reap_within(ring).res == outq);

  // SETSOCKOPT at any level; checked with getsockopt(2).
  CHECK(sockopt_int(pair.client.get(), IPPROTO_TCP, TCP_NODELAY) == 0);
  int one = 1;
  prep_cmd_sock(next_sqe(ring, 3), abi::socket_uring_op_setsockopt, pair.client.get(), IPPROTO_TCP, TCP_NODELAY,
                &one, sizeof one);
  CHECK(reap_within(ring).res == 0);
  CHECK(sockopt_int(pair.client.get(), IPPROTO_TCP, TCP_NODELAY) == 1);

  prep_cmd_sock(next_sqe(ring, 4), abi::socket_uring_op_setsockopt, pair.client.get(), SOL_SOCKET, SO_KEEPALIVE,
                &one, sizeof one);
  CHECK(reap_within(ring).res == 0);
  CHECK(sockopt_int(pair.client.get(), SOL_SOCKET, SO_KEEPALIVE) == 1);

  // GETSOCKOPT (SOL_SOCKET): the CQE carries the option length.
  int value = -1;
  prep_cmd_sock(next_sqe(ring, 5), abi::socket_uring_op_getsockopt, pair.client.get(), SOL_SOCKET, SO_KEEPALIVE,
                &value, sizeof value);
  CHECK(reap_within(ring).res == static_cast<int>(sizeof value));
  CHECK(value == 1);
  value = -1;
  prep_cmd_sock(next_sqe(ring, 6), abi::socket_uring_op_getsockopt, pair.server.get(), SOL_SOCKET, SO_TYPE,
                &value, sizeof value);
  CHECK(reap_within(ring).res == static_cast<int>(sizeof value));
  CHECK(value == SOCK_STREAM);
}
