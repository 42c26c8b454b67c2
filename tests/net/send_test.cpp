// Sends: the bytes the kernel reads stay where they are until the send's
// completion, whatever the queue does meanwhile; every form of send (owned,
// copied, caller-owned, received buffers) arrives byte-exact and in order.
#include <atomic>
#include <string>
#include <vector>

#include "net/net_support.hpp"

using namespace ringshard;
using namespace ringshard::net;
using namespace std::chrono_literals;
using test::connect_to;
using test::eventually;
using test::Fd;
using test::opts;
using test::read_exactly;

namespace {

struct Burst {};

// "go" -> one short owned string now (its send is prepared in this turn),
// then a message to itself that queues ten more short strings: the queue
// grows while the first send is waiting for submission or in flight.
struct ShortSends : Connection<ShortSends> {
  void on_data(std::span<const std::byte>) override {
    send(std::string("first\n"));
    actors::send(self(), Burst{});
  }
  void on_message(Burst) {
    for (int i = 0; i < 10; ++i) send(std::string("s") + std::to_string(i) + "\n");
  }
};

// The copying form followed by large owned sends.
struct CopyThenLarge : Connection<CopyThenLarge> {
  void on_data(std::span<const std::byte>) override {
    send(std::string_view("copied\n"));
    actors::send(self(), Burst{});
  }
  void on_message(Burst) {
    for (int i = 0; i < 40; ++i) {
      send(std::string_view("c") );
      send(std::string(20000, static_cast<char>('a' + i % 26)));
    }
  }
};

std::string expected_short() {
  std::string e = "first\n";
  for (int i = 0; i < 10; ++i) e += "s" + std::to_string(i) + "\n";
  return e;
}

std::string expected_copy_then_large() {
  std::string e = "copied\n";
  for (int i = 0; i < 40; ++i) e += "c" + std::string(20000, static_cast<char>('a' + i % 26));
  return e;
}

}  // namespace

TEST_CASE("short sends stay intact while the send queue grows under a send in flight") {
  Runtime rt(opts(1));
  rt.start();
  auto l = listen<ShortSends>(rt, ListenOptions{});
  const std::string want = expected_short();
  for (int round = 0; round < 50; ++round) {
    CAPTURE(round);
    Fd c = connect_to(l.address());
    REQUIRE(::write(c.get(), "go", 2) == 2);
    REQUIRE(read_exactly(c.get(), want.size()) == want);
  }
}

TEST_CASE("a copied send followed by large sends arrives byte-exact") {
  Runtime rt(opts(1));
  rt.start();
  auto l = listen<CopyThenLarge>(rt, ListenOptions{});
  const std::string want = expected_copy_then_large();
  for (int round = 0; round < 10; ++round) {
    CAPTURE(round);
    Fd c = connect_to(l.address());
    REQUIRE(::write(c.get(), "go", 2) == 2);
    const std::string got = read_exactly(c.get(), want.size());
    REQUIRE(got.size() == want.size());
    REQUIRE(got == want);
  }
}
