// Small builders shared by the wal tests.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "wal/log.h"
#include "wal/sim_file.h"

namespace rpool::wal::test {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents at the end of the scope.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string templ = std::string(base != nullptr ? base : "/tmp") + "/rpool-wal-test-XXXXXX";
    REQUIRE(::mkdtemp(templ.data()) != nullptr);
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The entry (index, term) with `bytes` payload bytes derived from both, so that a record read
// back from the wrong place never compares equal.
inline Entry entry(std::uint64_t index, std::uint64_t term, std::size_t bytes = 16,
                   std::uint8_t kind = 1) {
  Entry e{Term(term), LogIndex(index), kind, Bytes(bytes)};
  std::uint64_t x = index * 0x9E3779B97F4A7C15ull ^ term;
  for (auto& b : e.payload) {
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    b = static_cast<std::uint8_t>(x >> 56);
  }
  return e;
}

// entries first..first+count-1, all of `term`.
inline std::vector<Entry> entries(std::uint64_t first, std::size_t count, std::uint64_t term = 1,
                                  std::size_t bytes = 16) {
  std::vector<Entry> out;
  for (std::size_t i = 0; i < count; ++i) out.push_back(entry(first + i, term, bytes));
  return out;
}

// Options for tests: small segments, quiet warnings collected by the log, on `fs` if given.
inline Options small(FileSystem* fs = nullptr, std::uint64_t segment_bytes = 4096) {
  Options o;
  o.segment_bytes = segment_bytes;
  o.fs = fs;
  o.prepare_in_background = fs == nullptr;
  o.warn = [](const std::string&) {};
  return o;
}

inline std::unique_ptr<Log> open_ok(const std::string& dir, const Options& options) {
  OpenResult r = Log::open(dir, options);
  INFO(r.detail);
  REQUIRE_FALSE(r.error);
  REQUIRE(r.log != nullptr);
  r.log->check_invariants();
  return std::move(r.log);
}

inline std::vector<Entry> read_all(const Log& log) {
  std::vector<Entry> out;
  const auto ec = log.read(log.first_index(), log.last_index() + 1, out);
  INFO(log.error_detail());
  REQUIRE_FALSE(ec);
  return out;
}

// Steps run until one fails; returns how many returned ok (a crash test's operation, cut short
// by the fault it injects).
inline int steps(std::initializer_list<std::function<std::error_code()>> list) {
  int ok = 0;
  for (const auto& step : list) {
    if (step()) return ok;
    ++ok;
  }
  return ok;
}

}  // namespace rpool::wal::test
