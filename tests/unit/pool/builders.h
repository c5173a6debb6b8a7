// Tiny builders for pool tests: commands and catalogs in one line each.
#pragma once

#include <cstdint>
#include <ostream>  // doctest prints std::error_code through it
#include <string>
#include <vector>

#include "pool/command.h"
#include "pool/state_machine.h"

namespace rpool::pool::test {

inline Item item(std::string id, std::int64_t quantity, std::uint64_t probability) {
  return Item{std::move(id), quantity, probability};
}
inline Command draw(std::uint32_t count, std::uint64_t seed, std::uint64_t ts = 0) {
  return Command{Draw{count, seed}, ts, {}, {}};
}
inline Command upsert(Item i, std::uint64_t ts = 0) {
  return Command{UpsertItem{std::move(i)}, ts, {}, {}};
}
inline Command remove_item(std::string id, std::uint64_t ts = 0) {
  return Command{DeleteItem{std::move(id)}, ts, {}, {}};
}
inline Command bootstrap(std::vector<Item> items, std::uint64_t ts = 0) {
  return Command{Bootstrap{std::move(items)}, ts, {}, {}};
}
inline Command in_pool(std::string pool_id, Command c) {
  c.pool_id = std::move(pool_id);
  return c;
}
inline Command create_pool(std::string pool_id, std::vector<Item> items, std::uint64_t ts = 0) {
  return in_pool(std::move(pool_id), Command{CreatePool{std::move(items)}, ts, {}, {}});
}
inline Command delete_pool(std::string pool_id, std::uint64_t ts = 0) {
  return in_pool(std::move(pool_id), Command{DeletePool{}, ts, {}, {}});
}
inline Command keyed(Command c, std::string key, std::uint8_t body) {
  c.idempotency_key = std::move(key);
  c.body_hash.fill(body);
  return c;
}

// Applies commands at consecutive indexes, checking invariants after each.
class Driver {
 public:
  explicit Driver(Options options = {}) : sm(options) {}
  Result apply(const Command& c) {
    Result r = sm.apply(++index, c);
    sm.check_invariants();
    return r;
  }
  StateMachine sm;
  std::uint64_t index = 0;
};

// A pool of one unlimited item, "mud", and `keys` keyed draws of it at `ts`, keyed k0, k1, ...,
// remembered for `retention_ms` and down to `keys_min` keys.
inline Driver mud_with_keys(std::uint64_t retention_ms, std::size_t keys_min, int keys,
                            std::uint64_t ts) {
  Options options;
  options.idempotency_retention_ms = retention_ms;
  options.idempotency_keys_min = keys_min;
  Driver d(options);
  d.apply(bootstrap({item("mud", -1, 1)}));
  for (int i = 0; i < keys; ++i) d.apply(keyed(draw(1, 1, ts), 'k' + std::to_string(i), 1));
  return d;
}

}  // namespace rpool::pool::test
