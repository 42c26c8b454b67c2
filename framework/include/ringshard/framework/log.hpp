// Logging through spdlog. Every line carries the shard it came from
// ("shard 3", or "main" for threads that are not shards). The level comes from
// the RINGSHARD_LOG environment variable (trace, debug, info, warn, error,
// critical, off; default info). Nothing on the hot path logs above debug.
//
// The RINGSHARD_LOG_* macros do not depend on SPDLOG_ACTIVE_LEVEL, which stays
// the application's own choice for its spdlog macros: every level is compiled
// in and filtered at run time, unless RINGSHARD_LOG_ACTIVE_LEVEL (an
// SPDLOG_LEVEL_* value) is defined lower to compile some out.
#pragma once

#include <spdlog/spdlog.h>

#include <string_view>

namespace ringshard {

/// The project's logger (created on first use).
spdlog::logger& logger();

/// Marks the calling thread as shard `id` (-1: not a shard) for log lines.
void set_log_shard(int id) noexcept;

/// Logs the exception being handled (call from a catch block) as one error
/// line: "<who> threw: <what()>", or that it was not a std::exception.
void log_current_exception(std::string_view who) noexcept;

}  // namespace ringshard

#ifndef RINGSHARD_LOG_ACTIVE_LEVEL
#define RINGSHARD_LOG_ACTIVE_LEVEL SPDLOG_LEVEL_TRACE
#endif

#define RINGSHARD_LOG_CALL(level, ...) \
  ::ringshard::logger().log(::spdlog::source_loc{__FILE__, __LINE__, SPDLOG_FUNCTION}, level, __VA_ARGS__)

#if RINGSHARD_LOG_ACTIVE_LEVEL <= SPDLOG_LEVEL_TRACE
#define RINGSHARD_LOG_TRACE(...) RINGSHARD_LOG_CALL(::spdlog::level::trace, __VA_ARGS__)
#else
#define RINGSHARD_LOG_TRACE(...) (void)0
#endif
#if RINGSHARD_LOG_ACTIVE_LEVEL <= SPDLOG_LEVEL_DEBUG
#define RINGSHARD_LOG_DEBUG(...) RINGSHARD_LOG_CALL(::spdlog::level::debug, __VA_ARGS__)
#else
#define RINGSHARD_LOG_DEBUG(...) (void)0
#endif
#if RINGSHARD_LOG_ACTIVE_LEVEL <= SPDLOG_LEVEL_INFO
#define RINGSHARD_LOG_INFO(...) RINGSHARD_LOG_CALL(::spdlog::level::info, __VA_ARGS__)
#else
#define RINGSHARD_LOG_INFO(...) (void)0
#endif
#if RINGSHARD_LOG_ACTIVE_LEVEL <= SPDLOG_LEVEL_WARN
#define RINGSHARD_LOG_WARN(...) RINGSHARD_LOG_CALL(::spdlog::level::warn, __VA_ARGS__)
#else
#define RINGSHARD_LOG_WARN(...) (void)0
#endif
#if RINGSHARD_LOG_ACTIVE_LEVEL <= SPDLOG_LEVEL_ERROR
#define RINGSHARD_LOG_ERROR(...) RINGSHARD_LOG_CALL(::spdlog::level::err, __VA_ARGS__)
#else
#define RINGSHARD_LOG_ERROR(...) (void)0
#endif
