// One shard's keyspace of ringshard-kv (samples/kv/db.hpp): every command's
// replies byte for byte, expiry on a clock the test moves, the table growing
// and shrinking, and a randomized comparison with a std::map model.
#include <doctest/doctest.h>

#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "kv/db.hpp"

namespace {

kv::Millis fake_now = 1'000'000;
kv::Millis fake_clock() noexcept { return fake_now; }

struct Shard {
  kv::Db db{0x1234, &fake_clock};
  // Runs one command (words separated by single spaces) and returns its reply.
  std::string run(const std::string& line) {
    std::vector<std::string> words;
    std::size_t at = 0;
    while (at <= line.size()) {
      const std::size_t sp = line.find(' ', at);
      words.push_back(line.substr(at, sp == std::string::npos ? std::string::npos : sp - at));
      if (sp == std::string::npos) break;
      at = sp + 1;
    }
    return run(words);
  }
  std::string run(const std::vector<std::string>& words) {
    std::vector<std::string_view> argv(words.begin(), words.end());
    const kv::CommandInfo& c = kv::lookup(argv[0]);
    REQUIRE(c.cmd != kv::Cmd::unknown);
    REQUIRE(kv::arity_ok(c, argv.size()));
    std::string out;
    db.new_batch();
    db.execute(c.cmd, argv, out);
    return out;
  }
};

}  // namespace

TEST_CASE("db: GET SET DEL EXISTS MGET MSET DBSIZE FLUSHALL") {
  Shard s;
  CHECK(s.run("GET a") == "$-1\r\n");
  CHECK(s.run("SET a 1") == "+OK\r\n");
  CHECK(s.run("GET a") == "$1\r\n1\r\n");
  CHECK(s.run("SET a hello") == "+OK\r\n");
  CHECK(s.run("GET a") == "$5\r\nhello\r\n");
  CHECK(s.run("MSET b 2 c 3") == "+OK\r\n");
  CHECK(s.run("MGET a b nope c") == "*4\r\n$5\r\nhello\r\n$1\r\n2\r\n$-1\r\n$1\r\n3\r\n");
  CHECK(s.run("EXISTS a a nope b") == ":3\r\n");
  CHECK(s.run("DBSIZE") == ":3\r\n");
  CHECK(s.run("DEL a nope a b") == ":2\r\n");
  CHECK(s.run("DBSIZE") == ":1\r\n");
  CHECK(s.run("MSET x 1 y") == "-ERR wrong number of arguments for 'mset' command\r\n");
  CHECK(s.run("FLUSHALL NOW") == "-ERR syntax error\r\n");
  CHECK(s.run("FLUSHALL ASYNC") == "+OK\r\n");
  CHECK(s.run("DBSIZE") == ":0\r\n");
  CHECK(s.run(std::vector<std::string>{"SET", "", ""}) == "+OK\r\n");  // empty key and value
  CHECK(s.run(std::vector<std::string>{"GET", ""}) == "$0\r\n\r\n");
}

TEST_CASE("db: SET options NX XX EX PX KEEPTTL and their errors") {
  Shard s;
  CHECK(s.run("SET k v XX") == "$-1\r\n");
  CHECK(s.run("SET k v NX") == "+OK\r\n");
  CHECK(s.run("SET k w NX") == "$-1\r\n");
  CHECK(s.run("SET k w XX") == "+OK\r\n");
  CHECK(s.run("GET k") == "$1\r\nw\r\n");
  CHECK(s.run("SET k v NX XX") == "-ERR syntax error\r\n");
  CHECK(s.run("SET k v EX 1 PX 1") == "-ERR syntax error\r\n");
  CHECK(s.run("SET k v EX") == "-ERR syntax error\r\n");
  CHECK(s.run("SET k v KEEPTTL EX 1") == "-ERR syntax error\r\n");
  CHECK(s.run("SET k v GET") == "-ERR syntax error\r\n");
  CHECK(s.run("SET k v EX x") == "-ERR value is not an integer or out of range\r\n");
  CHECK(s.run("SET k v EX 0") == "-ERR invalid expire time in 'set' command\r\n");
  CHECK(s.run("SET k v PX -5") == "-ERR invalid expire time in 'set' command\r\n");
  CHECK(s.run("SET k v EX 9223372036854775807") == "-ERR invalid expire time in 'set' command\r\n");
  CHECK(s.run("SET k v PX 9223372036854775807") == "-ERR invalid expire time in 'set' command\r\n");
  CHECK(s.run("SET k v ex 10") == "+OK\r\n");
  CHECK(s.run("TTL k") == ":10\r\n");
  CHECK(s.run("SET k v2 KEEPTTL") == "+OK\r\n");
  CHECK(s.run("PTTL k") == ":10000\r\n");
  CHECK(s.run("SET k v3") == "+OK\r\n");  // a plain SET drops the time to live
  CHECK(s.run("TTL k") == ":-1\r\n");
  CHECK(s.run("SET k v PX 1500 NX") == "$-1\r\n");
  CHECK(s.run("SET k v PX 1500 XX") == "+OK\r\n");
  CHECK(s.run("PTTL k") == ":1500\r\n");
  CHECK(s.run("TTL k") == ":2\r\n");  // rounded as Redis does
}

TEST_CASE("db: INCR INCRBY DECR DECRBY, overflow and values that are not numbers") {
  Shard s;
  CHECK(s.run("INCR n") == ":1\r\n");
  CHECK(s.run("INCRBY n 41") == ":42\r\n");
  CHECK(s.run("DECR n") == ":41\r\n");
  CHECK(s.run("DECRBY n 50") == ":-9\r\n");
  CHECK(s.run("GET n") == "$2\r\n-9\r\n");
  CHECK(s.run("INCRBY n x") == "-ERR value is not an integer or out of range\r\n");
  CHECK(s.run("SET t abc") == "+OK\r\n");
  CHECK(s.run("INCR t") == "-ERR value is not an integer or out of range\r\n");
  CHECK(s.run("SET t 010") == "+OK\r\n");
  CHECK(s.run("INCR t") == "-ERR value is not an integer or out of range\r\n");
  CHECK(s.run("SET m 9223372036854775806") == "+OK\r\n");
  CHECK(s.run("INCR m") == ":9223372036854775807\r\n");
  CHECK(s.run("INCR m") == "-ERR increment or decrement would overflow\r\n");
  CHECK(s.run("GET m") == "$19\r\n9223372036854775807\r\n");
  CHECK(s.run("DECRBY m -9223372036854775808") == "-ERR decrement would overflow\r\n");
  CHECK(s.run("SET e 5 EX 100") == "+OK\r\n");
  CHECK(s.run("INCR e") == ":6\r\n");
  CHECK(s.run("TTL e") == ":100\r\n");  // INCR keeps the time to live
  CHECK(s.run("SET g 99") == "+OK\r\n");
  CHECK(s.run("INCR g") == ":100\r\n");  // grows past its block: moved, still found
  CHECK(s.run("GET g") == "$3\r\n100\r\n");
}

TEST_CASE("db: EXPIRE PEXPIRE TTL PTTL with NX XX GT LT, lazy expiry on the clock") {
  Shard s;
  CHECK(s.run("EXPIRE nope 10") == ":0\r\n");
  CHECK(s.run("TTL nope") == ":-2\r\n");
  CHECK(s.run("SET k v") == "+OK\r\n");
  CHECK(s.run("TTL k") == ":-1\r\n");
  CHECK(s.run("EXPIRE k 10 XX") == ":0\r\n");
  CHECK(s.run("EXPIRE k 10 GT") == ":0\r\n");  // no expiry counts as forever
  CHECK(s.run("EXPIRE k 10 NX") == ":1\r\n");
  CHECK(s.run("EXPIRE k 20 NX") == ":0\r\n");
  CHECK(s.run("EXPIRE k 5 GT") == ":0\r\n");
  CHECK(s.run("EXPIRE k 20 GT") == ":1\r\n");
  CHECK(s.run("EXPIRE k 30 LT") == ":0\r\n");
  CHECK(s.run("PEXPIRE k 1500 LT") == ":1\r\n");
  CHECK(s.run("PTTL k") == ":1500\r\n");
  CHECK(s.run("EXPIRE k 1 NX XX") == "-ERR NX and XX, GT or LT options at the same time are not compatible\r\n");
  CHECK(s.run("EXPIRE k 1 GT LT") == "-ERR GT and LT options at the same time are not compatible\r\n");
  CHECK(s.run("EXPIRE k 1 FOO") == "-ERR Unsupported option FOO\r\n");
  CHECK(s.run("EXPIRE k x") == "-ERR value is not an integer or out of range\r\n");
  CHECK(s.run("EXPIRE k 9223372036854775807") == "-ERR invalid expire time in 'expire' command\r\n");
  CHECK(s.run("PEXPIRE k 9223372036854775807") == "-ERR invalid expire time in 'pexpire' command\r\n");
  fake_now += 1499;
  CHECK(s.run("PTTL k") == ":1\r\n");
  CHECK(s.run("GET k") == "$1\r\nv\r\n");
  fake_now += 1;
  CHECK(s.run("DBSIZE") == ":1\r\n");  // expired, not deleted until seen (as Redis)
  CHECK(s.run("GET k") == "$-1\r\n");
  CHECK(s.run("DBSIZE") == ":0\r\n");
  CHECK(s.run("SET k v") == "+OK\r\n");
  CHECK(s.run("EXPIRE k -1") == ":1\r\n");  // in the past: deleted at once
  CHECK(s.run("EXISTS k") == ":0\r\n");
  CHECK(s.run("SET k v PX 10") == "+OK\r\n");
  fake_now += 10;
  CHECK(s.run("SET k w NX") == "+OK\r\n");  // the expired key does not count
  CHECK(s.run("TTL k") == ":-1\r\n");
}

TEST_CASE("db: the active expiry deletes expired keys nobody reads, and only those") {
  Shard s;
  for (int i = 0; i < 5000; ++i) s.run("SET short" + std::to_string(i) + " v PX 100");
  for (int i = 0; i < 5000; ++i) s.run("SET long" + std::to_string(i) + " v EX 100");
  for (int i = 0; i < 1000; ++i) s.run("SET plain" + std::to_string(i) + " v");
  CHECK(s.db.expiring() == 10000);
  CHECK(s.db.expire_cycle(1) == 0);  // nothing expired yet
  fake_now += 100;
  std::size_t deleted = 0;
  for (int cycle = 0; cycle < 100 && s.db.size() > 6000; ++cycle) deleted += s.db.expire_cycle(1000);
  // Sampling stops once at most a tenth of a sample is expired, as Redis'
  // does: most short keys go, a few may wait for the next cycles or an access.
  CHECK(deleted >= 4000);
  CHECK(s.db.size() == 11000 - deleted);
  for (int i = 0; i < 5000; ++i) CHECK(s.run("GET long" + std::to_string(i)) == "$1\r\nv\r\n");
  for (int i = 0; i < 5000; ++i) s.run("GET short" + std::to_string(i));  // the rest, lazily
  CHECK(s.db.size() == 6000);
  CHECK(s.db.expiring() == 5000);
}

TEST_CASE("db: the table grows and shrinks, and every key stays reachable") {
  Shard s;
  const std::size_t start = s.db.slots();
  for (int i = 0; i < 20000; ++i) REQUIRE(s.run("SET key:" + std::to_string(i) + " " + std::to_string(i)) == "+OK\r\n");
  CHECK(s.db.size() == 20000);
  CHECK(s.db.slots() >= 20000 * 4 / 3);
  for (int i = 0; i < 20000; i += 2) REQUIRE(s.run("DEL key:" + std::to_string(i)) == ":1\r\n");
  for (int i = 1; i < 20000; i += 2) {
    const std::string v = std::to_string(i);
    REQUIRE(s.run("GET key:" + v) == "$" + std::to_string(v.size()) + "\r\n" + v + "\r\n");
  }
  for (int i = 1; i < 20000; i += 2) REQUIRE(s.run("DEL key:" + std::to_string(i)) == ":1\r\n");
  CHECK(s.db.size() == 0);
  CHECK(s.db.slots() == start);
}

TEST_CASE("db: 20,000 random commands over 50 keys agree with a model, expiry included") {
  Shard s;
  struct Value {
    std::string v;
    kv::Millis at = -1;
  };
  std::map<std::string, Value> model;
  std::mt19937 rng(7);
  const auto live = [&](const std::string& k) -> Value* {
    auto it = model.find(k);
    if (it == model.end()) return nullptr;
    if (it->second.at >= 0 && it->second.at <= fake_now) {
      model.erase(it);
      return nullptr;
    }
    return &it->second;
  };
  const auto bulk = [](const std::string& v) { return "$" + std::to_string(v.size()) + "\r\n" + v + "\r\n"; };
  for (int step = 0; step < 20000; ++step) {
    const std::string k = "k" + std::to_string(rng() % 50);
    // Values of many sizes, so that items are rewritten in place and moved.
    const std::string v(rng() % 3 == 0 ? rng() % 300 : rng() % 12, static_cast<char>('a' + rng() % 26));
    const int op = static_cast<int>(rng() % 8);
    INFO("step " << step << " op " << op << " key " << k);
    if (op == 0) {
      Value* m = live(k);
      CHECK(s.run({"GET", k}) == (m ? bulk(m->v) : "$-1\r\n"));
    } else if (op == 1) {
      CHECK(s.run({"SET", k, v}) == "+OK\r\n");
      model[k] = Value{v, -1};
    } else if (op == 2) {
      const kv::Millis px = 1 + rng() % 50;
      CHECK(s.run({"SET", k, v, "PX", std::to_string(px)}) == "+OK\r\n");
      model[k] = Value{v, fake_now + px};
    } else if (op == 3) {
      Value* m = live(k);
      CHECK(s.run({"DEL", k}) == (m ? ":1\r\n" : ":0\r\n"));
      model.erase(k);
    } else if (op == 4) {
      Value* m = live(k);
      const std::string r = s.run({"INCR", k});
      std::int64_t n = 0;
      if (m == nullptr) {
        CHECK(r == ":1\r\n");
        model[k] = Value{"1", -1};
      } else if (m->v.size() < 19 && !m->v.empty() && m->v.find_first_not_of("0123456789") == std::string::npos &&
                 (m->v == "0" || m->v[0] != '0')) {
        n = std::stoll(m->v) + 1;
        CHECK(r == ":" + std::to_string(n) + "\r\n");
        m->v = std::to_string(n);
      } else {
        CHECK(r == "-ERR value is not an integer or out of range\r\n");
      }
    } else if (op == 5) {
      Value* m = live(k);
      const kv::Millis px = static_cast<kv::Millis>(rng() % 60) - 5;
      CHECK(s.run({"PEXPIRE", k, std::to_string(px)}) == (m ? ":1\r\n" : ":0\r\n"));
      if (m != nullptr) {
        if (px <= 0) {
          model.erase(k);
        } else {
          m->at = fake_now + px;
        }
      }
    } else if (op == 6) {
      Value* m = live(k);
      const std::string want = m == nullptr ? ":-2\r\n" : m->at < 0 ? ":-1\r\n" : ":" + std::to_string(m->at - fake_now) + "\r\n";
      CHECK(s.run({"PTTL", k}) == want);
    } else {
      fake_now += static_cast<kv::Millis>(rng() % 5);
      if (rng() % 10 == 0) s.db.expire_cycle(1000);
    }
  }
  std::size_t alive = 0;
  for (int i = 0; i < 50; ++i) alive += live("k" + std::to_string(i)) != nullptr;
  std::size_t exists = 0;
  for (int i = 0; i < 50; ++i) exists += s.run({"EXISTS", "k" + std::to_string(i)}) == ":1\r\n";
  CHECK(exists == alive);
  CHECK(s.db.size() == alive);
}
