#include "kv/server.hpp"

#include <unistd.h>

#include <atomic>
#include <cstring>

#include "ringshard/net/net_shard.hpp"

namespace kv {

using namespace ringshard;

namespace {

constexpr std::size_t kFlushAt = 16 << 10;  // replies gathered before they are handed on

void put_u32(std::string& s, std::uint32_t v) {
  char b[4];
  std::memcpy(b, &v, 4);
  s.append(b, 4);
}
std::uint32_t get_u32(const char* p) noexcept {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

std::atomic<std::uint64_t> next_client_id{1};

void wrong_arity(std::string& out, const char* name) {
  resp::error(out, std::string("ERR wrong number of arguments for '") + name + "' command");
}

// Redis' glob subset for CONFIG GET: '*' and '?', any case.
bool glob(std::string_view pattern, std::string_view name) {
  if (pattern.empty()) return name.empty();
  if (pattern[0] == '*') {
    for (std::size_t i = 0; i <= name.size(); ++i)
      if (glob(pattern.substr(1), name.substr(i))) return true;
    return false;
  }
  if (name.empty()) return false;
  const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
  if (pattern[0] != '?' && lower(pattern[0]) != lower(name[0])) return false;
  return glob(pattern.substr(1), name.substr(1));
}

bool valid_client_name(std::string_view name) {
  for (const char c : name)
    if (c < '!' || c > '~') return false;
  return true;
}

}  // namespace

void append_op(std::string& ops, Cmd cmd, std::span<const std::string_view> argv) {
  ops += static_cast<char>(cmd);
  put_u32(ops, static_cast<std::uint32_t>(argv.size()));
  for (const std::string_view a : argv) {
    put_u32(ops, static_cast<std::uint32_t>(a.size()));
    ops.append(a);
  }
}

// ---- Store ---------------------------------------------------------------------------

void Store::on_start() {
  if (options_.sweep_interval.count() > 0) after(options_.sweep_interval, Sweep{});
}

void Store::on_message(const Sweep&) {
  db.expire_cycle(options_.sweep_budget);
  after(options_.sweep_interval, Sweep{});
}

std::string Store::on_message(const Batch& batch) {
  db.new_batch();
  // Decode every command first, and start loading the table slots of the
  // one-key ones, then their items: the lookups then wait for their cache
  // misses together (as a connection does for its own shard).
  ops_.clear();
  argv_.clear();
  const char* p = batch.ops.data();
  const char* const end = p + batch.ops.size();
  while (p < end) {
    Op op{static_cast<Cmd>(*p), static_cast<std::uint32_t>(argv_.size()), get_u32(p + 1), 0};
    p += 5;
    for (std::uint32_t i = 0; i < op.count; ++i) {
      const std::uint32_t n = get_u32(p);
      argv_.emplace_back(p + 4, n);
      p += 4 + n;
    }
    if (info(op.cmd).route == Route::key && op.count >= 2) {
      op.hash = hash_key(argv_[op.first + 1], seed_);
      db.prefetch(op.hash);
    }
    ops_.push_back(op);
  }
  for (const Op& op : ops_)
    if (op.hash != 0) db.prefetch_item(op.hash);
  std::string out;
  for (const Op& op : ops_) {
    const std::size_t at = out.size();
    out.append(4, '\0');
    const std::span<const std::string_view> argv(argv_.data() + op.first, op.count);
    if (op.hash != 0) {
      db.execute(op.cmd, argv, out, op.hash);
    } else {
      db.execute(op.cmd, argv, out);
    }
    const auto n = static_cast<std::uint32_t>(out.size() - at - 4);
    std::memcpy(out.data() + at, &n, 4);
  }
  if (argv_.capacity() > 4096) std::vector<std::string_view>().swap(argv_);
  if (ops_.capacity() > 4096) std::vector<Op>().swap(ops_);
  return out;
}

// ---- Gather: the parts of a command split over shards ------------------------------

struct Gather {
  Cmd cmd = Cmd::unknown;
  net::ReplySlot slot;
  unsigned waiting = 0;                               // parts not answered yet
  std::int64_t sum = 0;                               // DEL, EXISTS, DBSIZE
  std::string error;                                  // the first error a part answered
  std::vector<std::string> items;                     // MGET: each key's value (RESP), in key order
  std::vector<std::vector<std::uint32_t>> positions;  // MGET: [shard] its keys' places

  void part_done(std::uint32_t part, std::string_view reply) {
    if (reply.empty() || reply[0] == '-') {
      if (error.empty()) error = reply.empty() ? std::string("-ERR empty reply from a shard\r\n") : std::string(reply);
    } else if (cmd == Cmd::mget) {
      std::size_t p = reply.find("\r\n");
      p = p == std::string_view::npos ? reply.size() : p + 2;
      for (const std::uint32_t pos : positions[part]) {
        const std::size_t n = resp::bulk_value_size(reply.substr(p));
        if (n == 0) {
          if (error.empty()) error = "-ERR malformed reply from a shard\r\n";
          break;
        }
        items[pos].assign(reply.substr(p, n));
        p += n;
      }
    } else if (reply[0] == ':' && reply.size() >= 3) {
      std::int64_t v = 0;
      if (resp::parse_int(reply.substr(1, reply.size() - 3), v)) sum += v;
    }
    if (--waiting == 0) finish();
  }

  void finish() {
    std::string r;
    if (!error.empty()) {
      r = std::move(error);
    } else if (cmd == Cmd::mget) {
      std::size_t size = 16;
      for (const auto& item : items) size += item.size();
      r.reserve(size);
      resp::array(r, items.size());
      for (const auto& item : items) r += item;
    } else if (cmd == Cmd::del || cmd == Cmd::exists || cmd == Cmd::dbsize) {
      resp::integer(r, sum);
    } else {
      resp::simple(r, "OK");
    }
    slot(std::move(r));
  }
};

// ---- Client --------------------------------------------------------------------------

Client::Client(ClusterPtr cluster)
    : cluster_(std::move(cluster)),
      replies_(*this, cluster_->options.max_pending),
      parser_(cluster_->options.limits),
      outgoing_(cluster_->shards()),
      id_(next_client_id.fetch_add(1, std::memory_order_relaxed)) {}

Client::~Client() = default;

std::size_t Client::on_input(std::span<const std::byte> bytes) {
  if (closing_) return bytes.size();  // after QUIT or a protocol error: discarded
  const std::string_view in(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  here_ = shard().id();
  local_ = static_cast<Store*>(actors::ActorTable::of(shard()).lookup(cluster_->stores[here_].raw()));
  if (local_ != nullptr) local_->db.new_batch();
  if (out_.capacity() <= std::string().capacity()) out_ = send_buffer();
  const std::size_t max_pending = replies_.max_open();
  const std::size_t high = options().high_watermark;
  const std::size_t remote_max = remote_limit();  // its average changes only when replies come
  if (replies_.open() == 0) held_ = 0;
  const unsigned shards = cluster_->shards();
  std::size_t used = 0;
  bool more = true;
  while (more) {
    // 1. Parse up to kWindow requests; for each one-key command of this
    // shard, start loading its table slot into the cache.
    window_.clear();
    args_.clear();
    std::size_t pos = used;
    bool malformed = false;
    while (window_.size() < kWindow && pos < in.size()) {
      const std::size_t start = pos;
      const auto r = parser_.parse(in.substr(pos));
      if (r.status == resp::RequestParser::Status::incomplete) {
        more = false;
        break;
      }
      if (r.status == resp::RequestParser::Status::error) {
        malformed = true;
        more = false;
        break;
      }
      pos += r.used;
      const auto args = parser_.args();
      Parsed p{pos, static_cast<std::uint32_t>(args_.size()), static_cast<std::uint32_t>(args.size()), nullptr, 0, here_};
      if (!args.empty()) {
        p.info = &lookup(args[0]);
        args_.insert(args_.end(), args.begin(), args.end());
        if (p.info->route == Route::key && args.size() >= 2) {
          p.hash = hash_key(args[1], cluster_->seed);
          p.owner = shards == 1 ? 0 : shard_of(p.hash, shards);
          if (p.owner == here_ && local_ != nullptr) local_->db.prefetch(p.hash);
        }
      }
      window_.push_back(p);
      if (in[start] != '*') break;  // inline: its arguments live in the parser until the next parse
    }
    if (pos >= in.size()) more = false;
    // 2. The slots have had time to arrive: start loading the items.
    if (local_ != nullptr) {
      for (const Parsed& p : window_)
        if (p.hash != 0 && p.owner == here_) local_->db.prefetch_item(p.hash);
    }
    // 3. Run them in order.
    bool stopped = false;
    for (const Parsed& p : window_) {
      if (p.info != nullptr) dispatch(p, std::span<const std::string_view>(args_).subspan(p.first, p.count));
      used = p.end;
      if (closing_) {
        used = in.size();
        stopped = true;
        break;
      }
      if (replies_.open() >= max_pending) {  // the reply queue paused reading
        stopped = true;
        break;
      }
      if (out_.size() >= kFlushAt) flush_out();
      if (group_.size() >= kFlushAt) close_group();
      if (congested(high)) {  // the peer does not keep up: stop until it drains
        output_paused_ = true;
        pause_reading();
        stopped = true;
        break;
      }
      if (remote_waiting_ >= remote_max) {  // replies of unknown size owed: stop until some come
        remote_paused_ = true;
        pause_reading();
        stopped = true;
        break;
      }
    }
    if (stopped) {
      parser_.discard();  // it may have started on a request after `used`
      break;
    }
    if (malformed) {
      std::string& o = reply_buffer();
      o += "-ERR Protocol error: ";
      o += parser_.error();
      o += "\r\n";
      closing_ = true;
      used = in.size();
    }
  }
  if (args_.capacity() > 4096) std::vector<std::string_view>().swap(args_);
  finish_batch();
  maybe_close();
  return used;
}

void Client::on_drain() { maybe_resume(); }

bool Client::congested(std::size_t high) const noexcept {
  // Replies in slots wait for an earlier one (owed by another shard) and
  // are not in the send queue yet, but they are memory all the same.
  return pending_send_bytes() + held_ + group_.size() > high;
}

void Client::maybe_resume() {
  if (replies_.open() == 0) held_ = 0;
  const bool paused = output_paused_ || remote_paused_;
  if (output_paused_ && !congested(options().high_watermark)) output_paused_ = false;
  if (remote_paused_ && remote_waiting_ < remote_limit()) remote_paused_ = false;
  if (paused && !output_paused_ && !remote_paused_) resume_reading();
}

std::size_t Client::remote_limit() const noexcept {
  const std::size_t by_size = options().high_watermark / std::max<std::size_t>(remote_reply_avg_, 256);
  return std::clamp<std::size_t>(by_size, 4, std::max<std::size_t>(replies_.max_open(), 4));
}

void Client::dispatch(const Parsed& p, std::span<const std::string_view> argv) {
  const CommandInfo& c = *p.info;
  if (c.cmd == Cmd::unknown) {
    std::string args;
    for (std::size_t i = 1; i < argv.size() && args.size() < 128; ++i) {
      args += '\'';
      args += argv[i].substr(0, 128 - args.size());
      args += "' ";
    }
    resp::error(reply_buffer(), "ERR unknown command '" + std::string(argv[0].substr(0, 128)) +
                                    "', with args beginning with: " + args);
    return;
  }
  if (!arity_ok(c, argv.size())) return wrong_arity(reply_buffer(), c.name);
  switch (c.route) {
    case Route::connection: return connection_command(c.cmd, argv);
    case Route::key:
      if (p.owner != here_) return remote(p.owner, c.cmd, argv, Sink{take_slot(), nullptr, 0});
      if (local_ == nullptr) return resp::error(reply_buffer(), "ERR the server is stopping");
      return local_->db.execute(c.cmd, argv, reply_buffer(), p.hash);
    default: return split(c, argv);
  }
}

void Client::run_local(Cmd cmd, std::span<const std::string_view> argv) {
  if (local_ == nullptr) return resp::error(reply_buffer(), "ERR the server is stopping");
  local_->db.execute(cmd, argv, reply_buffer());
}

void Client::split(const CommandInfo& c, std::span<const std::string_view> argv) {
  if (c.route == Route::pairs && argv.size() % 2 == 0) return wrong_arity(reply_buffer(), c.name);
  const unsigned n = cluster_->shards();
  if (n == 1) return run_local(c.cmd, argv);
  const std::size_t step = c.route == Route::pairs ? 2 : 1;
  bool all_here = c.route != Route::all;
  owners_.clear();
  if (c.route != Route::all) {
    for (std::size_t i = 1; i < argv.size(); i += step) {
      const unsigned s = cluster_->owner(argv[i]);
      owners_.push_back(s);
      all_here = all_here && s == here_;
    }
  }
  if (all_here) return run_local(c.cmd, argv);

  auto g = std::make_shared<Gather>();
  g->cmd = c.cmd;
  g->positions.resize(n);
  for (std::size_t k = 0; k < owners_.size(); ++k) g->positions[owners_[k]].push_back(static_cast<std::uint32_t>(k));
  if (c.cmd == Cmd::mget) g->items.resize(owners_.size());
  const auto involved = [&](unsigned s) { return c.route == Route::all || !g->positions[s].empty(); };
  for (unsigned s = 0; s < n; ++s) g->waiting += involved(s);
  g->slot = take_slot();
  for (unsigned s = 0; s < n; ++s) {
    if (!involved(s)) continue;
    if (c.route == Route::all) {
      sub_.assign(argv.begin(), argv.end());
    } else {
      sub_.clear();
      sub_.push_back(argv[0]);
      for (const std::uint32_t k : g->positions[s]) {
        sub_.push_back(argv[1 + k * step]);
        if (step == 2) sub_.push_back(argv[2 + k * step]);
      }
    }
    if (s == here_) {
      scratch_.clear();
      if (local_ != nullptr) {
        local_->db.execute(c.cmd, sub_, scratch_);
      } else {
        resp::error(scratch_, "ERR the server is stopping");
      }
      g->part_done(s, scratch_);
    } else {
      remote(s, c.cmd, sub_, Sink{{}, g, s});
    }
  }
  if (scratch_.capacity() > (64 << 10)) std::string().swap(scratch_);
}

void Client::remote(unsigned shard, Cmd cmd, std::span<const std::string_view> argv, Sink sink) {
  Outgoing& o = outgoing_[shard];
  append_op(o.ops, cmd, argv);
  o.sinks.push_back(std::move(sink));
  have_outgoing_ = true;
  ++remote_waiting_;
}

void Client::answered(actors::AskResult<std::string>& result, std::vector<Sink>& sinks) {
  const auto deliver = [](Sink& s, std::string_view reply) {
    if (s.gather) {
      s.gather->part_done(s.part, reply);
    } else {
      s.slot(std::string(reply));
    }
  };
  remote_waiting_ -= std::min(remote_waiting_, sinks.size());
  if (!result.ok()) {
    const std::string e = "-ERR shard unavailable (" + std::string(actors::to_string(result.status())) + ")\r\n";
    for (Sink& s : sinks) deliver(s, e);
  } else {
    const std::string_view blob = *result;
    std::size_t p = 0;
    for (Sink& s : sinks) {
      if (blob.size() - p < 4) {
        deliver(s, "-ERR missing reply from a shard\r\n");
        continue;
      }
      const std::uint32_t n = get_u32(blob.data() + p);
      held_ += n;
      remote_reply_avg_ = (3 * remote_reply_avg_ + n) / 4;
      deliver(s, blob.substr(p + 4, n));
      p += 4 + n;
    }
  }
  maybe_resume();
  maybe_close();
}

// ---- the reply order -----------------------------------------------------------------

std::string& Client::reply_buffer() {
  if (replies_.open() == 0) return out_;  // nothing owed before it: straight out
  if (!group_slot_) group_slot_ = replies_.reserve();
  return group_;
}

net::ReplySlot Client::take_slot() {
  flush_out();
  close_group();
  return replies_.reserve();
}

void Client::flush_out() {
  if (out_.empty()) return;
  send(std::move(out_));
  out_ = send_buffer();
}

void Client::close_group() {
  if (!group_slot_) return;
  held_ += group_.size();
  group_slot_(std::move(group_));
  group_.clear();
}

void Client::finish_batch() {
  close_group();
  if (!out_.empty()) {
    send(std::move(out_));
    out_ = std::string();
  } else if (out_.capacity() > std::string().capacity()) {
    net::NetShard::of(shard()).recycle_chunk(std::move(out_));  // an idle connection keeps no buffer
    out_ = std::string();
  }
  if (!have_outgoing_) return;
  have_outgoing_ = false;
  for (unsigned s = 0; s < outgoing_.size(); ++s) {
    Outgoing& o = outgoing_[s];
    if (o.sinks.empty()) continue;
    ask(cluster_->stores[s], Batch{std::move(o.ops)},
        [this, sinks = std::move(o.sinks)](actors::AskResult<std::string> r) mutable { answered(r, sinks); });
    o.ops = std::string();
    o.sinks = std::vector<Sink>();
  }
}

void Client::maybe_close() {
  if (closing_ && !close_started_ && replies_.open() == 0 && !have_outgoing_) {
    close_started_ = true;
    close_lingering();  // the last reply is read before the close
  }
}

// ---- commands the connection answers -------------------------------------------------

void Client::connection_command(Cmd cmd, std::span<const std::string_view> argv) {
  std::string& o = reply_buffer();
  switch (cmd) {
    case Cmd::ping:
      if (argv.size() > 2) return wrong_arity(o, "ping");
      if (argv.size() == 2) return resp::bulk(o, argv[1]);
      return resp::simple(o, "PONG");
    case Cmd::echo: return resp::bulk(o, argv[1]);
    case Cmd::command: return resp::array(o, 0);  // no command documentation: clients do without
    case Cmd::shardof: return resp::integer(o, cluster_->owner(argv[1]));
    case Cmd::select: {
      std::int64_t db = 0;
      if (!resp::parse_int(argv[1], db)) return resp::error(o, "ERR value is not an integer or out of range");
      if (db != 0) return resp::error(o, "ERR DB index is out of range");
      return resp::simple(o, "OK");
    }
    case Cmd::quit:
      closing_ = true;
      return resp::simple(o, "OK");
    case Cmd::client: {
      const std::string_view sub = argv[1];
      if (equals_upper(sub, "SETNAME") && argv.size() == 3) {
        if (!valid_client_name(argv[2])) {
          return resp::error(o, "ERR Client names cannot contain spaces, newlines or special characters.");
        }
        name_.assign(argv[2]);
        return resp::simple(o, "OK");
      }
      if (equals_upper(sub, "GETNAME") && argv.size() == 2) {
        if (name_.empty()) return resp::null_bulk(o);
        return resp::bulk(o, name_);
      }
      if (equals_upper(sub, "ID") && argv.size() == 2) return resp::integer(o, static_cast<std::int64_t>(id_));
      if (equals_upper(sub, "SETINFO") && argv.size() == 4) return resp::simple(o, "OK");
      return resp::error(o, "ERR unknown subcommand or wrong number of arguments for '" +
                                std::string(sub.substr(0, 128)) + "'. Try CLIENT HELP.");
    }
    case Cmd::config: {
      if (!equals_upper(argv[1], "GET") || argv.size() < 3) {
        return resp::error(o, "ERR unknown subcommand or wrong number of arguments for '" +
                                  std::string(argv[1].substr(0, 128)) + "'. ringshard-kv has CONFIG GET only.");
      }
      const std::pair<const char*, std::string> params[] = {
          {"save", ""},
          {"appendonly", "no"},
          {"databases", "1"},
          {"maxmemory", "0"},
          {"proto-max-bulk-len", std::to_string(cluster_->options.limits.max_bulk)},
      };
      std::size_t matched = 0;
      bool hit[std::size(params)] = {};
      for (std::size_t i = 0; i < std::size(params); ++i) {
        for (std::size_t a = 2; a < argv.size() && !hit[i]; ++a) hit[i] = glob(argv[a], params[i].first);
        matched += hit[i];
      }
      resp::array(o, 2 * matched);
      for (std::size_t i = 0; i < std::size(params); ++i) {
        if (!hit[i]) continue;
        resp::bulk(o, params[i].first);
        resp::bulk(o, params[i].second);
      }
      return;
    }
    case Cmd::hello: {
      std::size_t i = 1;
      if (argv.size() >= 2) {
        std::int64_t version = 0;
        if (!resp::parse_int(argv[1], version)) {
          return resp::error(o, "ERR Protocol version is not an integer or out of range");
        }
        // RESP3 is not spoken here: a client asking for it falls back to RESP2.
        if (version != 2) return resp::error(o, "NOPROTO unsupported protocol version");
        i = 2;
      }
      std::string name = name_;
      for (; i < argv.size(); ++i) {
        if (equals_upper(argv[i], "SETNAME") && i + 1 < argv.size()) {
          if (!valid_client_name(argv[i + 1])) {
            return resp::error(o, "ERR Client names cannot contain spaces, newlines or special characters.");
          }
          name.assign(argv[++i]);
        } else if (equals_upper(argv[i], "AUTH")) {
          return resp::error(o, "ERR AUTH: ringshard-kv has no users or passwords");
        } else {
          return resp::error(o, "ERR Syntax error in HELLO option '" + std::string(argv[i].substr(0, 128)) + "'");
        }
      }
      name_ = std::move(name);
      resp::array(o, 14);
      resp::bulk(o, "server");
      resp::bulk(o, "redis");
      resp::bulk(o, "version");
      resp::bulk(o, "7.0.0");
      resp::bulk(o, "proto");
      resp::integer(o, 2);
      resp::bulk(o, "id");
      resp::integer(o, static_cast<std::int64_t>(id_));
      resp::bulk(o, "mode");
      resp::bulk(o, "standalone");
      resp::bulk(o, "role");
      resp::bulk(o, "master");
      resp::bulk(o, "modules");
      resp::array(o, 0);
      return;
    }
    case Cmd::info: {
      Runtime& rt = shard().runtime();
      int clients = 0;
      for (unsigned s = 0; s < rt.shard_count(); ++s) clients += net::NetShard::of(rt.shard(s)).connections.load();
      std::uint16_t port = 0;
      try {
        port = net::Address::of_socket(fd()).port();
      } catch (const std::exception&) {
      }
      std::string text = "# Server\r\nredis_version:7.0.0\r\nserver_name:ringshard-kv\r\nredis_mode:standalone\r\n"
                         "os:Linux\r\narch_bits:64\r\nprocess_id:" +
                         std::to_string(::getpid()) + "\r\ntcp_port:" + std::to_string(port) +
                         "\r\nshards:" + std::to_string(cluster_->shards()) +
                         "\r\n\r\n# Clients\r\nconnected_clients:" + std::to_string(clients) + "\r\n";
      return resp::bulk(o, text);
    }
    default: return resp::error(o, "ERR unknown command");
  }
}

}  // namespace kv
