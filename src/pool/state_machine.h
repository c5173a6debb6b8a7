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
// Idempotency. A command with a key is remembered with the hash of its request body and its
// encoded result. A repeat with the same hash returns the stored result without applying
// anything; a different hash returns errc::idempotency_key_reused. Keys are evicted oldest first,
// only once they are older than `idempotency_retention_ms` (by the commands' own timestamps) AND
// more than `idempotency_keys_min` newer keys exist, or when the stored results exceed
// `idempotency_bytes_max`, the hard bound on memory.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <system_error>
#include <unordered_map>
#include <vector>

#include "base/bytes.h"
#include "pool/command.h"
#include "pool/errc.h"
#include "pool/selector.h"

namespace rpool::pool {

struct DrawOutcome {
  std::uint64_t request_id = 0;
  std::optional<std::string> item_id;  // nullopt: pool_empty
  friend bool operator==(const DrawOutcome&, const DrawOutcome&) = default;
};

struct Result {
  // ok, not_found (delete of an absent item), idempotency_key_reused, bad_item, too_many_items.
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
};

class StateMachine {
 public:
  explicit StateMachine(Options options = {});

  // Applies the command of log entry `index`. Indexes must increase (gaps are allowed: Raft's
  // own entries are not given to the pool). Deterministic in (state, command).
  Result apply(std::uint64_t index, const Command& command);

  // The whole state, with a SHA-256 checksum. restore() accepts only what snapshot() wrote.
  Bytes snapshot() const;
  std::error_code restore(ByteView snapshot);

  // SHA-256 of the canonical encoding: u32 item count, then for each item in item_id order
  // (u8 id length, id, i64 quantity, u64 probability), then u64 last_request_id.
  Sha256 digest() const;
  std::string digest_hex() const;

  // Items in item_id order.
  const std::vector<Item>& items() const { return items_; }
  const Item* find(std::string_view item_id) const;
  std::uint64_t last_request_id() const { return last_request_id_; }
  std::uint64_t applied_index() const { return applied_index_; }
  bool bootstrapped() const { return bootstrapped_; }
  std::size_t idempotency_keys() const { return keys_.size(); }
  std::size_t idempotency_bytes() const { return key_bytes_; }

  // Crashes loudly if the structure is inconsistent. Run after every mutation in tests.
  void check_invariants() const;

 private:
  struct KeyEntry {
    Sha256 body_hash;
    std::uint64_t timestamp_ms;
    Bytes result;  // encode_result()
  };

  Result apply_op(const Draw& draw);
  Result apply_op(const UpsertItem& upsert);
  Result apply_op(const DeleteItem& del);
  Result apply_op(const Bootstrap& bootstrap);
  void remember(const Command& command, const Result& result);
  void evict_keys();
  void rebuild_selector();
  static std::uint64_t weight_of(const Item& item);

  Options options_;
  std::vector<Item> items_;  // sorted by item_id; selector_ slot i is items_[i]
  Selector selector_;
  std::uint64_t last_request_id_ = 0;
  std::uint64_t applied_index_ = 0;
  std::uint64_t clock_ms_ = 0;  // the largest command timestamp seen: time never runs backwards
  bool bootstrapped_ = false;
  std::unordered_map<std::string, KeyEntry> key_table_;
  std::deque<std::string> keys_;  // insertion order, for eviction
  std::size_t key_bytes_ = 0;     // sum over keys of key + result sizes + a fixed overhead

  // digest() is asked for on every read; it is recomputed only after a change.
  mutable Sha256 digest_{};
  mutable bool digest_valid_ = false;
};

// Compact encoding of a Result, as stored in the idempotency table and snapshots.
void encode_result(const Result& result, Bytes& out);
std::error_code decode_result(ByteView bytes, Result& out);

}  // namespace rpool::pool
