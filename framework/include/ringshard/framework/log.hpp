// Logging through spdlog. Every line carries the shard it came from
// ("shard 3", or "main" for threads that are not shards). The level comes from
// the RINGSHARD_LOG environment variable (trace, debug, info, warn, error,
// critical, off; default info). Nothing on the hot path logs above debug.
#pragma once

#include <spdlog/spdlog.h>

namespace ringshard {

/// The project's logger (created on first use).
spdlog::logger& logger();

/// Marks the calling thread as shard `id` (-1: not a shard) for log lines.
void set_log_shard(int id) noexcept;

}  // namespace ringshard

#define RINGSHARD_LOG_TRACE(...) SPDLOG_LOGGER_TRACE(&::ringshard::logger(), __VA_ARGS__)
#define RINGSHARD_LOG_DEBUG(...) SPDLOG_LOGGER_DEBUG(&::ringshard::logger(), __VA_ARGS__)
#define RINGSHARD_LOG_INFO(...) SPDLOG_LOGGER_INFO(&::ringshard::logger(), __VA_ARGS__)
#define RINGSHARD_LOG_WARN(...) SPDLOG_LOGGER_WARN(&::ringshard::logger(), __VA_ARGS__)
#define RINGSHARD_LOG_ERROR(...) SPDLOG_LOGGER_ERROR(&::ringshard::logger(), __VA_ARGS__)
