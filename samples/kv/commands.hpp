// The commands ringshard-kv knows: their names, arity and where they run.
#pragma once

#include <cstdint>
#include <string_view>

namespace kv {

enum class Cmd : std::uint8_t {
  unknown,
  // answered by the connection itself
  ping, echo, command, client, config, hello, info, select, quit, shardof,
  // one key: run by the shard that owns it
  get, set, incr, incrby, decr, decrby, expire, pexpire, ttl, pttl,
  // several keys: split over their owners and reassembled
  del, exists, mget, mset,
  // every shard
  dbsize, flushall,
};

/// Where a command runs.
enum class Route : std::uint8_t {
  connection,  ///< no key: the connection answers
  key,         ///< argv[1] is the key
  keys,        ///< argv[1..] are keys (DEL, EXISTS, MGET)
  pairs,       ///< argv[1], argv[3], ... are keys, each followed by its value (MSET)
  all,         ///< every shard (DBSIZE, FLUSHALL)
};

struct CommandInfo {
  Cmd cmd;
  const char* name;  ///< lower case, as Redis names it in errors
  int arity;         ///< argument count with the name; -N: at least N
  Route route;
};

/// The command named `name` (any case); Cmd::unknown's entry when there is none.
const CommandInfo& lookup(std::string_view name) noexcept;
const CommandInfo& info(Cmd cmd) noexcept;
/// Whether `argc` arguments (the name included) fit the command's arity.
inline bool arity_ok(const CommandInfo& c, std::size_t argc) noexcept {
  return c.arity >= 0 ? argc == static_cast<std::size_t>(c.arity) : argc >= static_cast<std::size_t>(-c.arity);
}

/// ASCII case-insensitive equality with an upper-case literal.
inline bool equals_upper(std::string_view s, std::string_view upper) noexcept {
  if (s.size() != upper.size()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
    if (c != upper[i]) return false;
  }
  return true;
}

}  // namespace kv
