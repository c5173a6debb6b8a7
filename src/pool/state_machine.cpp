#include "pool/state_machine.h"

#include <algorithm>
#include <cstring>
#include <iterator>

#include <openssl/sha.h>

#include "base/assert.h"
#include "pool/random.h"

namespace rpool::pool {
namespace {

// Snapshot layout (little-endian), checked on restore before anything is replaced:
//
//   8   magic "RPOOLSNP"
//   u32 version = 1
//   u64 applied_index, u64 last_request_id, u64 clock_ms, u8 bootstrapped
//   u32 item count, items in item_id order (u8 id length, id, i64 quantity, u64 probability)
//   u32 key count, keys oldest first (u8 key length, key, 32 body hash, u64 timestamp_ms,
//                                     u32 result length, result)
//   32  SHA-256 of every byte before it
constexpr char snapshot_magic[8] = {'R', 'P', 'O', 'O', 'L', 'S', 'N', 'P'};
constexpr std::uint32_t snapshot_version = 1;
constexpr std::uint8_t result_version = 1;
// Bookkeeping charged per remembered key on top of its bytes, so that many tiny keys are bounded too.
constexpr std::size_t key_overhead_bytes = 96;

Sha256 sha256(ByteView bytes) {
  Sha256 out;
  SHA256(bytes.data(), bytes.size(), out.data());
  return out;
}

void put_item(ByteWriter& w, const Item& item) {
  w.str8(item.item_id);
  w.i64(item.quantity);
  w.u64(item.probability);
}

bool item_less(const Item& a, const Item& b) { return a.item_id < b.item_id; }

std::vector<Item>::const_iterator lower_bound_id(const std::vector<Item>& items,
                                                 std::string_view id) {
  return std::lower_bound(items.begin(), items.end(), id,
                          [](const Item& item, std::string_view key) { return item.item_id < key; });
}

}  // namespace

StateMachine::StateMachine(Options options) : options_(options) {}

std::uint64_t StateMachine::weight_of(const Item& item) {
  return item.quantity != 0 ? item.probability : 0;
}

const Item* StateMachine::find(std::string_view item_id) const {
  const auto it = lower_bound_id(items_, item_id);
  return it != items_.end() && it->item_id == item_id ? &*it : nullptr;
}

void StateMachine::rebuild_selector() {
  std::vector<std::uint64_t> weights;
  weights.reserve(items_.size());
  for (const Item& item : items_) weights.push_back(weight_of(item));
  selector_.assign(weights);
}

Result StateMachine::apply(std::uint64_t index, const Command& command) {
  RPOOL_ASSERT_OP(index, >, applied_index_);
  applied_index_ = index;
  clock_ms_ = std::max(clock_ms_, command.timestamp_ms);
  digest_valid_ = false;

  const bool keyed = !command.idempotency_key.empty();
  if (keyed) {
    const auto found = key_table_.find(command.idempotency_key);
    if (found != key_table_.end()) {
      Result result;
      if (found->second.body_hash != command.body_hash) {
        result.error = errc::idempotency_key_reused;
        result.index = index;
        return result;
      }
      const std::error_code ec = decode_result(found->second.result, result);
      RPOOL_ASSERT(!ec);  // we encoded it ourselves
      result.replayed = true;
      return result;
    }
  }
  Result result = std::visit([this](const auto& op) { return apply_op(op); }, command.op);
  result.index = index;
  if (keyed) remember(command, result);
  evict_keys();
  return result;
}

Result StateMachine::apply_op(const Draw& draw) {
  RPOOL_ASSERT(draw.count >= 1);
  RPOOL_ASSERT_OP(draw.count, <=, draw_count_max);
  Result result;
  result.draws.reserve(draw.count);
  // Draw k takes r = bounded(rng, total) from the one stream and the weights left by draw k-1.
  // Weights change only when an item runs out, so draw k+1 is selected ahead, before draw k is
  // recorded, and its item prefetched: on a large catalog that hides a cache miss per draw. When
  // draw k empties an item, the look-ahead is discarded and redone from the saved stream state,
  // so the outcome is exactly that of selecting one draw after the other.
  constexpr std::size_t none = ~std::size_t{0};
  SplitMix64 rng(draw.seed);
  std::uint64_t total = selector_.total();
  std::size_t slot = total != 0 ? selector_.find(bounded(rng, total)) : none;
  for (std::uint32_t i = 0; i < draw.count; ++i) {
    const std::uint64_t request_id = ++last_request_id_;
    if (slot == none) {
      RPOOL_ASSERT_OP(selector_.total(), ==, 0u);
      result.draws.push_back(DrawOutcome{request_id, std::nullopt});
      continue;
    }
    const bool more = i + 1 < draw.count;
    const SplitMix64 before_next = rng;
    std::size_t next = more ? selector_.find(bounded(rng, total)) : none;
    if (next != none) __builtin_prefetch(&items_[next]);

    Item& item = items_[slot];
    RPOOL_ASSERT(item.quantity != 0);
    result.draws.push_back(DrawOutcome{request_id, item.item_id});
    if (item.quantity > 0 && --item.quantity == 0) {
      selector_.set(slot, 0);
      total = selector_.total();
      rng = before_next;
      next = more && total != 0 ? selector_.find(bounded(rng, total)) : none;
    }
    slot = next;
  }
  return result;
}

Result StateMachine::apply_op(const UpsertItem& upsert) {
  Result result;
  if (const std::error_code ec = validate_item(upsert.item)) {
    result.error = ec;
    return result;
  }
  auto it = items_.begin() + (lower_bound_id(items_, upsert.item.item_id) - items_.cbegin());
  if (it != items_.end() && it->item_id == upsert.item.item_id) {
    *it = upsert.item;
    selector_.set(static_cast<std::size_t>(it - items_.begin()), weight_of(*it));
  } else {
    if (items_.size() >= items_max) {
      result.error = errc::too_many_items;
      return result;
    }
    items_.insert(it, upsert.item);
    rebuild_selector();
  }
  result.item = upsert.item;
  return result;
}

Result StateMachine::apply_op(const DeleteItem& del) {
  Result result;
  const auto it = lower_bound_id(items_, del.item_id);
  if (it == items_.end() || it->item_id != del.item_id) {
    result.error = errc::not_found;
    return result;
  }
  items_.erase(it);
  rebuild_selector();
  return result;
}

Result StateMachine::apply_op(const Bootstrap& bootstrap) {
  Result result;
  if (bootstrapped_) return result;  // the catalog seeds the pool once; later ones are no-ops
  std::vector<Item> items = bootstrap.items;
  std::sort(items.begin(), items.end(), item_less);
  for (std::size_t i = 0; i < items.size(); ++i) {
    const bool duplicate = i > 0 && items[i].item_id == items[i - 1].item_id;
    if (validate_item(items[i]) || duplicate) {
      result.error = errc::bad_item;
      return result;
    }
  }
  if (items.size() > items_max) {
    result.error = errc::too_many_items;
    return result;
  }
  items_ = std::move(items);
  rebuild_selector();
  bootstrapped_ = true;
  result.bootstrapped = true;
  return result;
}

void StateMachine::remember(const Command& command, const Result& result) {
  KeyEntry entry{command.body_hash, clock_ms_, {}};
  encode_result(result, entry.result);
  key_bytes_ += command.idempotency_key.size() + entry.result.size() + key_overhead_bytes;
  const auto [it, inserted] = key_table_.emplace(command.idempotency_key, std::move(entry));
  RPOOL_ASSERT(inserted);
  keys_.push_back(it->first);
}

void StateMachine::evict_keys() {
  while (!keys_.empty()) {
    const auto it = key_table_.find(keys_.front());
    RPOOL_ASSERT(it != key_table_.end());
    const bool expired = it->second.timestamp_ms + options_.idempotency_retention_ms <= clock_ms_;
    const bool over_count = keys_.size() > options_.idempotency_keys_min;
    const bool over_bytes = key_bytes_ > options_.idempotency_bytes_max;
    if (!over_bytes && !(expired && over_count)) return;
    key_bytes_ -= it->first.size() + it->second.result.size() + key_overhead_bytes;
    key_table_.erase(it);
    keys_.pop_front();
  }
}

Bytes StateMachine::snapshot() const {
  // Written into one allocation of an upper bound of its size (key_bytes_ charges each key more
  // than its fixed fields). Starting from the magic with a capacity known only at run time also
  // keeps GCC 12 at -O3 from misreading the growth of an empty vector as an overflow
  // (-Wstringop-overflow).
  static_assert(key_overhead_bytes >= 1 + sizeof(Sha256) + 8 + 4);
  std::size_t bytes_max =
      sizeof snapshot_magic + 4 + 3 * 8 + 1 + 4 + 4 + sizeof(Sha256) + key_bytes_;
  for (const Item& item : items_) bytes_max += 1 + item.item_id.size() + 8 + 8;
  Bytes out(std::begin(snapshot_magic), std::end(snapshot_magic));
  out.reserve(bytes_max);
  ByteWriter w(out);
  w.u32(snapshot_version);
  w.u64(applied_index_);
  w.u64(last_request_id_);
  w.u64(clock_ms_);
  w.u8(bootstrapped_ ? 1 : 0);
  w.u32(static_cast<std::uint32_t>(items_.size()));
  for (const Item& item : items_) put_item(w, item);
  w.u32(static_cast<std::uint32_t>(keys_.size()));
  for (const std::string& key : keys_) {
    const KeyEntry& entry = key_table_.at(key);
    w.str8(key);
    w.raw(entry.body_hash);
    w.u64(entry.timestamp_ms);
    w.bytes32(entry.result);
  }
  const Sha256 sum = sha256(out);
  w.raw(sum);
  RPOOL_ASSERT_OP(out.size(), <=, bytes_max);
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
  if (r.u32() != snapshot_version) return errc::unsupported_version;

  StateMachine s(options_);
  s.applied_index_ = r.u64();
  s.last_request_id_ = r.u64();
  s.clock_ms_ = r.u64();
  const std::uint8_t bootstrapped = r.u8();
  if (bootstrapped > 1) return errc::malformed;
  s.bootstrapped_ = bootstrapped == 1;

  const std::uint32_t item_count = r.u32();
  if (item_count > items_max || item_count > r.remaining() / 17) return errc::malformed;
  s.items_.reserve(item_count);
  for (std::uint32_t i = 0; i < item_count && r.ok(); ++i) {
    Item item;
    item.item_id = r.str8();
    item.quantity = r.i64();
    item.probability = r.u64();
    if (!r.ok() || validate_item(item)) return errc::malformed;
    if (!s.items_.empty() && !(s.items_.back().item_id < item.item_id)) return errc::malformed;
    s.items_.push_back(std::move(item));
  }

  const std::uint32_t key_count = r.u32();
  for (std::uint32_t i = 0; i < key_count && r.ok(); ++i) {
    std::string key = r.str8();
    KeyEntry entry;
    const ByteView hash = r.raw(entry.body_hash.size());
    entry.timestamp_ms = r.u64();
    const ByteView result = r.bytes32();
    if (!r.ok() || !valid_idempotency_key(key)) return errc::malformed;
    std::copy(hash.begin(), hash.end(), entry.body_hash.begin());
    entry.result.assign(result.begin(), result.end());
    Result decoded;
    if (decode_result(entry.result, decoded)) return errc::malformed;
    s.key_bytes_ += key.size() + entry.result.size() + key_overhead_bytes;
    const auto [it, inserted] = s.key_table_.emplace(std::move(key), std::move(entry));
    if (!inserted) return errc::malformed;
    s.keys_.push_back(it->first);
  }
  if (!r.at_end()) return errc::malformed;

  s.rebuild_selector();
  *this = std::move(s);
  check_invariants();
  return {};
}

Sha256 StateMachine::digest() const {
  if (digest_valid_) return digest_;
  Bytes canonical;
  ByteWriter w(canonical);
  w.u32(static_cast<std::uint32_t>(items_.size()));
  for (const Item& item : items_) put_item(w, item);
  w.u64(last_request_id_);
  digest_ = sha256(canonical);
  digest_valid_ = true;
  return digest_;
}

std::string StateMachine::digest_hex() const {
  static constexpr char hex[] = "0123456789abcdef";
  const Sha256 d = digest();
  std::string out;
  out.reserve(d.size() * 2);
  for (const std::uint8_t b : d) {
    out.push_back(hex[b >> 4]);
    out.push_back(hex[b & 15]);
  }
  return out;
}

void StateMachine::check_invariants() const {
  RPOOL_ASSERT_OP(selector_.size(), ==, items_.size());
  RPOOL_ASSERT_OP(items_.size(), <=, items_max);
  for (std::size_t i = 0; i < items_.size(); ++i) {
    RPOOL_ASSERT(!validate_item(items_[i]));
    if (i > 0) RPOOL_ASSERT(items_[i - 1].item_id < items_[i].item_id);
    RPOOL_ASSERT_OP(selector_.weight(i), ==, weight_of(items_[i]));
  }
  selector_.check_invariants();
  RPOOL_ASSERT_OP(keys_.size(), ==, key_table_.size());
  std::size_t bytes = 0;
  std::uint64_t previous_ts = 0;
  for (const std::string& key : keys_) {
    const auto it = key_table_.find(key);
    RPOOL_ASSERT(it != key_table_.end());
    RPOOL_ASSERT_OP(it->second.timestamp_ms, >=, previous_ts);  // oldest first
    RPOOL_ASSERT_OP(it->second.timestamp_ms, <=, clock_ms_);
    previous_ts = it->second.timestamp_ms;
    bytes += key.size() + it->second.result.size() + key_overhead_bytes;
  }
  RPOOL_ASSERT_OP(bytes, ==, key_bytes_);
}

void encode_result(const Result& result, Bytes& out) {
  // u8 version, u8 error (pool errc), u8 flags (1: item present, 2: bootstrapped),
  // u64 index, u32 draw count, [u64 first request_id, then per draw u8 id length (0: pool_empty) + id],
  // [item].
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
  if (!r.ok() || error > static_cast<std::uint8_t>(errc::idempotency_key_reused) || flags > 3 ||
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
