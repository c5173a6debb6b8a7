#include "pool/errc.h"

namespace rpool::pool {
namespace {

class PoolCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "pool"; }
  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::ok: return "ok";
      case errc::malformed: return "malformed pool data";
      case errc::unsupported_version: return "pool data written by an unsupported format version";
      case errc::checksum_mismatch: return "pool snapshot checksum does not match its contents";
      case errc::bad_item: return "item outside the allowed ranges";
      case errc::too_many_items: return "the catalog is full";
      case errc::not_found: return "no such item";
      case errc::idempotency_key_reused: return "idempotency key reused with a different body";
      case errc::pool_exists: return "the pool exists already";
      case errc::pool_not_found: return "no such pool";
      case errc::pool_undeletable: return "the pool \"default\" cannot be deleted";
      case errc::bad_pool_id: return "pool_id outside the allowed alphabet or length";
      case errc::too_many_pools: return "the cluster holds pools_max pools already";
      case errc::too_many_items_total: return "the pools hold items_total_max items already";
      case errc::pool_ids_exhausted:
        return "too many deleted pool ids are remembered to add a new one";
    }
    return "unknown pool error";
  }
};

}  // namespace

const std::error_category& pool_category() {
  static const PoolCategory category;
  return category;
}

}  // namespace rpool::pool
