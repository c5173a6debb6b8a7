// The pool state machine's snapshot (its byte layout is in detail.h) and the encoding of a
// command's result, which snapshots and the node's answers share. Part of StateMachine.
#include "pool/state_machine.h"

#include <algorithm>
#include <cstring>
#include <iterator>

#include <openssl/sha.h>

#include "base/assert.h"
#include "pool/detail.h"
#include "pool/random.h"

namespace rpool::pool {

using namespace detail;

Bytes StateMachine::snapshot() const { return begin_snapshot().encode(); }

StateMachine::PendingSnapshot StateMachine::begin_snapshot() const {
  // Written into one allocation of an upper bound of its size (key_bytes_ charges each key more
  // than its fixed fields). Starting from the magic with a capacity known only at run time also
  // keeps GCC 12 at -O3 from misreading the growth of an empty vector as an overflow
  // (-Wstringop-overflow).
  // Per key: two length bytes (pool id, key), the body hash, the timestamp, the result's length.
  static_assert(key_overhead_bytes >= 2 + sizeof(Sha256) + 8 + 4);
  PendingSnapshot pending;
  std::size_t head_max = sizeof snapshot_magic + 4 + 8 + 8 + 1 + 4 + 4;
  for (const auto& [pool_id, p] : pools_) {
    head_max += 1 + pool_id.size() + 8 + 4;
    for (const Item& item : p.items()) head_max += 1 + item.item_id.size() + 8 + 8;
  }
  for (const auto& [pool_id, last_request_id] : tombstones_) head_max += 1 + pool_id.size() + 8;
  pending.bytes_max_ = head_max + 4 + key_bytes_ + sizeof(Sha256);
  Bytes& out = pending.head_;
  out.assign(std::begin(snapshot_magic), std::end(snapshot_magic));
  out.reserve(head_max);
  ByteWriter w(out);
  w.u32(snapshot_version);
  w.u64(applied_index_);
  w.u64(clock_ms_);
  w.u8(bootstrapped_ ? 1 : 0);
  w.u32(static_cast<std::uint32_t>(pools_.size()));
  for (const auto* entry : sorted_pools()) {
    const auto& [pool_id, p] = *entry;
    w.str8(pool_id);
    w.u64(p.last_request_id());
    w.u32(static_cast<std::uint32_t>(p.items().size()));
    for (const Item& item : p.items()) put_item(w, item);
  }
  w.u32(static_cast<std::uint32_t>(tombstones_.size()));
  for (const auto& [pool_id, last_request_id] : tombstones_) {
    w.str8(pool_id);
    w.u64(last_request_id);
  }
  RPOOL_ASSERT_OP(out.size(), <=, head_max);
  pending.keys_ = keys_.log.freeze();
  return pending;
}

Bytes StateMachine::PendingSnapshot::encode() && {
  Bytes out = std::move(head_);
  out.reserve(bytes_max_);
  ByteWriter w(out);
  w.u32(static_cast<std::uint32_t>(keys_.size()));
  keys_.for_each([&w](const KeyRecord& r) {
    const auto [pool_id, key] = split_scoped_key(r.scoped);
    w.str8(pool_id);
    w.str8(key);
    w.raw(r.body_hash);
    w.u64(r.timestamp_ms);
    w.bytes32(r.result);
  });
  keys_ = {};  // the blocks go back now, not with the caller's PendingSnapshot
  const Sha256 sum = sha256(out);
  w.raw(sum);
  RPOOL_ASSERT_OP(out.size(), <=, bytes_max_);
  return out;
}

std::error_code StateMachine::restore(ByteView snapshot) {
  if (snapshot.size() < sizeof snapshot_magic + 4 + 32) return errc::malformed;
  const ByteView body = snapshot.first(snapshot.size() - 32);
  const Sha256 sum = sha256(body);
  if (!std::equal(sum.begin(), sum.end(), snapshot.end() - 32)) return errc::checksum_mismatch;

  ByteReader r(body);
  const ByteView magic = r.raw(sizeof snapshot_magic);
  if (std::memcmp(magic.data(), snapshot_magic, sizeof snapshot_magic) != 0) {
    return errc::malformed;
  }
  const std::uint32_t version = r.u32();
  if (version != snapshot_version_single_pool && version != snapshot_version) {
    return errc::unsupported_version;
  }

  StateMachine s(options_);
  const bool single = version == snapshot_version_single_pool;
  if (const std::error_code ec = single ? restore_single_pool(r, s) : restore_pools(r, s)) {
    return ec;
  }

  const std::uint32_t key_count = r.u32();
  for (std::uint32_t i = 0; i < key_count && r.ok(); ++i) {
    const std::string pool_id = single ? std::string(default_pool_id) : r.str8();
    const std::string key = r.str8();
    KeyRecord record;
    const ByteView hash = r.raw(record.body_hash.size());
    record.timestamp_ms = r.u64();
    const ByteView result = r.bytes32();
    if (!r.ok() || !valid_pool_id(pool_id) || !valid_idempotency_key(key)) return errc::malformed;
    // Time never runs backwards: a key cannot be newer than the clock or than a later key.
    if (record.timestamp_ms > s.clock_ms_) return errc::malformed;
    if (!s.keys_.log.empty() && record.timestamp_ms < s.keys_.log.back().timestamp_ms) {
      return errc::malformed;
    }
    std::copy(hash.begin(), hash.end(), record.body_hash.begin());
    record.result.assign(result.begin(), result.end());
    Result decoded;
    if (decode_result(record.result, decoded)) return errc::malformed;
    record.scoped = scoped_key(pool_id, key);
    if (s.keys_.index.contains(record.scoped)) return errc::malformed;
    s.key_bytes_ += record.scoped.size() + record.result.size() + key_overhead_bytes;
    const KeyRecord& stored = s.keys_.log.push_back(std::move(record));
    s.keys_.index.emplace(stored.scoped, &stored);
  }
  if (!r.at_end()) return errc::malformed;

  *this = std::move(s);
  check_invariants();
  return {};
}

std::error_code StateMachine::restore_single_pool(ByteReader& r, StateMachine& s) const {
  s.applied_index_ = r.u64();
  const std::uint64_t last_request_id = r.u64();
  s.clock_ms_ = r.u64();
  const std::uint8_t bootstrapped = r.u8();
  if (!r.ok() || bootstrapped > 1) return errc::malformed;
  s.bootstrapped_ = bootstrapped == 1;
  std::vector<Item> items;
  if (!read_items(r, items)) return errc::malformed;
  Pool& def = *s.find_pool(default_pool_id);
  def.last_request_id_ = last_request_id;
  s.item_count_total_ = items.size();
  def.assign(std::move(items));
  return {};
}

std::error_code StateMachine::restore_pools(ByteReader& r, StateMachine& s) const {
  s.applied_index_ = r.u64();
  s.clock_ms_ = r.u64();
  const std::uint8_t bootstrapped = r.u8();
  if (!r.ok() || bootstrapped > 1) return errc::malformed;
  s.bootstrapped_ = bootstrapped == 1;

  const std::uint32_t pool_count = r.u32();
  if (!r.ok() || pool_count == 0 || pool_count > pools_max ||
      pool_count > r.remaining() / pool_bytes_min) {
    return errc::malformed;
  }
  s.pools_.clear();
  s.pools_.reserve(pool_count);
  std::string previous_id;  // pool ids are written in order: each after the one before
  for (std::uint32_t i = 0; i < pool_count; ++i) {
    std::string pool_id = r.str8();
    Pool p;
    p.last_request_id_ = r.u64();
    std::vector<Item> items;
    if (!r.ok() || !valid_pool_id(pool_id) || !read_items(r, items)) return errc::malformed;
    if (i > 0 && !(previous_id < pool_id)) return errc::malformed;
    previous_id = pool_id;
    s.item_count_total_ += items.size();
    if (s.item_count_total_ > items_total_max) return errc::malformed;
    p.assign(std::move(items));
    s.pools_.emplace(std::move(pool_id), std::move(p));
  }
  if (!s.pools_.contains(default_pool_id)) return errc::malformed;

  const std::uint32_t tombstone_count = r.u32();
  if (!r.ok() || tombstone_count > tombstones_max + pools_max ||
      tombstone_count > r.remaining() / tombstone_bytes_min) {
    return errc::malformed;
  }
  for (std::uint32_t i = 0; i < tombstone_count; ++i) {
    std::string pool_id = r.str8();
    const std::uint64_t last_request_id = r.u64();
    if (!r.ok() || !valid_pool_id(pool_id) || pool_id == default_pool_id) return errc::malformed;
    if (last_request_id == 0 || s.pools_.contains(pool_id)) return errc::malformed;
    if (!s.tombstones_.empty() && !(s.tombstones_.rbegin()->first < pool_id))
      return errc::malformed;
    s.tombstones_.emplace_hint(s.tombstones_.end(), std::move(pool_id), last_request_id);
  }
  return {};
}

void encode_result(const Result& result, Bytes& out) {
  // u8 version, u8 error (pool errc), u8 flags (1: item present, 2: bootstrapped),
  // u64 index, u32 draw count, [u64 first request_id, then per draw u8 id length (0: pool_empty) +
  // id], [item].
  ByteWriter w(out);
  w.u8(result_version);
  RPOOL_ASSERT(!result.error || result.error.category() == pool_category());
  w.u8(static_cast<std::uint8_t>(result.error.value()));
  w.u8(static_cast<std::uint8_t>((result.item ? 1 : 0) | (result.bootstrapped ? 2 : 0)));
  w.u64(result.index);
  w.u32(static_cast<std::uint32_t>(result.draws.size()));
  if (!result.draws.empty()) {
    w.u64(result.draws.front().request_id);
    for (std::size_t i = 0; i < result.draws.size(); ++i) {
      const DrawOutcome& d = result.draws[i];
      RPOOL_ASSERT_OP(d.request_id, ==, result.draws.front().request_id + i);
      w.str8(d.item_id ? std::string_view(*d.item_id) : std::string_view());
    }
  }
  if (result.item) put_item(w, *result.item);
}

std::error_code decode_result(ByteView bytes, Result& out) {
  ByteReader r(bytes);
  if (r.u8() != result_version) return errc::malformed;
  const std::uint8_t error = r.u8();
  const std::uint8_t flags = r.u8();
  const std::uint64_t index = r.u64();
  const std::uint32_t count = r.u32();
  if (!r.ok() || error > static_cast<std::uint8_t>(errc_last) || flags > 3 ||
      count > draw_count_max) {
    return errc::malformed;
  }
  Result result;
  if (error != 0) result.error = static_cast<errc>(error);
  result.bootstrapped = (flags & 2) != 0;
  result.index = index;
  if (count > 0) {
    const std::uint64_t first = r.u64();
    result.draws.reserve(count);
    for (std::uint32_t i = 0; i < count && r.ok(); ++i) {
      std::string id = r.str8();
      DrawOutcome d{first + i, std::nullopt};
      if (!id.empty()) d.item_id = std::move(id);
      result.draws.push_back(std::move(d));
    }
  }
  if (flags & 1) {
    Item item;
    item.item_id = r.str8();
    item.quantity = r.i64();
    item.probability = r.u64();
    result.item = std::move(item);
  }
  if (!r.at_end()) return errc::malformed;
  out = std::move(result);
  return {};
}

}  // namespace rpool::pool
