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
};

const std::error_category& pool_category();

inline std::error_code make_error_code(errc e) { return {static_cast<int>(e), pool_category()}; }

}  // namespace rpool::pool

template <>
struct std::is_error_code_enum<rpool::pool::errc> : std::true_type {};
