// One line per event on stderr, as JSON or as text (`rpoold --log-format json|text`).
//
//   logger.info("leader elected", {{"term", 7}, {"leader", 2}});
//   text: 2026-11-29T02:31:07.123Z INFO leader elected term=7 leader=2
//   json: {"ts":"2026-11-29T02:31:07.123Z","level":"info","msg":"leader
//   elected","term":7,"leader":2}
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace rpool::node {

class Logger {
 public:
  enum class Format { text, json };
  enum class Level { debug, info, warn, error, off };  // off: as a minimum level, nothing
  using Value = std::variant<std::int64_t, std::uint64_t, std::string, bool>;
  using Field = std::pair<std::string_view, Value>;

  explicit Logger(Format format = Format::text, std::uint64_t node_id = 0)
      : format_(format), node_id_(node_id) {}

  void log(Level level, std::string_view message, std::initializer_list<Field> fields = {}) const;
  void debug(std::string_view m, std::initializer_list<Field> f = {}) const {
    log(Level::debug, m, f);
  }
  void info(std::string_view m, std::initializer_list<Field> f = {}) const {
    log(Level::info, m, f);
  }
  void warn(std::string_view m, std::initializer_list<Field> f = {}) const {
    log(Level::warn, m, f);
  }
  void error(std::string_view m, std::initializer_list<Field> f = {}) const {
    log(Level::error, m, f);
  }

  void set_min_level(Level level) { min_level_ = level; }

 private:
  Format format_;
  std::uint64_t node_id_;
  Level min_level_ = Level::info;
};

}  // namespace rpool::node
