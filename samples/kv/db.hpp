// One shard's keyspace: string keys and values with optional expiry.
//
// The table is open addressing with linear probing over 8-byte slots; a slot
// holds the item's address and 16 bits of the key's hash (x86-64 and arm64
// user addresses fit in 48 bits), so a probe compares keys only when those
// bits match. Deletion shifts the following items back (no tombstones). The
// table doubles at 3/4 full and halves below 1/16 (not below 64 slots), at
// once: the items are rehashed then, which at a million keys is a pause of a
// few tens of milliseconds for that shard.
//
// An item is one heap block: a flags byte, the key and value lengths as
// varints, then (for a key with a time to live) the expiry time and the
// item's place in the shard's list of expiring items, then the key and the
// value. A value that still fits its block is rewritten in place.
//
// Expiry is Redis': lazy (a key found expired is deleted at that access) and
// active (expire_cycle() samples 20 expiring keys at a time, deletes the
// expired ones, and goes on while more than a tenth of a sample was
// expired). Times are milliseconds of CLOCK_MONOTONIC, read once per batch of
// commands (new_batch()) and only by commands that need it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kv/commands.hpp"

namespace kv {

using Millis = std::int64_t;

/// 64-bit hash of a key. Every shard must use the same `seed`.
std::uint64_t hash_key(std::string_view key, std::uint64_t seed) noexcept;
/// The shard (of `shards`) that owns a key with hash `h`. Uses the hash's top
/// 16 bits; the tables use the low bits and bits 32-47.
inline unsigned shard_of(std::uint64_t h, unsigned shards) noexcept {
  return static_cast<unsigned>(((h >> 48) * shards) >> 16);
}
/// CLOCK_MONOTONIC in milliseconds.
Millis monotonic_ms() noexcept;

class Db {
 public:
  using Clock = Millis (*)() noexcept;
  explicit Db(std::uint64_t seed, Clock clock = &monotonic_ms);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  /// Runs a command whose keys all belong to this shard (the caller checked
  /// the arity) and appends its RESP reply to `out`.
  void execute(Cmd cmd, std::span<const std::string_view> argv, std::string& out) {
    execute(cmd, argv, out, argv.size() >= 2 ? hash(argv[1]) : 0);
  }
  /// As above, with `h` the hash of argv[1] (hash_key with this Db's seed).
  void execute(Cmd cmd, std::span<const std::string_view> argv, std::string& out, std::uint64_t h);
  /// Starts loading the table slot of a key with hash `h` into the cache...
  void prefetch(std::uint64_t h) const noexcept { __builtin_prefetch(&table_[h & mask_]); }
  /// ...and, once that slot is there, the key's item: a batch of pipelined
  /// commands waits for its cache misses together instead of one by one.
  void prefetch_item(std::uint64_t h) const noexcept;
  /// A new batch of commands: the time is read again when one needs it.
  void new_batch() noexcept { now_ = -1; }

  /// Keys held, including expired ones not deleted yet (as Redis' DBSIZE).
  [[nodiscard]] std::size_t size() const noexcept { return count_; }
  /// Keys with a time to live.
  [[nodiscard]] std::size_t expiring() const noexcept { return expires_.size(); }
  [[nodiscard]] std::size_t slots() const noexcept { return mask_ + 1; }
  /// The active expiry: samples expiring keys and deletes the expired ones,
  /// for at most `budget` milliseconds. Returns how many it deleted.
  std::size_t expire_cycle(Millis budget);
  /// Deletes every key.
  void flush() noexcept;

 private:
  struct Found {
    char* item = nullptr;
    std::size_t slot = 0;
  };
  Millis now() noexcept {
    if (now_ < 0) now_ = clock_();
    return now_;
  }
  // Finds `key` (hash h); deletes it and reports none when it has expired.
  Found find(std::string_view key, std::uint64_t h);
  // Sets `key` to `value` (at: expiry time, -1 none); `where` is find()'s result.
  void put(const Found& where, std::string_view key, std::uint64_t h, std::string_view value, Millis at);
  void erase(std::size_t slot) noexcept;
  void insert_slot(std::uint64_t h, char* item) noexcept;
  void resize(std::size_t slots);
  void expires_remove(char* item) noexcept;
  void expires_room();  // room for one more expiring item, so that expires_add cannot throw
  void expires_add(char* item);
  std::uint64_t hash(std::string_view key) const noexcept { return hash_key(key, seed_); }

  void cmd_set(std::span<const std::string_view> argv, std::uint64_t h, std::string& out);
  void cmd_incr(std::string_view key, std::uint64_t h, std::int64_t by, std::string& out);
  void cmd_expire(std::span<const std::string_view> argv, std::uint64_t h, bool seconds, std::string& out);
  void cmd_ttl(std::string_view key, std::uint64_t h, bool seconds, std::string& out);

  std::uint64_t* table_ = nullptr;
  std::size_t mask_ = 0;
  std::size_t count_ = 0;
  std::vector<char*> expires_;
  std::uint64_t seed_;
  Clock clock_;
  Millis now_ = -1;
  std::uint64_t rng_;
};

}  // namespace kv
