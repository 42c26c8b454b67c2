#include "kv/commands.hpp"

#include <array>

namespace kv {

namespace {

constexpr std::array<CommandInfo, 27> kCommands{{
    {Cmd::unknown, "", 0, Route::connection},
    {Cmd::ping, "ping", -1, Route::connection},
    {Cmd::echo, "echo", 2, Route::connection},
    {Cmd::command, "command", -1, Route::connection},
    {Cmd::client, "client", -2, Route::connection},
    {Cmd::config, "config", -2, Route::connection},
    {Cmd::hello, "hello", -1, Route::connection},
    {Cmd::info, "info", -1, Route::connection},
    {Cmd::select, "select", 2, Route::connection},
    {Cmd::quit, "quit", -1, Route::connection},
    {Cmd::shardof, "shardof", 2, Route::connection},
    {Cmd::get, "get", 2, Route::key},
    {Cmd::set, "set", -3, Route::key},
    {Cmd::incr, "incr", 2, Route::key},
    {Cmd::incrby, "incrby", 3, Route::key},
    {Cmd::decr, "decr", 2, Route::key},
    {Cmd::decrby, "decrby", 3, Route::key},
    {Cmd::expire, "expire", -3, Route::key},
    {Cmd::pexpire, "pexpire", -3, Route::key},
    {Cmd::ttl, "ttl", 2, Route::key},
    {Cmd::pttl, "pttl", 2, Route::key},
    {Cmd::del, "del", -2, Route::keys},
    {Cmd::exists, "exists", -2, Route::keys},
    {Cmd::mget, "mget", -2, Route::keys},
    {Cmd::mset, "mset", -3, Route::pairs},
    {Cmd::dbsize, "dbsize", 1, Route::all},
    {Cmd::flushall, "flushall", -1, Route::all},
}};
static_assert([] {
  for (std::size_t i = 0; i < kCommands.size(); ++i)
    if (static_cast<std::size_t>(kCommands[i].cmd) != i) return false;
  return true;
}(), "kCommands is indexed by Cmd");

bool equals_lower(std::string_view s, const char* lower) noexcept {
  std::size_t i = 0;
  for (; i < s.size(); ++i) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
    if (lower[i] == '\0' || c != lower[i]) return false;
  }
  return lower[i] == '\0';
}

}  // namespace

const CommandInfo& info(Cmd cmd) noexcept { return kCommands[static_cast<std::size_t>(cmd)]; }

const CommandInfo& lookup(std::string_view name) noexcept {
  // The hot ones first; the table is small enough for a scan.
  if (name.size() == 3) {
    if (equals_lower(name, "get")) return info(Cmd::get);
    if (equals_lower(name, "set")) return info(Cmd::set);
  }
  if (name.size() < 3 || name.size() > 8) return info(Cmd::unknown);
  for (const CommandInfo& c : kCommands)
    if (c.cmd != Cmd::unknown && equals_lower(name, c.name)) return c;
  return info(Cmd::unknown);
}

}  // namespace kv
