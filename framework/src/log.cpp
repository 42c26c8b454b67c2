#include "ringshard/framework/log.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <cstdlib>
#include <exception>
#include <memory>
#include <string>

namespace ringshard {

namespace {

thread_local int tl_log_shard = -1;

// %* in the pattern: "shard N" or "main".
class ShardFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&, spdlog::memory_buf_t& dest) override {
    if (tl_log_shard < 0) {
      static constexpr std::string_view kMain = "main";
      dest.append(kMain.data(), kMain.data() + kMain.size());
    } else {
      const std::string s = "shard " + std::to_string(tl_log_shard);
      dest.append(s.data(), s.data() + s.size());
    }
  }
  [[nodiscard]] std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<ShardFlag>();
  }
};

std::shared_ptr<spdlog::logger> make_logger() {
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto log = std::make_shared<spdlog::logger>("ringshard", sink);
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  formatter->add_flag<ShardFlag>('*').set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ [%*] %v");
  log->set_formatter(std::move(formatter));
  spdlog::level::level_enum level = spdlog::level::info;
  if (const char* env = std::getenv("RINGSHARD_LOG")) level = spdlog::level::from_str(env);
  log->set_level(level);
  log->flush_on(spdlog::level::warn);
  return log;
}

}  // namespace

spdlog::logger& logger() {
  static std::shared_ptr<spdlog::logger> instance = make_logger();
  return *instance;
}

void set_log_shard(int id) noexcept { tl_log_shard = id; }

void log_current_exception(std::string_view who) noexcept {
  try {
    try {
      throw;
    } catch (const std::exception& e) {
      RINGSHARD_LOG_ERROR("{} threw: {}", who, e.what());
    } catch (...) {
      RINGSHARD_LOG_ERROR("{} threw an unknown exception (not a std::exception)", who);
    }
  } catch (...) {
    // Logging itself failed (out of memory): nothing more to do.
  }
}

}  // namespace ringshard
