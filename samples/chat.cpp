// ringshard-chat: line-based chat across shards.
//
//   ringshard-chat [--host 127.0.0.1] [--port 0] [--shards N] [--policy round-robin|least-connections|reuse-port]
//
// Every line a client sends reaches every other client, whichever shard it
// is on. Each shard has a Room actor that knows the connections on its shard;
// a line goes to the Room of every shard, and each Room hands it to its own
// connections. The first line on stdout is `listening on HOST:PORT`.
#include <cstdio>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "ringshard/net/listener.hpp"

using namespace ringshard;
using actors::ActorRef;

namespace {

struct Chat;

struct Join {
  ActorRef<Chat> who;
};
struct Leave {
  ActorRef<Chat> who;
};
struct Say {
  ActorRef<Chat> from;
  std::string line;  // with its '\n'
};
struct Hear {
  std::string line;
};

struct Room : actors::Actor<Room> {
  std::vector<ActorRef<Chat>> members;
  void on_message(const Join& j) { members.push_back(j.who); }
  void on_message(const Leave& l) { std::erase(members, l.who); }
  void on_message(const Say& s) {
    for (const auto& m : members)
      if (m != s.from) actors::send(m, Hear{s.line});
  }
};

using Rooms = std::shared_ptr<const std::vector<ActorRef<Room>>>;

struct Chat : net::Connection<Chat> {
  Rooms rooms;
  std::string partial;
  explicit Chat(Rooms r) : rooms(std::move(r)) {}
  ActorRef<Room> my_room() const { return (*rooms)[shard().id()]; }
  void on_open() override { actors::send(my_room(), Join{self()}); }
  void on_close(net::CloseReason) override { actors::send(my_room(), Leave{self()}); }
  void on_data(std::span<const std::byte> bytes) override {
    partial.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    std::size_t start = 0;
    for (std::size_t nl; (nl = partial.find('\n', start)) != std::string::npos; start = nl + 1) {
      const std::string line = partial.substr(start, nl + 1 - start);
      for (const auto& room : *rooms) actors::send(room, Say{self(), line});
    }
    partial.erase(0, start);
    if (partial.size() > 64 * 1024) abort();  // a "line" without end: not a chat client
  }
  void on_message(const Hear& h) { send(h.line); }
};

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  unsigned port = 0;
  net::ListenOptions listen;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      const std::string value = i + 1 < argc ? argv[i + 1] : "";
      if (arg == "--host") host = value, ++i;
      else if (arg == "--port") port = static_cast<unsigned>(std::stoul(value)), ++i;
      else if (arg == "--shards") ++i;  // read by shards_from_args
      else if (arg == "--policy") listen.policy = net::parse_policy(value), ++i;
      else throw std::invalid_argument("unknown argument " + arg);
    }
    listen.address = net::Address::ipv4(host, static_cast<std::uint16_t>(port));
    RuntimeOptions options;
    options.shards = shards_from_args(argc, argv);
    Runtime runtime(options);
    runtime.start();
    auto rooms = std::make_shared<std::vector<ActorRef<Room>>>();
    for (unsigned s = 0; s < runtime.shard_count(); ++s) rooms->push_back(actors::spawn<Room>(runtime, s));
    auto listener = net::listen<Chat>(runtime, listen, Rooms(rooms));
    std::printf("listening on %s\n", listener.address().to_string().c_str());
    std::fflush(stdout);
    runtime.run();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ringshard-chat: %s\nusage: ringshard-chat [--host H] [--port P] [--shards N] [--policy P]\n",
                 e.what());
    return 2;
  }
}
