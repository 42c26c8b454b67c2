#include "kv/db.hpp"

#include <sys/mman.h>
#include <time.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "kv/resp.hpp"

namespace kv {

namespace {

constexpr std::size_t kMinSlots = 64;
constexpr std::uint8_t kExpiring = 1;
constexpr std::size_t kExpiryBytes = 12;  // expiry time (8) and place in the expiring list (4)
constexpr std::uint64_t kAddressMask = (std::uint64_t{1} << 48) - 1;

std::size_t varint_size(std::size_t v) noexcept {
  std::size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}
char* put_varint(char* p, std::size_t v) noexcept {
  while (v >= 0x80) {
    *p++ = static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<char>(v);
  return p;
}
const char* get_varint(const char* p, std::uint32_t& v) noexcept {
  std::uint32_t r = 0;
  unsigned shift = 0;
  while (true) {
    const auto b = static_cast<std::uint8_t>(*p++);
    r |= static_cast<std::uint32_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) break;
    shift += 7;
  }
  v = r;
  return p;
}

std::size_t head_size(std::size_t klen, std::size_t vlen, bool expiring) noexcept {
  return 1 + varint_size(klen) + varint_size(vlen) + (expiring ? kExpiryBytes : 0);
}

// The bytes allocated for an item of `need` bytes: what glibc's malloc gives
// anyway (chunks of 16-byte multiples, 8 of them its own). Asking for all of
// it lets a value that grows a little be rewritten in place, and tells an
// item's capacity from its own lengths (no allocator call, no cache miss on
// the allocator's header).
std::size_t capacity_for(std::size_t need) noexcept {
  const std::size_t c = ((need + 8 + 15) & ~std::size_t{15}) - 8;
  return c < 24 ? 24 : c;
}

// A view of an item block.
struct Item {
  char* base;
  std::uint32_t klen;
  std::uint32_t vlen;
  bool expiring;
  char* expiry;  // the expiry fields (expiring only)
  char* key;

  static Item at(char* base) noexcept {
    Item it;
    it.base = base;
    it.expiring = (static_cast<std::uint8_t>(base[0]) & kExpiring) != 0;
    const char* p = get_varint(base + 1, it.klen);
    p = get_varint(p, it.vlen);
    it.expiry = const_cast<char*>(p);
    it.key = it.expiry + (it.expiring ? kExpiryBytes : 0);
    return it;
  }
  [[nodiscard]] std::string_view key_view() const noexcept { return {key, klen}; }
  [[nodiscard]] char* value() const noexcept { return key + klen; }
  [[nodiscard]] std::string_view value_view() const noexcept { return {value(), vlen}; }
  [[nodiscard]] std::size_t head() const noexcept { return static_cast<std::size_t>(key - base); }
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_for(head() + klen + vlen); }
  [[nodiscard]] Millis expires_at() const noexcept {
    Millis t;
    std::memcpy(&t, expiry, sizeof t);
    return t;
  }
  void set_expires_at(Millis t) const noexcept { std::memcpy(expiry, &t, sizeof t); }
  [[nodiscard]] std::uint32_t index() const noexcept {
    std::uint32_t i;
    std::memcpy(&i, expiry + 8, sizeof i);
    return i;
  }
  void set_index(std::uint32_t i) const noexcept { std::memcpy(expiry + 8, &i, sizeof i); }
};

// Writes an item into `mem` (head_size + key + value bytes).
void build(char* mem, std::string_view key, std::string_view value, Millis at) noexcept {
  const bool expiring = at >= 0;
  mem[0] = static_cast<char>(expiring ? kExpiring : 0);
  char* p = put_varint(mem + 1, key.size());
  p = put_varint(p, value.size());
  if (expiring) {
    std::memcpy(p, &at, sizeof at);
    std::memset(p + 8, 0, 4);
    p += kExpiryBytes;
  }
  if (!key.empty()) std::memcpy(p, key.data(), key.size());
  // memmove: the new value may be the old one, read from this very block.
  if (!value.empty()) std::memmove(p + key.size(), value.data(), value.size());
}

char* allocate(std::size_t n) {
  void* p = std::malloc(n);
  if (p == nullptr) throw std::bad_alloc();
  if ((reinterpret_cast<std::uintptr_t>(p) & ~kAddressMask) != 0) {
    std::fprintf(stderr, "ringshard-kv: an address above 2^48 cannot be kept in a table slot\n");
    std::abort();
  }
  return static_cast<char*>(p);
}

// Tables of 2 MiB and more are mapped with transparent huge pages asked for:
// a lookup then misses the TLB far less (each one touches a random slot).
constexpr std::size_t kHugePage = std::size_t{2} << 20;
std::uint64_t* table_alloc(std::size_t slots) {
  const std::size_t bytes = slots * sizeof(std::uint64_t);
  if (bytes < kHugePage) {
    auto* t = static_cast<std::uint64_t*>(std::calloc(slots, sizeof(std::uint64_t)));
    if (t == nullptr) throw std::bad_alloc();
    return t;
  }
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  (void)::madvise(p, bytes, MADV_HUGEPAGE);  // a hint: without it, plain pages
  return static_cast<std::uint64_t*>(p);
}
void table_free(std::uint64_t* table, std::size_t slots) noexcept {
  const std::size_t bytes = slots * sizeof(std::uint64_t);
  if (bytes < kHugePage) {
    std::free(table);
  } else {
    ::munmap(table, bytes);
  }
}

char* slot_item(std::uint64_t s) noexcept { return reinterpret_cast<char*>(s & kAddressMask); }
std::uint64_t tag_of(std::uint64_t h) noexcept { return (h >> 32) & 0xffff; }
std::uint64_t make_slot(char* item, std::uint64_t h) noexcept {
  return reinterpret_cast<std::uintptr_t>(item) | (tag_of(h) << 48);
}

constexpr std::uint64_t kMul1 = 0xff51afd7ed558ccdULL;
constexpr std::uint64_t kMul2 = 0xc4ceb9fe1a85ec53ULL;

void wrong_type_of_value(std::string& out) { resp::error(out, "ERR value is not an integer or out of range"); }

}  // namespace

std::uint64_t hash_key(std::string_view key, std::uint64_t seed) noexcept {
  std::uint64_t h = seed ^ (key.size() * 0x9e3779b97f4a7c15ULL);
  const char* p = key.data();
  std::size_t n = key.size();
  while (n >= 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * kMul1;
    h ^= h >> 29;
    p += 8;
    n -= 8;
  }
  if (n > 0) {
    std::uint64_t w = 0;
    std::memcpy(&w, p, n);
    h = (h ^ w) * kMul2;
    h ^= h >> 29;
  }
  h ^= h >> 33;
  h *= kMul1;
  h ^= h >> 33;
  h *= kMul2;
  h ^= h >> 33;
  return h;
}

Millis monotonic_ms() noexcept {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<Millis>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

Db::Db(std::uint64_t seed, Clock clock) : seed_(seed), clock_(clock), rng_(seed ^ 0x2545f4914f6cdd1dULL) {
  if (rng_ == 0) rng_ = 1;
  table_ = table_alloc(kMinSlots);
  mask_ = kMinSlots - 1;
}

Db::~Db() {
  for (std::size_t i = 0; i <= mask_; ++i)
    if (table_[i] != 0) std::free(slot_item(table_[i]));
  table_free(table_, mask_ + 1);
}

void Db::flush() noexcept {
  for (std::size_t i = 0; i <= mask_; ++i)
    if (table_[i] != 0) std::free(slot_item(table_[i]));
  std::vector<char*>().swap(expires_);
  count_ = 0;
  if (mask_ + 1 > kMinSlots) {
    if (auto* t = static_cast<std::uint64_t*>(std::calloc(kMinSlots, sizeof(std::uint64_t)))) {
      table_free(table_, mask_ + 1);
      table_ = t;
      mask_ = kMinSlots - 1;
      return;
    }
  }
  std::memset(table_, 0, (mask_ + 1) * sizeof(std::uint64_t));
}

// ---- the table -----------------------------------------------------------------------

Db::Found Db::find(std::string_view key, std::uint64_t h) {
  const std::uint64_t tag = tag_of(h);
  std::size_t i = h & mask_;
  while (true) {
    const std::uint64_t s = table_[i];
    if (s == 0) return {nullptr, i};
    if ((s >> 48) == tag) {
      char* p = slot_item(s);
      const Item it = Item::at(p);
      if (it.klen == key.size() && std::memcmp(it.key, key.data(), key.size()) == 0) {
        if (it.expiring && it.expires_at() <= now()) {
          erase(i);  // lazy expiry; the table may have moved under the slot numbers
          return find(key, h);
        }
        return {p, i};
      }
    }
    i = (i + 1) & mask_;
  }
}

void Db::insert_slot(std::uint64_t h, char* item) noexcept {
  std::size_t i = h & mask_;
  while (table_[i] != 0) i = (i + 1) & mask_;
  table_[i] = make_slot(item, h);
}

void Db::resize(std::size_t slots) {
  std::uint64_t* fresh = table_alloc(slots);
  std::uint64_t* old = table_;
  const std::size_t old_slots = mask_ + 1;
  table_ = fresh;
  mask_ = slots - 1;
  for (std::size_t i = 0; i < old_slots; ++i) {
    if (i + 8 < old_slots && old[i + 8] != 0) __builtin_prefetch(slot_item(old[i + 8]));
    if (old[i] == 0) continue;
    char* p = slot_item(old[i]);
    insert_slot(hash(Item::at(p).key_view()), p);
  }
  table_free(old, old_slots);
}

void Db::erase(std::size_t slot) noexcept {
  char* p = slot_item(table_[slot]);
  if (Item::at(p).expiring) expires_remove(p);
  std::free(p);
  --count_;
  // Backward shift: each following item of the run moves into the hole when
  // the hole lies between its home slot and where it is.
  std::size_t hole = slot;
  std::size_t j = slot;
  while (true) {
    j = (j + 1) & mask_;
    const std::uint64_t s = table_[j];
    if (s == 0) break;
    const std::size_t home = hash(Item::at(slot_item(s)).key_view()) & mask_;
    if (((j - home) & mask_) >= ((j - hole) & mask_)) {
      table_[hole] = s;
      hole = j;
    }
  }
  table_[hole] = 0;
  if (mask_ + 1 > kMinSlots && count_ * 16 < mask_ + 1) {
    try {
      resize((mask_ + 1) / 2);
    } catch (const std::bad_alloc&) {
      // stays larger: no harm
    }
  }
}

void Db::expires_room() {
  if (expires_.size() == expires_.capacity()) expires_.reserve(std::max<std::size_t>(16, expires_.capacity() * 2));
}

void Db::expires_add(char* item) {
  const Item it = Item::at(item);
  it.set_index(static_cast<std::uint32_t>(expires_.size()));
  expires_.push_back(item);  // capacity was reserved by the caller
}

void Db::expires_remove(char* item) noexcept {
  const std::uint32_t i = Item::at(item).index();
  char* last = expires_.back();
  expires_[i] = last;
  Item::at(last).set_index(i);
  expires_.pop_back();
}

void Db::put(const Found& where, std::string_view key, std::uint64_t h, std::string_view value, Millis at) {
  const bool expiring = at >= 0;
  const std::size_t head = head_size(key.size(), value.size(), expiring);
  const std::size_t need = head + key.size() + value.size();
  if (where.item != nullptr) {
    const Item old = Item::at(where.item);
    if (old.head() == head && old.expiring == expiring && need <= old.capacity()) {
      const std::uint32_t index = expiring ? old.index() : 0;
      build(where.item, key, value, at);  // in place; keeps the item's place in the expiring list
      if (expiring) old.set_index(index);
      return;
    }
    if (expiring && !old.expiring) expires_room();
    char* p = allocate(capacity_for(need));  // nothing has changed yet if this throws
    const std::uint32_t index = old.expiring ? old.index() : 0;
    build(p, key, value, at);
    const Item it = Item::at(p);
    if (old.expiring && expiring) {
      it.set_index(index);
      expires_[index] = p;
    } else if (old.expiring) {
      expires_remove(where.item);
    } else if (expiring) {
      expires_add(p);
    }
    table_[where.slot] = make_slot(p, h);
    std::free(where.item);
    return;
  }
  std::size_t slot = where.slot;
  if ((count_ + 1) * 4 > (mask_ + 1) * 3) {
    resize((mask_ + 1) * 2);
    slot = h & mask_;
    while (table_[slot] != 0) slot = (slot + 1) & mask_;
  }
  if (expiring) expires_room();
  char* p = allocate(capacity_for(need));
  build(p, key, value, at);
  if (expiring) expires_add(p);
  table_[slot] = make_slot(p, h);
  ++count_;
}

std::size_t Db::expire_cycle(Millis budget) {
  if (expires_.empty()) return 0;
  const Millis start = clock_();
  now_ = start;
  std::size_t deleted = 0;
  for (unsigned round = 0; !expires_.empty(); ++round) {
    const std::size_t sample = std::min<std::size_t>(20, expires_.size());
    std::size_t expired = 0;
    for (std::size_t k = 0; k < sample && !expires_.empty(); ++k) {
      rng_ ^= rng_ >> 12;
      rng_ ^= rng_ << 25;
      rng_ ^= rng_ >> 27;
      char* p = expires_[(rng_ * 0x2545f4914f6cdd1dULL) % expires_.size()];
      const Item it = Item::at(p);
      if (it.expires_at() > now_) continue;
      const std::uint64_t h = hash(it.key_view());
      std::size_t i = h & mask_;
      while (slot_item(table_[i]) != p) i = (i + 1) & mask_;
      erase(i);
      ++expired;
    }
    deleted += expired;
    if (expired * 10 <= sample) break;  // at most a tenth expired: the rest can wait (Redis' 10%)
    if ((round & 15) == 15) {
      now_ = clock_();
      if (now_ - start >= budget) break;
    }
  }
  now_ = -1;
  return deleted;
}

// ---- commands ------------------------------------------------------------------------

void Db::prefetch_item(std::uint64_t h) const noexcept {
  const std::uint64_t tag = tag_of(h);
  std::size_t i = h & mask_;
  for (int probe = 0; probe < 4; ++probe) {
    const std::uint64_t s = table_[i];
    if (s == 0) return;
    if ((s >> 48) == tag) {
      __builtin_prefetch(slot_item(s));
      __builtin_prefetch(slot_item(s) + 32);
      return;
    }
    i = (i + 1) & mask_;
  }
}

void Db::execute(Cmd cmd, std::span<const std::string_view> argv, std::string& out, std::uint64_t h) {
  switch (cmd) {
    case Cmd::get: {
      const Found f = find(argv[1], h);
      if (f.item == nullptr) {
        resp::null_bulk(out);
      } else {
        resp::bulk(out, Item::at(f.item).value_view());
      }
      return;
    }
    case Cmd::set: return cmd_set(argv, h, out);
    case Cmd::incr: return cmd_incr(argv[1], h, 1, out);
    case Cmd::decr: return cmd_incr(argv[1], h, -1, out);
    case Cmd::incrby:
    case Cmd::decrby: {
      std::int64_t by = 0;
      if (!resp::parse_int(argv[2], by)) return wrong_type_of_value(out);
      if (cmd == Cmd::decrby) {
        if (by == INT64_MIN) return resp::error(out, "ERR decrement would overflow");
        by = -by;
      }
      return cmd_incr(argv[1], h, by, out);
    }
    case Cmd::expire: return cmd_expire(argv, h, true, out);
    case Cmd::pexpire: return cmd_expire(argv, h, false, out);
    case Cmd::ttl: return cmd_ttl(argv[1], h, true, out);
    case Cmd::pttl: return cmd_ttl(argv[1], h, false, out);
    case Cmd::del: {
      std::int64_t n = 0;
      for (std::size_t i = 1; i < argv.size(); ++i) {
        const Found f = find(argv[i], hash(argv[i]));
        if (f.item != nullptr) {
          erase(f.slot);
          ++n;
        }
      }
      return resp::integer(out, n);
    }
    case Cmd::exists: {
      std::int64_t n = 0;
      for (std::size_t i = 1; i < argv.size(); ++i) n += find(argv[i], hash(argv[i])).item != nullptr;
      return resp::integer(out, n);
    }
    case Cmd::mget: {
      resp::array(out, argv.size() - 1);
      for (std::size_t i = 1; i < argv.size(); ++i) {
        const Found f = find(argv[i], hash(argv[i]));
        if (f.item == nullptr) {
          resp::null_bulk(out);
        } else {
          resp::bulk(out, Item::at(f.item).value_view());
        }
      }
      return;
    }
    case Cmd::mset: {
      if (argv.size() % 2 == 0) return resp::error(out, "ERR wrong number of arguments for 'mset' command");
      for (std::size_t i = 1; i + 1 < argv.size(); i += 2) {
        const std::uint64_t h = hash(argv[i]);
        put(find(argv[i], h), argv[i], h, argv[i + 1], -1);
      }
      return resp::simple(out, "OK");
    }
    case Cmd::dbsize: return resp::integer(out, static_cast<std::int64_t>(count_));
    case Cmd::flushall: {
      if (argv.size() > 2 || (argv.size() == 2 && !equals_upper(argv[1], "ASYNC") && !equals_upper(argv[1], "SYNC"))) {
        return resp::error(out, "ERR syntax error");
      }
      flush();
      return resp::simple(out, "OK");
    }
    default: return resp::error(out, "ERR this command does not run on a shard");
  }
}

void Db::cmd_set(std::span<const std::string_view> argv, std::uint64_t h, std::string& out) {
  bool nx = false, xx = false, keep_ttl = false, has_ttl = false;
  Millis ttl = 0;
  for (std::size_t i = 3; i < argv.size(); ++i) {
    const std::string_view o = argv[i];
    if (equals_upper(o, "NX") && !xx) {
      nx = true;
    } else if (equals_upper(o, "XX") && !nx) {
      xx = true;
    } else if (equals_upper(o, "KEEPTTL") && !has_ttl) {
      keep_ttl = true;
    } else if ((equals_upper(o, "EX") || equals_upper(o, "PX")) && !keep_ttl && !has_ttl && i + 1 < argv.size()) {
      std::int64_t v = 0;
      if (!resp::parse_int(argv[i + 1], v)) return wrong_type_of_value(out);
      const bool seconds = equals_upper(o, "EX");
      if (v <= 0 || (seconds && v > INT64_MAX / 1000)) {
        return resp::error(out, "ERR invalid expire time in 'set' command");
      }
      ttl = seconds ? v * 1000 : v;
      has_ttl = true;
      ++i;
    } else {
      return resp::error(out, "ERR syntax error");
    }
  }
  Millis at = -1;
  if (has_ttl) {
    if (ttl > INT64_MAX - now()) return resp::error(out, "ERR invalid expire time in 'set' command");
    at = now() + ttl;
  }
  const std::string_view key = argv[1];
  const Found f = find(key, h);
  if ((nx && f.item != nullptr) || (xx && f.item == nullptr)) return resp::null_bulk(out);
  if (keep_ttl && f.item != nullptr) {
    const Item it = Item::at(f.item);
    if (it.expiring) at = it.expires_at();
  }
  put(f, key, h, argv[2], at);
  resp::simple(out, "OK");
}

void Db::cmd_incr(std::string_view key, std::uint64_t h, std::int64_t by, std::string& out) {
  const Found f = find(key, h);
  std::int64_t value = 0;
  Millis at = -1;
  if (f.item != nullptr) {
    const Item it = Item::at(f.item);
    if (!resp::parse_int(it.value_view(), value)) return wrong_type_of_value(out);
    if (it.expiring) at = it.expires_at();  // INCR keeps the time to live
  }
  if ((by > 0 && value > INT64_MAX - by) || (by < 0 && value < INT64_MIN - by)) {
    return resp::error(out, "ERR increment or decrement would overflow");
  }
  value += by;
  char digits[24];
  const auto r = std::to_chars(digits, digits + sizeof digits, value);
  put(f, key, h, std::string_view(digits, static_cast<std::size_t>(r.ptr - digits)), at);
  resp::integer(out, value);
}

void Db::cmd_expire(std::span<const std::string_view> argv, std::uint64_t h, bool seconds, std::string& out) {
  bool nx = false, xx = false, gt = false, lt = false;
  for (std::size_t i = 3; i < argv.size(); ++i) {
    if (equals_upper(argv[i], "NX")) nx = true;
    else if (equals_upper(argv[i], "XX")) xx = true;
    else if (equals_upper(argv[i], "GT")) gt = true;
    else if (equals_upper(argv[i], "LT")) lt = true;
    else return resp::error(out, "ERR Unsupported option " + std::string(argv[i]));
  }
  if (nx && (xx || gt || lt)) return resp::error(out, "ERR NX and XX, GT or LT options at the same time are not compatible");
  if (gt && lt) return resp::error(out, "ERR GT and LT options at the same time are not compatible");
  std::int64_t when = 0;
  if (!resp::parse_int(argv[2], when)) return wrong_type_of_value(out);
  const char* invalid = seconds ? "ERR invalid expire time in 'expire' command" : "ERR invalid expire time in 'pexpire' command";
  if (seconds) {
    if (when > INT64_MAX / 1000 || when < INT64_MIN / 1000) return resp::error(out, invalid);
    when *= 1000;
  }
  const Millis base = now();
  if ((when > 0 && base > INT64_MAX - when) || (when < 0 && base < INT64_MIN - when)) return resp::error(out, invalid);
  const Millis at = base + when;
  const std::string_view key = argv[1];
  const Found f = find(key, h);
  if (f.item == nullptr) return resp::integer(out, 0);
  const Item it = Item::at(f.item);
  if (nx && it.expiring) return resp::integer(out, 0);
  if (xx && !it.expiring) return resp::integer(out, 0);
  if (gt && (!it.expiring || at <= it.expires_at())) return resp::integer(out, 0);  // no expiry: forever, the largest
  if (lt && it.expiring && at >= it.expires_at()) return resp::integer(out, 0);
  if (at <= base) {
    erase(f.slot);
  } else if (it.expiring) {
    it.set_expires_at(at);
  } else {
    put(f, key, h, it.value_view(), at);
  }
  resp::integer(out, 1);
}

void Db::cmd_ttl(std::string_view key, std::uint64_t h, bool seconds, std::string& out) {
  const Found f = find(key, h);
  if (f.item == nullptr) return resp::integer(out, -2);
  const Item it = Item::at(f.item);
  if (!it.expiring) return resp::integer(out, -1);
  Millis left = it.expires_at() - now();
  if (left < 0) left = 0;
  resp::integer(out, seconds ? (left + 500) / 1000 : left);
}

}  // namespace kv
