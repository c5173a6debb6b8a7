// Expected failures of the pool, as std::error_code. A broken invariant is an assertion instead.
#pragma once

#include <string>
#include <system_error>

namespace rpool::pool {

enum class errc {
  ok = 0,
  malformed,               // bytes that do not decode to a command or a snapshot
  unsupported_version,     // a command or snapshot written by a newer format
  checksum_mismatch,       // a snapshot whose checksum does not match its contents
  bad_item,                // an item_id, quantity or probability outside the contract's ranges
  too_many_items,          // the catalog would exceed items_max
  not_found,               // delete of an absent item
  idempotency_key_reused,  // a known key arrived with a different body
  // Values are stored in snapshots (remembered results): append only.
  pool_exists,           // create of a pool that exists
  pool_not_found,        // draw or item change on a pool that does not exist
  pool_undeletable,      // delete of the pool "default"
  bad_pool_id,           // a pool_id outside the item_id rules
  too_many_pools,        // a create would exceed pools_max live pools
  too_many_items_total,  // the items of all pools would exceed items_total_max
  pool_ids_exhausted,  // tombstones_max deleted pool ids are remembered; only those can be created
};
// The last value: remembered results carrying a larger one are malformed.
inline constexpr errc errc_last = errc::pool_ids_exhausted;

const std::error_category& pool_category();

inline std::error_code make_error_code(errc e) { return {static_cast<int>(e), pool_category()}; }

}  // namespace rpool::pool

template <>
struct std::is_error_code_enum<rpool::pool::errc> : std::true_type {};
