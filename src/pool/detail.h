// Internals shared by the pool's translation units (state_machine.cpp, snapshot.cpp): the
// snapshot layout's constants and the helpers both the live state and its snapshot use. Not part
// of the pool's interface.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/bytes.h"
#include "pool/state_machine.h"

namespace rpool::pool::detail {

// Snapshot layout (little-endian), checked on restore before anything is replaced.
// Version 2, written since pools exist:
//
//   8   magic "RPOOLSNP"
//   u32 version = 2
//   u64 applied_index, u64 clock_ms, u8 bootstrapped
//   u32 pool count (1..pools_max), pools in pool_id order, "default" among them:
//       u8 pool id length, pool id, u64 last_request_id,
//       u32 item count, items in item_id order (u8 id length, id, i64 quantity, u64 probability)
//   u32 tombstone count, tombstones in pool_id order: u8 pool id length, pool id, u64
//   last_request_id u32 key count, keys oldest first (u8 pool id length, pool id, u8 key length,
//   key,
//                                     32 body hash, u64 timestamp_ms, u32 result length, result)
//   32  SHA-256 of every byte before it
//
// Version 1, the single-pool layout, is restored as the pool "default" (and its keys as its keys):
//
//   8   magic "RPOOLSNP"
//   u32 version = 1
//   u64 applied_index, u64 last_request_id, u64 clock_ms, u8 bootstrapped
//   u32 item count, items in item_id order
//   u32 key count, keys oldest first (u8 key length, key, 32 body hash, u64 timestamp_ms,
//                                     u32 result length, result)
//   32  SHA-256 of every byte before it
constexpr char snapshot_magic[8] = {'R', 'P', 'O', 'O', 'L', 'S', 'N', 'P'};
constexpr std::uint32_t snapshot_version_single_pool = 1;
constexpr std::uint32_t snapshot_version = 2;
constexpr std::size_t item_bytes_min = 17;  // u8 length, i64, u64
constexpr std::size_t pool_bytes_min = 1 + 1 + 8 + 4;
constexpr std::size_t tombstone_bytes_min = 1 + 1 + 8;
constexpr char key_scope_separator = '\0';  // never in a key: keys are printable ASCII
constexpr std::uint8_t result_version = 1;
// Bookkeeping charged per remembered key on top of its bytes, so that many tiny keys are bounded
// too.
constexpr std::size_t key_overhead_bytes = 96;

Sha256 sha256(ByteView bytes);
void put_item(ByteWriter& w, const Item& item);
bool item_less(const Item& a, const Item& b);
std::vector<Item>::const_iterator lower_bound_id(const std::vector<Item>& items,
                                                 std::string_view id);
// An idempotency key scoped to its pool (the default pool's keys are unscoped).
std::string scoped_key(std::string_view pool_id, std::string_view key);
// The inverse of scoped_key(): {pool_id, key}.
std::pair<std::string_view, std::string_view> split_scoped_key(std::string_view scoped);
// Sorts a catalog by item_id and checks it: bad_item for an invalid or repeated item,
// too_many_items beyond items_max.
std::error_code prepare_items(std::vector<Item>& items);
// Reads a u32 count and that many items, each valid and after the one before in item_id order.
bool read_items(ByteReader& r, std::vector<Item>& items);

}  // namespace rpool::pool::detail
