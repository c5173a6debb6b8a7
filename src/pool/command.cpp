#include "pool/command.h"

#include <fmt/format.h>

#include "base/assert.h"
#include "pool/errc.h"

namespace rpool::pool {
namespace {

enum class Kind : std::uint8_t {
  draw = 1,
  upsert = 2,
  remove = 3,
  bootstrap = 4,
  create_pool = 5,  // version 2 only
  delete_pool = 6,  // version 2 only
};
constexpr std::uint8_t kind_single_pool_max = 4;
// Each item takes at least 17 bytes (u8 length, i64, u64).
constexpr std::size_t item_bytes_min = 17;

void put_item(ByteWriter& w, const Item& item) {
  RPOOL_ASSERT_OP(item.item_id.size(), <=, item_id_bytes_max);
  w.str8(item.item_id);
  w.i64(item.quantity);
  w.u64(item.probability);
}

Item get_item(ByteReader& r) {
  Item item;
  item.item_id = r.str8();
  if (item.item_id.size() > item_id_bytes_max) r.fail();
  item.quantity = r.i64();
  item.probability = r.u64();
  return item;
}

void put_items(ByteWriter& w, const std::vector<Item>& items) {
  RPOOL_ASSERT_OP(items.size(), <=, items_max);
  w.u32(static_cast<std::uint32_t>(items.size()));
  for (const Item& item : items) put_item(w, item);
}

// Refuses counts the input cannot hold before reserving anything.
bool get_items(ByteReader& r, std::vector<Item>& items) {
  const std::uint32_t n = r.u32();
  if (!r.ok() || n > items_max || n > r.remaining() / item_bytes_min) return false;
  items.reserve(n);
  for (std::uint32_t i = 0; i < n && r.ok(); ++i) items.push_back(get_item(r));
  return r.ok();
}

// Whether version 1 can say this command: then it is written as version 1, byte for byte as
// before pools existed.
bool single_pool(const Command& command) {
  if (command.pool_id != default_pool_id) return false;
  if (command.op.index() + 1 > kind_single_pool_max) return false;
  const auto* bootstrap = std::get_if<Bootstrap>(&command.op);
  return bootstrap == nullptr || bootstrap->pools.empty();
}

// Keys may hold spaces and quotes: show them escaped and quoted.
std::string quote_key(std::string_view key) { return fmt::format(" key={:?}", key); }

}  // namespace

void encode(const Command& command, Bytes& out) {
  RPOOL_ASSERT_OP(command.idempotency_key.size(), <=, idempotency_key_bytes_max);
  out.reserve(out.size() + 64 + command.idempotency_key.size());  // a draw fits: one allocation
  RPOOL_ASSERT(!command.pool_id.empty());
  RPOOL_ASSERT_OP(command.pool_id.size(), <=, pool_id_bytes_max);
  if (std::holds_alternative<Bootstrap>(command.op))
    RPOOL_ASSERT(command.pool_id == default_pool_id);
  const bool v1 = single_pool(command);
  ByteWriter w(out);
  w.u8(v1 ? command_version_single_pool : command_version);
  const auto kind = static_cast<std::uint8_t>(command.op.index() + 1);
  w.u8(kind);
  w.u64(command.timestamp_ms);
  w.str8(command.idempotency_key);
  if (!command.idempotency_key.empty()) w.raw(command.body_hash);
  if (!v1) w.str8(command.pool_id);
  if (const auto* draw = std::get_if<Draw>(&command.op)) {
    RPOOL_ASSERT(draw->count >= 1);
    RPOOL_ASSERT_OP(draw->count, <=, draw_count_max);
    w.u32(draw->count);
    w.u64(draw->seed);
  } else if (const auto* upsert = std::get_if<UpsertItem>(&command.op)) {
    put_item(w, upsert->item);
  } else if (const auto* del = std::get_if<DeleteItem>(&command.op)) {
    RPOOL_ASSERT_OP(del->item_id.size(), <=, item_id_bytes_max);
    w.str8(del->item_id);
  } else if (const auto* bootstrap = std::get_if<Bootstrap>(&command.op)) {
    put_items(w, bootstrap->items);
    if (!v1) {
      RPOOL_ASSERT_OP(bootstrap->pools.size(), <, pools_max);
      w.u32(static_cast<std::uint32_t>(bootstrap->pools.size()));
      for (const auto& [pool_id, items] : bootstrap->pools) {
        RPOOL_ASSERT(!pool_id.empty());
        RPOOL_ASSERT_OP(pool_id.size(), <=, pool_id_bytes_max);
        w.str8(pool_id);
        put_items(w, items);
      }
    }
  } else if (const auto* create = std::get_if<CreatePool>(&command.op)) {
    put_items(w, create->items);
  } else {
    RPOOL_ASSERT(std::holds_alternative<DeletePool>(command.op));
  }
}

Bytes encode(const Command& command) {
  Bytes out;
  encode(command, out);
  return out;
}

std::error_code decode(ByteView bytes, Command& out) {
  ByteReader r(bytes);
  const std::uint8_t version = r.u8();
  if (r.ok() && version != command_version_single_pool && version != command_version) {
    return errc::unsupported_version;
  }
  const std::uint8_t kind_byte = r.u8();
  if (version == command_version_single_pool && kind_byte > kind_single_pool_max) {
    return errc::malformed;
  }
  const auto kind = static_cast<Kind>(kind_byte);
  Command c;
  c.timestamp_ms = r.u64();
  c.idempotency_key = r.str8();
  if (!c.idempotency_key.empty()) {
    if (!valid_idempotency_key(c.idempotency_key)) return errc::malformed;
    const ByteView hash = r.raw(c.body_hash.size());
    if (r.ok()) std::copy(hash.begin(), hash.end(), c.body_hash.begin());
  }
  if (version == command_version) {
    c.pool_id = r.str8();
    if (c.pool_id.empty() || c.pool_id.size() > pool_id_bytes_max) return errc::malformed;
  }
  if (!r.ok()) return errc::malformed;
  switch (kind) {
    case Kind::draw: {
      Draw draw;
      draw.count = r.u32();
      draw.seed = r.u64();
      if (draw.count < 1 || draw.count > draw_count_max) return errc::malformed;
      c.op = draw;
      break;
    }
    case Kind::upsert: c.op = UpsertItem{get_item(r)}; break;
    case Kind::remove: {
      DeleteItem del{r.str8()};
      if (del.item_id.size() > item_id_bytes_max) return errc::malformed;
      c.op = std::move(del);
      break;
    }
    case Kind::bootstrap: {
      Bootstrap bootstrap;
      if (!get_items(r, bootstrap.items)) return errc::malformed;
      if (version == command_version) {
        if (c.pool_id != default_pool_id) return errc::malformed;
        const std::uint32_t m = r.u32();
        if (m >= pools_max) return errc::malformed;
        std::size_t total = bootstrap.items.size();
        for (std::uint32_t i = 0; i < m && r.ok(); ++i) {
          std::string pool_id = r.str8();
          std::vector<Item> items;
          if (pool_id.empty() || pool_id.size() > pool_id_bytes_max) return errc::malformed;
          if (!get_items(r, items)) return errc::malformed;
          total += items.size();
          if (total > items_total_max) return errc::malformed;
          // Written in pool_id order: a repeat or a disorder is not our encoding.
          if (!bootstrap.pools.empty() && !(bootstrap.pools.rbegin()->first < pool_id)) {
            return errc::malformed;
          }
          bootstrap.pools.emplace_hint(bootstrap.pools.end(), std::move(pool_id), std::move(items));
        }
      }
      c.op = std::move(bootstrap);
      break;
    }
    case Kind::create_pool: {
      CreatePool create;
      if (!get_items(r, create.items)) return errc::malformed;
      c.op = std::move(create);
      break;
    }
    case Kind::delete_pool: c.op = DeletePool{}; break;
    default: return errc::malformed;
  }
  if (!r.at_end()) return errc::malformed;
  out = std::move(c);
  return {};
}

bool valid_pool_id(std::string_view id) { return valid_item_id(id); }

bool valid_item_id(std::string_view id) {
  if (id.empty() || id.size() > item_id_bytes_max) return false;
  for (const char ch : id) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-';
    if (!ok) return false;
  }
  return true;
}

std::error_code validate_item(const Item& item) {
  if (!valid_item_id(item.item_id)) return errc::bad_item;
  if (item.quantity != quantity_unlimited && (item.quantity < 0 || item.quantity > quantity_max)) {
    return errc::bad_item;
  }
  if (item.probability > probability_max) return errc::bad_item;
  return {};
}

bool valid_idempotency_key(std::string_view key) {
  if (key.empty() || key.size() > idempotency_key_bytes_max) return false;
  for (const char ch : key) {
    if (ch < 0x20 || ch > 0x7e) return false;
  }
  return true;
}

std::string describe(const Command& command, NamePool name_pool) {
  std::string text;
  if (const auto* draw = std::get_if<Draw>(&command.op)) {
    text = fmt::format("draw count={} seed={:#018x}", draw->count, draw->seed);
  } else if (const auto* upsert = std::get_if<UpsertItem>(&command.op)) {
    text = fmt::format("upsert item_id={} quantity={} probability={}", upsert->item.item_id,
                       upsert->item.quantity, upsert->item.probability);
  } else if (const auto* del = std::get_if<DeleteItem>(&command.op)) {
    text = fmt::format("delete item_id={}", del->item_id);
  } else if (const auto* bootstrap = std::get_if<Bootstrap>(&command.op)) {
    text = fmt::format("bootstrap items={}", bootstrap->items.size());
    for (const Item& item : bootstrap->items) {
      text += fmt::format(" {}:{}:{}", item.item_id, item.quantity, item.probability);
    }
    for (const auto& [pool_id, items] : bootstrap->pools) {
      text += fmt::format(" pool {} items={}", pool_id, items.size());
      for (const Item& item : items) {
        text += fmt::format(" {}:{}:{}", item.item_id, item.quantity, item.probability);
      }
    }
  } else if (const auto* create = std::get_if<CreatePool>(&command.op)) {
    text = fmt::format("create pool items={}", create->items.size());
    for (const Item& item : create->items) {
      text += fmt::format(" {}:{}:{}", item.item_id, item.quantity, item.probability);
    }
  } else {
    text = "delete pool";
  }
  if (name_pool == NamePool::always || command.pool_id != default_pool_id)
    text += fmt::format(" pool={}", command.pool_id);
  text += fmt::format(" ts={}", command.timestamp_ms);
  if (!command.idempotency_key.empty()) text += quote_key(command.idempotency_key);
  return text;
}

}  // namespace rpool::pool
