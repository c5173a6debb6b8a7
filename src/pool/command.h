// The commands that change a pool, and their compact binary codec.
//
// A command is what the leader puts in one Raft log entry. Every replica decodes the same bytes
// and applies them to its StateMachine, so the encoding is part of the durable format: it is
// versioned, and decoding never trusts its input.
//
// Encoding (all integers little-endian):
//
//   u8   version            1 or 2 (see below)
//   u8   kind               1 draw | 2 upsert item | 3 delete item | 4 bootstrap catalog
//                           | 5 create pool | 6 delete pool (5 and 6: version 2 only)
//   u64  timestamp_ms       the leader's wall clock when it proposed the command (Unix ms)
//   u8   key length K       0 = no idempotency key; at most 128
//   K    key bytes
//   32   body hash          SHA-256 of the request that carried the key (only when K > 0)
//   u8   pool id length P   version 2 only: 1..64
//   P    pool id bytes      version 2 only; version 1 means the pool "default"
//   ...  the kind's body:
//     draw:        u32 count (1..1000), u64 seed
//     upsert:      item
//     delete:      u8 id length, id bytes
//     bootstrap:   u32 n (<= items_max), n items                        (the pool "default")
//                  version 2 only, then: u32 m (< pools_max) more pools in pool_id order, each
//                  u8 pool id length, pool id, u32 n, n items           (all items <=
//                  items_total_max)
//     create pool: u32 n (<= items_max), n items
//     delete pool: nothing
//   item = u8 id length, id bytes, i64 quantity, u64 probability
//
// Versions. Version 1 is the single-pool format: every entry written before pools existed is
// version 1 and decodes as a command on the pool "default". encode() still writes version 1
// whenever version 1 can say it (a command on "default" of kinds 1-4, a bootstrap without more
// pools), so those bytes are unchanged and a replica that knows only version 1 still applies
// them; anything else is version 2. A bootstrap names the pool "default" in version 2.
//
// Decoding checks lengths and ranges only (count, key length, string lengths, pool and item
// counts); whether an item or a pool id is acceptable is decided by validate_item() and
// valid_pool_id(), which the StateMachine applies as well.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <variant>
#include <vector>

#include "base/bytes.h"

namespace rpool::pool {

// The newest version encode() writes; decode() accepts 1 and 2.
inline constexpr std::uint8_t command_version = 2;
inline constexpr std::uint8_t command_version_single_pool = 1;
inline constexpr std::uint32_t draw_count_max = 1000;
inline constexpr std::size_t item_id_bytes_max = 64;
inline constexpr std::size_t idempotency_key_bytes_max = 128;
inline constexpr std::int64_t quantity_unlimited = -1;
// Quantities stay exactly representable as JSON numbers (2^53 - 1).
inline constexpr std::int64_t quantity_max = (std::int64_t{1} << 53) - 1;
// With at most items_max items of at most probability_max each, the total weight fits in 63 bits.
inline constexpr std::uint64_t probability_max = 1'000'000'000'000;  // 10^12
inline constexpr std::size_t items_max = 1'000'000;
static_assert(probability_max * items_max < (std::uint64_t{1} << 63));

// Pools. A pool_id follows the item_id rules. The pool "default" always exists.
inline constexpr std::string_view default_pool_id = "default";
inline constexpr std::size_t pool_id_bytes_max = 64;
inline constexpr std::size_t pools_max = 10'000;           // live pools, "default" included
inline constexpr std::size_t items_total_max = 1'000'000;  // items over all live pools
// Deleted pool ids remembered so that their request_id sequence continues when created again.
// Creating a never-seen pool id is refused once this many are remembered, so that at most
// tombstones_max + pools_max are ever kept.
inline constexpr std::size_t tombstones_max = 1'000'000;
static_assert(items_max <= items_total_max);
static_assert(pool_id_bytes_max == item_id_bytes_max);

using Sha256 = std::array<std::uint8_t, 32>;

struct Item {
  std::string item_id;
  std::int64_t quantity = 0;      // >= 0, or quantity_unlimited
  std::uint64_t probability = 0;  // weight; 0 is never drawn
  friend bool operator==(const Item&, const Item&) = default;
};

struct Draw {
  std::uint32_t count = 1;  // 1..draw_count_max
  std::uint64_t seed = 0;   // from the leader's CSPRNG; the outcome is a pure function of it
  friend bool operator==(const Draw&, const Draw&) = default;
};
struct UpsertItem {
  Item item;
  friend bool operator==(const UpsertItem&, const UpsertItem&) = default;
};
struct DeleteItem {
  std::string item_id;
  friend bool operator==(const DeleteItem&, const DeleteItem&) = default;
};
// Seeds the catalog when the cluster first forms; ignored once the pool has been bootstrapped.
// `items` seed the pool "default"; `pools` (config field "pools") seed more pools, except those
// that already exist by then (created through the API, which wins).
struct Bootstrap {
  std::vector<Item> items;
  std::map<std::string, std::vector<Item>, std::less<>> pools{};  // pool_id -> items
  friend bool operator==(const Bootstrap&, const Bootstrap&) = default;
};
// Creates the pool `Command::pool_id` with these items (errc::pool_exists if it exists).
struct CreatePool {
  std::vector<Item> items;
  friend bool operator==(const CreatePool&, const CreatePool&) = default;
};
// Deletes the pool `Command::pool_id` (not "default"), remembering its last_request_id.
struct DeletePool {
  friend bool operator==(const DeletePool&, const DeletePool&) = default;
};

struct Command {
  // The alternatives' order is the wire kind minus one: append only.
  std::variant<Draw, UpsertItem, DeleteItem, Bootstrap, CreatePool, DeletePool> op;
  std::uint64_t timestamp_ms = 0;
  std::string idempotency_key;  // empty: no key
  Sha256 body_hash{};           // meaningful only with a key
  // The pool the command acts on; last, so that {op, ts, key, hash} still means "default".
  std::string pool_id = std::string(default_pool_id);
  friend bool operator==(const Command&, const Command&) = default;
};

// Appends the encoding of `command` to `out`.
void encode(const Command& command, Bytes& out);
Bytes encode(const Command& command);

// Decodes one whole command; trailing bytes are an error. Never reads out of bounds.
std::error_code decode(ByteView bytes, Command& out);

// The contract's item_id alphabet and length: 1-64 of A-Z a-z 0-9 _ . -
bool valid_item_id(std::string_view id);
// The same alphabet and length for a pool_id.
bool valid_pool_id(std::string_view id);
// An item within the contract's ranges (errc::bad_item otherwise).
std::error_code validate_item(const Item& item);
// 1-128 printable ASCII characters.
bool valid_idempotency_key(std::string_view key);

// A one-line human description, for logs and `rpool-wal dump`. The pool is named as
// " pool=<id>" after the operation: by default only when it is not "default", so that
// single-pool lines read as they always did; `rpool-wal dump` names it always.
enum class NamePool { unless_default, always };
std::string describe(const Command& command, NamePool name_pool = NamePool::unless_default);

}  // namespace rpool::pool
