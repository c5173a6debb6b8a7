#include "pool/state_machine.h"

#include <algorithm>
#include <cstring>
#include <iterator>

#include <openssl/sha.h>

#include "base/assert.h"
#include "pool/detail.h"
#include "pool/random.h"

namespace rpool::pool {
namespace detail {

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
  return std::lower_bound(
      items.begin(), items.end(), id,
      [](const Item& item, std::string_view key) { return item.item_id < key; });
}

std::string scoped_key(std::string_view pool_id, std::string_view key) {
  if (pool_id == default_pool_id) return std::string(key);
  std::string scoped;
  scoped.reserve(pool_id.size() + 1 + key.size());
  scoped.append(pool_id).push_back(key_scope_separator);
  scoped.append(key);
  return scoped;
}

// The inverse of scoped_key(): {pool_id, key}.
std::pair<std::string_view, std::string_view> split_scoped_key(std::string_view scoped) {
  const std::size_t at = scoped.find(key_scope_separator);
  if (at == std::string_view::npos) return {default_pool_id, scoped};
  return {scoped.substr(0, at), scoped.substr(at + 1)};
}

// Sorts a catalog by item_id and checks it: bad_item for an invalid or repeated item,
// too_many_items beyond items_max.
std::error_code prepare_items(std::vector<Item>& items) {
  std::sort(items.begin(), items.end(), item_less);
  for (std::size_t i = 0; i < items.size(); ++i) {
    const bool duplicate = i > 0 && items[i].item_id == items[i - 1].item_id;
    if (validate_item(items[i]) || duplicate) return errc::bad_item;
  }
  if (items.size() > items_max) return errc::too_many_items;
  return {};
}

// Reads a u32 count and that many items, each valid and after the one before in item_id order.
bool read_items(ByteReader& r, std::vector<Item>& items) {
  const std::uint32_t item_count = r.u32();
  if (!r.ok() || item_count > items_max || item_count > r.remaining() / item_bytes_min)
    return false;
  items.reserve(item_count);
  for (std::uint32_t i = 0; i < item_count; ++i) {
    Item item;
    item.item_id = r.str8();
    item.quantity = r.i64();
    item.probability = r.u64();
    if (!r.ok() || validate_item(item)) return false;
    if (!items.empty() && !(items.back().item_id < item.item_id)) return false;
    items.push_back(std::move(item));
  }
  return true;
}

}  // namespace detail

using namespace detail;

std::string to_hex(const Sha256& digest) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(digest.size() * 2);
  for (const std::uint8_t b : digest) {
    out.push_back(hex[b >> 4]);
    out.push_back(hex[b & 15]);
  }
  return out;
}

// ---- Pool ----

std::uint64_t Pool::weight_of(const Item& item) {
  return item.quantity != 0 ? item.probability : 0;
}

const Item* Pool::find(std::string_view item_id) const {
  const auto it = lower_bound_id(items_, item_id);
  return it != items_.end() && it->item_id == item_id ? &*it : nullptr;
}

void Pool::assign(std::vector<Item> items) {
  items_ = std::move(items);
  rebuild_selector();
  changed();
}

void Pool::rebuild_selector() {
  std::vector<std::uint64_t> weights;
  weights.reserve(items_.size());
  for (const Item& item : items_) weights.push_back(weight_of(item));
  selector_.assign(weights);
}

Result StateMachine::apply(std::uint64_t index, const Command& command) {
  RPOOL_ASSERT_OP(index, >, applied_index_);
  applied_index_ = index;
  clock_ms_ = std::max(clock_ms_, command.timestamp_ms);

  // decode() checks only a pool_id's length. A command on a pool_id outside the rules acts on no
  // pool and must not be remembered under it either: the key table (and so every snapshot)
  // holds valid pool ids only, or restore() would refuse the snapshot.
  if (!valid_pool_id(command.pool_id)) {
    Result refused;
    refused.error = errc::bad_pool_id;
    refused.index = index;
    return refused;
  }
  const bool keyed = !command.idempotency_key.empty();
  std::string scoped;
  if (keyed) {
    scoped = scoped_key(command.pool_id, command.idempotency_key);
    const auto found = keys_.index.find(scoped);
    if (found != keys_.index.end()) {
      Result result;
      if (found->second->body_hash != command.body_hash) {
        result.error = errc::idempotency_key_reused;
        result.index = index;
        return result;
      }
      const std::error_code ec = decode_result(found->second->result, result);
      RPOOL_ASSERT(!ec);  // we encoded it ourselves
      result.replayed = true;
      return result;
    }
  }
  Result result =
      std::visit([&](const auto& op) { return apply_op(command.pool_id, op); }, command.op);
  result.index = index;
  if (keyed) remember(std::move(scoped), command, result);
  evict_keys();
  return result;
}

std::vector<DrawOutcome> Pool::draw(const Draw& draw) {
  RPOOL_ASSERT(draw.count >= 1);
  RPOOL_ASSERT_OP(draw.count, <=, draw_count_max);
  changed();  // every draw takes a request_id
  std::vector<DrawOutcome> draws;
  draws.reserve(draw.count);
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
      draws.push_back(DrawOutcome{request_id, std::nullopt});
      continue;
    }
    const bool more = i + 1 < draw.count;
    const SplitMix64 before_next = rng;
    std::size_t next = more ? selector_.find(bounded(rng, total)) : none;
    if (next != none) __builtin_prefetch(&items_[next]);

    Item& item = items_[slot];
    RPOOL_ASSERT(item.quantity != 0);
    draws.push_back(DrawOutcome{request_id, item.item_id});
    if (item.quantity > 0 && --item.quantity == 0) {
      selector_.set(slot, 0);
      total = selector_.total();
      rng = before_next;
      next = more && total != 0 ? selector_.find(bounded(rng, total)) : none;
    }
    slot = next;
  }
  return draws;
}

void Pool::upsert(const Item& item) {
  changed();
  auto it = items_.begin() + (lower_bound_id(items_, item.item_id) - items_.cbegin());
  if (it != items_.end() && it->item_id == item.item_id) {
    *it = item;
    selector_.set(static_cast<std::size_t>(it - items_.begin()), weight_of(*it));
    return;
  }
  RPOOL_ASSERT_OP(items_.size(), <, items_max);
  items_.insert(it, item);
  rebuild_selector();
}

bool Pool::erase(std::string_view item_id) {
  const auto it = lower_bound_id(items_, item_id);
  if (it == items_.end() || it->item_id != item_id) return false;
  changed();
  items_.erase(it);
  rebuild_selector();
  return true;
}

Sha256 Pool::digest() const {
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

std::string Pool::digest_hex() const { return to_hex(digest()); }

void Pool::check_invariants() const {
  RPOOL_ASSERT_OP(selector_.size(), ==, items_.size());
  RPOOL_ASSERT_OP(items_.size(), <=, items_max);
  for (std::size_t i = 0; i < items_.size(); ++i) {
    RPOOL_ASSERT(!validate_item(items_[i]));
    if (i > 0) RPOOL_ASSERT(items_[i - 1].item_id < items_[i].item_id);
    RPOOL_ASSERT_OP(selector_.weight(i), ==, weight_of(items_[i]));
  }
  selector_.check_invariants();
}

// ---- StateMachine ----

StateMachine::StateMachine(Options options) : options_(options), keys_(options.key_block_records) {
  pools_.emplace(std::string(default_pool_id), Pool{});
}

const Pool* StateMachine::pool(std::string_view pool_id) const {
  const auto it = pools_.find(pool_id);
  return it != pools_.end() ? &it->second : nullptr;
}

Pool* StateMachine::find_pool(std::string_view pool_id) {
  const auto it = pools_.find(pool_id);
  return it != pools_.end() ? &it->second : nullptr;
}

const Pool& StateMachine::default_pool() const {
  const Pool* p = pool(default_pool_id);
  RPOOL_ASSERT(p != nullptr);
  return *p;
}

std::vector<const StateMachine::PoolMap::value_type*> StateMachine::sorted_pools() const {
  std::vector<const PoolMap::value_type*> sorted;
  sorted.reserve(pools_.size());
  for (const auto& entry : pools_) sorted.push_back(&entry);
  std::sort(sorted.begin(), sorted.end(),
            [](const auto* a, const auto* b) { return a->first < b->first; });
  return sorted;
}

std::vector<PoolSummary> StateMachine::pools() const {
  std::vector<PoolSummary> out;
  out.reserve(pools_.size());
  for (const auto* entry : sorted_pools()) {
    const Pool& p = entry->second;
    out.push_back(PoolSummary{entry->first, p.items().size(), p.last_request_id(), p.digest()});
  }
  return out;
}

std::optional<std::uint64_t> StateMachine::tombstone(std::string_view pool_id) const {
  const auto it = tombstones_.find(pool_id);
  if (it == tombstones_.end()) return std::nullopt;
  return it->second;
}

Result StateMachine::apply_op(const std::string& pool_id, const Draw& draw) {
  Result result;
  Pool* p = find_pool(pool_id);
  if (p == nullptr) {
    result.error = errc::pool_not_found;
    return result;
  }
  result.draws = p->draw(draw);
  return result;
}

Result StateMachine::apply_op(const std::string& pool_id, const UpsertItem& upsert) {
  Result result;
  Pool* p = find_pool(pool_id);
  if (p == nullptr) {
    result.error = errc::pool_not_found;
    return result;
  }
  if (const std::error_code ec = validate_item(upsert.item)) {
    result.error = ec;
    return result;
  }
  if (p->find(upsert.item.item_id) == nullptr) {
    if (p->items().size() >= items_max) {
      result.error = errc::too_many_items;
      return result;
    }
    if (item_count_total_ >= items_total_max) {
      result.error = errc::too_many_items_total;
      return result;
    }
    ++item_count_total_;
  }
  p->upsert(upsert.item);
  result.item = upsert.item;
  return result;
}

Result StateMachine::apply_op(const std::string& pool_id, const DeleteItem& del) {
  Result result;
  Pool* p = find_pool(pool_id);
  if (p == nullptr) {
    result.error = errc::pool_not_found;
    return result;
  }
  if (!p->erase(del.item_id)) {
    result.error = errc::not_found;
    return result;
  }
  RPOOL_ASSERT_OP(item_count_total_, >, 0u);
  --item_count_total_;
  return result;
}

void StateMachine::add_pool(const std::string& pool_id, std::vector<Item> items) {
  RPOOL_ASSERT(valid_pool_id(pool_id));
  RPOOL_ASSERT_OP(pools_.size(), <, pools_max);
  RPOOL_ASSERT_OP(item_count_total_ + items.size(), <=, items_total_max);
  Pool p;
  if (const auto stone = tombstones_.find(pool_id); stone != tombstones_.end()) {
    p.last_request_id_ = stone->second;  // continue the sequence: no request_id is reused
    tombstones_.erase(stone);
  }
  item_count_total_ += items.size();
  p.assign(std::move(items));
  const bool inserted = pools_.emplace(pool_id, std::move(p)).second;
  RPOOL_ASSERT(inserted);
}

Result StateMachine::apply_op(const std::string& pool_id, const Bootstrap& bootstrap) {
  RPOOL_ASSERT(pool_id == default_pool_id);
  Result result;
  if (bootstrapped_) return result;  // the catalog seeds the pool once; later ones are no-ops
  std::vector<Item> items = bootstrap.items;
  if (const std::error_code ec = prepare_items(items)) {
    result.error = ec;
    return result;
  }
  // Check every pool before changing anything: a bootstrap applies whole or not at all.
  std::vector<std::pair<const std::string*, std::vector<Item>>> more;
  std::size_t total = item_count_total_ - default_pool().items().size() + items.size();
  std::size_t new_ids = 0;
  for (const auto& [id, pool_items] : bootstrap.pools) {
    if (!valid_pool_id(id) || id == default_pool_id) {
      result.error = errc::bad_pool_id;
      return result;
    }
    std::vector<Item> sorted = pool_items;
    if (const std::error_code ec = prepare_items(sorted)) {
      result.error = ec;
      return result;
    }
    if (pools_.contains(id)) continue;  // created through the API before the bootstrap applied
    total += sorted.size();
    if (!tombstones_.contains(id)) ++new_ids;
    more.emplace_back(&id, std::move(sorted));
  }
  if (pools_.size() + more.size() > pools_max) {
    result.error = errc::too_many_pools;
    return result;
  }
  if (total > items_total_max) {
    result.error = errc::too_many_items_total;
    return result;
  }
  if (new_ids > 0 && tombstones_.size() >= options_.tombstones_max) {
    result.error = errc::pool_ids_exhausted;
    return result;
  }
  Pool& def = *find_pool(default_pool_id);
  item_count_total_ = item_count_total_ - def.items().size() + items.size();
  def.assign(std::move(items));
  for (auto& [id, pool_items] : more) add_pool(*id, std::move(pool_items));
  bootstrapped_ = true;
  result.bootstrapped = true;
  return result;
}

Result StateMachine::apply_op(const std::string& pool_id, const CreatePool& create) {
  Result result;
  if (!valid_pool_id(pool_id)) {
    result.error = errc::bad_pool_id;
    return result;
  }
  if (pools_.contains(pool_id)) {
    result.error = errc::pool_exists;
    return result;
  }
  std::vector<Item> items = create.items;
  if (const std::error_code ec = prepare_items(items)) {
    result.error = ec;
    return result;
  }
  if (pools_.size() >= pools_max) {
    result.error = errc::too_many_pools;
    return result;
  }
  if (item_count_total_ + items.size() > items_total_max) {
    result.error = errc::too_many_items_total;
    return result;
  }
  if (!tombstones_.contains(pool_id) && tombstones_.size() >= options_.tombstones_max) {
    result.error = errc::pool_ids_exhausted;
    return result;
  }
  add_pool(pool_id, std::move(items));
  return result;
}

Result StateMachine::apply_op(const std::string& pool_id, const DeletePool&) {
  Result result;
  if (pool_id == default_pool_id) {
    result.error = errc::pool_undeletable;
    return result;
  }
  const auto it = pools_.find(pool_id);
  if (it == pools_.end()) {
    result.error = errc::not_found;
    return result;
  }
  RPOOL_ASSERT_OP(item_count_total_, >=, it->second.items().size());
  item_count_total_ -= it->second.items().size();
  if (it->second.last_request_id() > 0) tombstones_.emplace(pool_id, it->second.last_request_id());
  pools_.erase(it);
  return result;
}

StateMachine::KeyTable::KeyTable(const KeyTable& other) : log(other.log) {
  log.for_each([this](const KeyRecord& r) { index.emplace(r.scoped, &r); });
}

StateMachine::KeyTable& StateMachine::KeyTable::operator=(const KeyTable& other) {
  if (this != &other) *this = KeyTable(other);
  return *this;
}

void StateMachine::remember(std::string scoped_key, const Command& command, const Result& result) {
  KeyRecord record{std::move(scoped_key), command.body_hash, clock_ms_, {}};
  encode_result(result, record.result);
  key_bytes_ += record.scoped.size() + record.result.size() + key_overhead_bytes;
  const KeyRecord& r = keys_.log.push_back(std::move(record));
  const bool inserted = keys_.index.emplace(r.scoped, &r).second;
  RPOOL_ASSERT(inserted);
}

void StateMachine::evict_keys() {
  while (!keys_.log.empty()) {
    const KeyRecord& r = keys_.log.front();
    const bool expired = r.timestamp_ms + options_.idempotency_retention_ms <= clock_ms_;
    const bool over_count = keys_.log.size() > options_.idempotency_keys_min;
    const bool over_bytes = key_bytes_ > options_.idempotency_bytes_max;
    if (!over_bytes && !(expired && over_count)) return;
    key_bytes_ -= r.scoped.size() + r.result.size() + key_overhead_bytes;
    const auto it = keys_.index.find(r.scoped);
    RPOOL_ASSERT(it != keys_.index.end() && it->second == &r);
    keys_.index.erase(it);
    keys_.log.pop_front();
  }
}

void StateMachine::check_invariants() const {
  RPOOL_ASSERT_OP(pools_.size(), >=, 1u);
  RPOOL_ASSERT_OP(pools_.size(), <=, pools_max);
  RPOOL_ASSERT(pools_.contains(default_pool_id));
  std::size_t items = 0;
  for (const auto& [pool_id, p] : pools_) {
    RPOOL_ASSERT(valid_pool_id(pool_id));
    RPOOL_ASSERT(!tombstones_.contains(pool_id));
    p.check_invariants();
    items += p.items().size();
  }
  RPOOL_ASSERT_OP(items, ==, item_count_total_);
  RPOOL_ASSERT_OP(item_count_total_, <=, items_total_max);
  RPOOL_ASSERT_OP(tombstones_.size(), <=,
                  std::max(tombstones_max, options_.tombstones_max) + pools_max);
  for (const auto& [pool_id, last_request_id] : tombstones_) {
    RPOOL_ASSERT(valid_pool_id(pool_id));
    RPOOL_ASSERT(pool_id != default_pool_id);
    RPOOL_ASSERT_OP(last_request_id, >, 0u);
  }

  RPOOL_ASSERT_OP(keys_.log.size(), ==, keys_.index.size());
  std::size_t bytes = 0;
  std::uint64_t previous_ts = 0;
  keys_.log.for_each([&](const KeyRecord& r) {
    const auto it = keys_.index.find(r.scoped);
    RPOOL_ASSERT(it != keys_.index.end() && it->second == &r);
    const auto [pool_id, key] = split_scoped_key(r.scoped);
    RPOOL_ASSERT(valid_pool_id(pool_id));
    RPOOL_ASSERT(valid_idempotency_key(key));
    RPOOL_ASSERT_OP(r.timestamp_ms, >=, previous_ts);  // oldest first
    RPOOL_ASSERT_OP(r.timestamp_ms, <=, clock_ms_);
    previous_ts = r.timestamp_ms;
    bytes += r.scoped.size() + r.result.size() + key_overhead_bytes;
  });
  RPOOL_ASSERT_OP(bytes, ==, key_bytes_);
}

}  // namespace rpool::pool
