#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "pool/key_log.h"

using namespace rpool;
using namespace rpool::pool;

namespace {

KeyRecord record(int i) {
  KeyRecord r;
  r.scoped = "key-" + std::to_string(i);
  r.timestamp_ms = static_cast<std::uint64_t>(i);
  r.result.assign(static_cast<std::size_t>(i % 7), static_cast<std::uint8_t>(i));
  return r;
}

std::vector<std::string> keys_of(const KeyLog::View& v) {
  std::vector<std::string> out;
  v.for_each([&out](const KeyRecord& r) { out.push_back(r.scoped); });
  return out;
}

std::vector<std::string> keys_of(const KeyLog& log) {
  std::vector<std::string> out;
  log.for_each([&out](const KeyRecord& r) { out.push_back(r.scoped); });
  return out;
}

std::vector<std::string> range(int first, int last) {
  std::vector<std::string> out;
  for (int i = first; i < last; ++i) out.push_back("key-" + std::to_string(i));
  return out;
}

}  // namespace

TEST_CASE("a key log keeps records in order, oldest first, across blocks") {
  constexpr int n = 3 * static_cast<int>(KeyLog::default_block_records) + 17;
  KeyLog log;
  std::vector<const KeyRecord*> addresses;
  for (int i = 0; i < n; ++i) addresses.push_back(&log.push_back(record(i)));
  CHECK(log.size() == static_cast<std::size_t>(n));
  CHECK(log.blocks() == 4);
  CHECK(keys_of(log) == range(0, n));
  CHECK(log.front().scoped == "key-0");
  CHECK(log.back().scoped == "key-" + std::to_string(n - 1));
  // Records never move: every address handed out still holds its record.
  for (int i = 0; i < n; ++i)
    CHECK(addresses[static_cast<std::size_t>(i)]->timestamp_ms == static_cast<std::uint64_t>(i));

  for (int i = 0; i < static_cast<int>(KeyLog::default_block_records) + 3; ++i) log.pop_front();
  CHECK(log.blocks() == 3);
  CHECK(keys_of(log) == range(static_cast<int>(KeyLog::default_block_records) + 3, n));
  while (!log.empty()) log.pop_front();
  CHECK(log.blocks() == 0);
  log.push_back(record(5));
  CHECK(keys_of(log) == range(5, 6));
}

TEST_CASE("a frozen view stays as it was while the log appends and evicts, and outlives it") {
  constexpr int block = static_cast<int>(KeyLog::default_block_records);
  auto log = std::make_unique<KeyLog>();
  for (int i = 0; i < 2 * block + 10; ++i) log->push_back(record(i));
  for (int i = 0; i < 5; ++i) log->pop_front();
  const KeyLog::View view = log->freeze();
  CHECK(view.size() == static_cast<std::size_t>(2 * block + 5));

  // Appends fill the view's last block and go on into new ones; evictions free whole blocks
  // the view still holds.
  for (int i = 2 * block + 10; i < 5 * block; ++i) log->push_back(record(i));
  for (int i = 5; i < 4 * block; ++i) log->pop_front();
  CHECK(keys_of(*log) == range(4 * block, 5 * block));
  CHECK(keys_of(view) == range(5, 2 * block + 10));

  // Emptied, and then destroyed: the view still reads its records.
  while (!log->empty()) log->pop_front();
  log->push_back(record(7));
  log.reset();
  CHECK(keys_of(view) == range(5, 2 * block + 10));
}

TEST_CASE("a copied key log appends into blocks of its own") {
  KeyLog a;
  for (int i = 0; i < 10; ++i) a.push_back(record(i));
  const KeyLog::View before = a.freeze();
  KeyLog b = a;
  b.push_back(record(100));
  a.push_back(record(200));
  CHECK(keys_of(a).back() == "key-200");
  CHECK(keys_of(b).back() == "key-100");
  CHECK(keys_of(before) == range(0, 10));
  KeyLog moved = std::move(b);
  CHECK(b.empty());  // NOLINT(bugprone-use-after-move): a moved-from log is empty
  CHECK(moved.size() == 11);
}
