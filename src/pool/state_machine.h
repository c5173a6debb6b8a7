// The reward pool: the deterministic state machine that Raft replicates.
//
// Every replica applies the same commands in the same log order and reaches the same state,
// byte for byte. Nothing here reads a clock, a random source or an address: time comes from the
// leader's timestamp in each command, randomness from the seed in each draw.
//
// Selection. Drawable items (quantity != 0 and probability > 0) are ordered by item_id (bytewise).
// A draw takes r = bounded(rng, total weight) and picks the item whose cumulative-weight range in
// that order contains r. A Fenwick tree over the weights makes a draw and an update O(log n);
// adding or removing an item rebuilds it in O(n). The order is canonical, so a replica restored
// from a snapshot selects exactly as one that applied every entry.
//
// Request ids. Each drawn unit (a count-N draw is N units) gets the next request_id, from 1, for
// the life of the pool, whether it found an item or pool_empty.
//
// Pools. The state holds up to pools_max pools, each named by a pool_id; "default" always exists
// and is what the single-pool interface (items(), digest(), ...) shows. Everything above holds
// per pool: its own items and selector, its own request_id sequence and digest. A deleted pool
// leaves a tombstone with its last_request_id, and a pool created again under that id continues
// from it, so no request_id of a pool is ever issued twice. (A pool deleted before its first draw
// leaves no tombstone: it issued nothing that could be reused.) Items are bounded per pool by
// items_max and over all pools by items_total_max.
//
// Idempotency. A command with a key is remembered with the hash of its request body and its
// encoded result, under its pool: the same key in two pools names two different requests. A
// repeat with the same hash returns the stored result without applying anything; a different
// hash returns errc::idempotency_key_reused. Failed answers are remembered like any other (a
// keyed draw on an absent pool keeps answering pool_not_found), and a remembered key outlives the
// deletion of its pool, so a late retry still gets its first answer. Keys are evicted oldest first
// over all pools, only once they are older than `idempotency_retention_ms` (by the commands' own
// timestamps) AND more than `idempotency_keys_min` newer keys exist, or when the stored results
// exceed `idempotency_bytes_max`, the hard bound on memory.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <vector>

#include "base/bytes.h"
#include "pool/command.h"
#include "pool/errc.h"
#include "pool/key_log.h"
#include "pool/selector.h"

namespace rpool::pool {

struct DrawOutcome {
  std::uint64_t request_id = 0;
  std::optional<std::string> item_id;  // nullopt: pool_empty
  friend bool operator==(const DrawOutcome&, const DrawOutcome&) = default;
};

struct Result {
  // ok, not_found (delete of an absent item or pool), idempotency_key_reused, bad_item,
  // too_many_items, and for pools: pool_exists, pool_not_found, pool_undeletable, bad_pool_id,
  // too_many_pools, too_many_items_total, pool_ids_exhausted.
  std::error_code error;
  std::vector<DrawOutcome> draws;  // draw
  std::optional<Item> item;        // upsert: the item as stored
  bool bootstrapped = false;       // bootstrap: true if this command seeded the catalog
  bool replayed = false;           // answered from the idempotency table, nothing applied
  // The log index of the entry that applied the command: for a replayed answer, the index of the
  // first one, so that a retry gets the first answer unchanged.
  std::uint64_t index = 0;
  friend bool operator==(const Result& a, const Result& b) {
    return a.error == b.error && a.draws == b.draws && a.item == b.item &&
           a.bootstrapped == b.bootstrapped && a.replayed == b.replayed && a.index == b.index;
  }
};

struct Options {
  std::uint64_t idempotency_retention_ms = 3'600'000;  // 1 hour
  std::size_t idempotency_keys_min = 1'000'000;
  std::size_t idempotency_bytes_max = std::size_t{1} << 30;  // 1 GiB of stored results
  // Options only so that tests can reach them; replicas keep the defaults.
  std::size_t tombstones_max = pool::tombstones_max;
  std::size_t key_block_records = KeyLog::default_block_records;  // key_log.h
};

// One pool, as the StateMachine holds it. Read-only outside the StateMachine.
class Pool {
 public:
  // Items in item_id order.
  const std::vector<Item>& items() const { return items_; }
  const Item* find(std::string_view item_id) const;
  std::uint64_t last_request_id() const { return last_request_id_; }
  // SHA-256 of the canonical encoding: u32 item count, then for each item in item_id order
  // (u8 id length, id, i64 quantity, u64 probability), then u64 last_request_id.
  Sha256 digest() const;
  std::string digest_hex() const;

  // Crashes loudly if the structure is inconsistent.
  void check_invariants() const;

 private:
  friend class StateMachine;

  // `items` sorted by item_id, valid, unique.
  void assign(std::vector<Item> items);
  std::vector<DrawOutcome> draw(const Draw& draw);
  // The item exists already, or the caller has checked the bounds on adding one.
  void upsert(const Item& item);
  bool erase(std::string_view item_id);  // false if absent
  void changed() { digest_valid_ = false; }
  void rebuild_selector();
  static std::uint64_t weight_of(const Item& item);

  std::vector<Item> items_;  // sorted by item_id; selector_ slot i is items_[i]
  Selector selector_;
  std::uint64_t last_request_id_ = 0;
  // digest() is asked for on every read; it is recomputed only after a change.
  mutable Sha256 digest_{};
  mutable bool digest_valid_ = false;
};

// One line of the pool list, for GET /v1/pools.
struct PoolSummary {
  std::string pool_id;
  std::size_t item_count = 0;
  std::uint64_t last_request_id = 0;
  Sha256 digest{};
  friend bool operator==(const PoolSummary&, const PoolSummary&) = default;
};

std::string to_hex(const Sha256& digest);

// The hash of maps keyed by pool_id, with lookups by string_view (is_transparent): per-pool state
// is hashed rather than ordered, because every draw looks its pool up.
struct PoolIdHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view id) const { return std::hash<std::string_view>{}(id); }
};

class StateMachine {
 public:
  explicit StateMachine(Options options = {});

  // Applies the command of log entry `index`. Indexes must increase (gaps are allowed: Raft's
  // own entries are not given to the pool). Deterministic in (state, command).
  Result apply(std::uint64_t index, const Command& command);

  // The whole state (every pool, the tombstones, the idempotency table), with a SHA-256
  // checksum. restore() accepts what snapshot() writes, and the single-pool snapshots written
  // before pools existed (restored as the pool "default").
  Bytes snapshot() const;
  std::error_code restore(ByteView snapshot);
  // The same snapshot in two steps, so that the state machine's thread need not wait for it.
  // begin_snapshot() takes time in the pools' items, not in the idempotency keys (it shares
  // them, see key_log.h); PendingSnapshot::encode() does the rest on any thread, while this state
  // machine goes on applying, restoring or being destroyed, and returns exactly the bytes
  // snapshot() returned at begin_snapshot().
  class PendingSnapshot;
  PendingSnapshot begin_snapshot() const;

  // The single-pool interface: all of these are the pool "default"'s.
  Sha256 digest() const { return default_pool().digest(); }
  std::string digest_hex() const { return default_pool().digest_hex(); }
  const std::vector<Item>& items() const { return default_pool().items(); }
  const Item* find(std::string_view item_id) const { return default_pool().find(item_id); }
  std::uint64_t last_request_id() const { return default_pool().last_request_id(); }

  // Pools. pool() returns nullptr for an absent pool; the pointer stays valid until the next
  // apply() or restore().
  const Pool* pool(std::string_view pool_id) const;
  const Pool& default_pool() const;
  // Every live pool, in pool_id order.
  std::vector<PoolSummary> pools() const;
  std::size_t pool_count() const { return pools_.size(); }
  std::size_t item_count_total() const { return item_count_total_; }
  // The last_request_id a deleted pool would continue from, or nullopt if none is remembered.
  std::optional<std::uint64_t> tombstone(std::string_view pool_id) const;
  std::size_t tombstone_count() const { return tombstones_.size(); }

  std::uint64_t applied_index() const { return applied_index_; }
  bool bootstrapped() const { return bootstrapped_; }
  std::size_t idempotency_keys() const { return keys_.log.size(); }
  std::size_t idempotency_bytes() const { return key_bytes_; }

  // Crashes loudly if the structure is inconsistent. Run after every mutation in tests.
  void check_invariants() const;

 private:
  // Hashed, not ordered: a draw on one of 10,000 pools finds it in a cache miss or two instead
  // of a walk down a tree of fourteen. Whatever leaves the state machine in pool_id order
  // (pools(), snapshot()) is sorted on the way out.
  using PoolMap = std::unordered_map<std::string, Pool, PoolIdHash, std::equal_to<>>;

  Result apply_op(const std::string& pool_id, const Draw& draw);
  Result apply_op(const std::string& pool_id, const UpsertItem& upsert);
  Result apply_op(const std::string& pool_id, const DeleteItem& del);
  Result apply_op(const std::string& pool_id, const Bootstrap& bootstrap);
  Result apply_op(const std::string& pool_id, const CreatePool& create);
  Result apply_op(const std::string& pool_id, const DeletePool& del);
  // Adds a pool with sorted, checked items, continuing a tombstone's sequence.
  void add_pool(const std::string& pool_id, std::vector<Item> items);
  Pool* find_pool(std::string_view pool_id);
  // The live pools in pool_id order.
  std::vector<const PoolMap::value_type*> sorted_pools() const;
  void remember(std::string scoped_key, const Command& command, const Result& result);
  void evict_keys();
  std::error_code restore_single_pool(ByteReader& r, StateMachine& s) const;
  std::error_code restore_pools(ByteReader& r, StateMachine& s) const;

  Options options_;
  PoolMap pools_;                     // always holds default_pool_id; size() <= pools_max
  std::size_t item_count_total_ = 0;  // sum of the pools' item counts, <= items_total_max
  // Deleted pool ids with a request_id issued, and the last one; disjoint from pools_.
  std::map<std::string, std::uint64_t, std::less<>> tombstones_;
  std::uint64_t applied_index_ = 0;
  std::uint64_t clock_ms_ = 0;  // the largest command timestamp seen: time never runs backwards
  bool bootstrapped_ = false;
  // The idempotency keys, in insertion order (oldest first) for eviction and snapshots, and
  // their index by scoped_key(pool_id, key): the key itself in "default" (as before pools
  // existed), else pool_id, a NUL byte (never in a key), the key. The index points into the log,
  // whose records never move (key_log.h); a copy (the planted bug answer_before_apply copies the
  // pool) indexes its own copy of the log.
  struct KeyTable {
    using Index = std::unordered_map<std::string_view, const KeyRecord*>;
    KeyLog log;
    Index index;

    explicit KeyTable(std::size_t block_records) : log(block_records) {}
    KeyTable(const KeyTable& other);
    KeyTable& operator=(const KeyTable& other);
    KeyTable(KeyTable&&) = default;
    KeyTable& operator=(KeyTable&&) = default;
  };
  KeyTable keys_{KeyLog::default_block_records};
  std::size_t key_bytes_ = 0;  // sum over keys of scoped key + result sizes + a fixed overhead
};

class StateMachine::PendingSnapshot {
 public:
  Bytes encode() &&;

 private:
  friend class StateMachine;
  Bytes head_;  // everything before the idempotency keys
  KeyLog::View keys_;
  std::size_t bytes_max_ = 0;
};

// Compact encoding of a Result, as stored in the idempotency table and snapshots.
void encode_result(const Result& result, Bytes& out);
std::error_code decode_result(ByteView bytes, Result& out);

}  // namespace rpool::pool
