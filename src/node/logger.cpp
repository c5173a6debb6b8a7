#include "node/logger.h"

#include <chrono>
#include <cstdio>
#include <ctime>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace rpool::node {
namespace {

const char* level_name(Logger::Level level) {
  switch (level) {
    case Logger::Level::debug: return "debug";
    case Logger::Level::info: return "info";
    case Logger::Level::warn: return "warn";
    case Logger::Level::error: return "error";
    case Logger::Level::off: return "off";
  }
  return "info";
}

std::string timestamp() {
  const auto now = std::chrono::system_clock::now();
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  const std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms % 1000);
}

}  // namespace

void Logger::log(Level level, std::string_view message, std::initializer_list<Field> fields) const {
  if (level < min_level_) return;
  std::string line;
  if (format_ == Format::json) {
    nlohmann::json j;
    j["ts"] = timestamp();
    j["level"] = level_name(level);
    if (node_id_ != 0) j["node"] = node_id_;
    j["msg"] = message;
    for (const auto& [key, value] : fields) {
      std::visit([&j, k = std::string(key)](const auto& v) { j[k] = v; }, value);
    }
    line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    line = fmt::format("{} {:<5} ", timestamp(), level_name(level));
    if (node_id_ != 0) line += fmt::format("node={} ", node_id_);
    line += message;
    for (const auto& [key, value] : fields) {
      std::visit([&line, key](const auto& v) { line += fmt::format(" {}={}", key, v); }, value);
    }
  }
  line.push_back('\n');
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace rpool::node
