#include "pool/command.h"

#include <fmt/format.h>

#include "base/assert.h"
#include "pool/errc.h"

namespace rpool::pool {
namespace {

enum class Kind : std::uint8_t { draw = 1, upsert = 2, remove = 3, bootstrap = 4 };

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

// Keys may hold spaces and quotes: show them escaped and quoted.
std::string quote_key(std::string_view key) { return fmt::format(" key={:?}", key); }

}  // namespace

void encode(const Command& command, Bytes& out) {
  RPOOL_ASSERT_OP(command.idempotency_key.size(), <=, idempotency_key_bytes_max);
  out.reserve(out.size() + 64 + command.idempotency_key.size());  // a draw fits: one allocation
  ByteWriter w(out);
  w.u8(command_version);
  const auto kind = static_cast<std::uint8_t>(command.op.index() + 1);
  w.u8(kind);
  w.u64(command.timestamp_ms);
  w.str8(command.idempotency_key);
  if (!command.idempotency_key.empty()) w.raw(command.body_hash);
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
  } else {
    const auto& bootstrap = std::get<Bootstrap>(command.op);
    RPOOL_ASSERT_OP(bootstrap.items.size(), <=, items_max);
    w.u32(static_cast<std::uint32_t>(bootstrap.items.size()));
    for (const Item& item : bootstrap.items) put_item(w, item);
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
  if (r.ok() && version != command_version) return errc::unsupported_version;
  const auto kind = static_cast<Kind>(r.u8());
  Command c;
  c.timestamp_ms = r.u64();
  c.idempotency_key = r.str8();
  if (!c.idempotency_key.empty()) {
    if (!valid_idempotency_key(c.idempotency_key)) return errc::malformed;
    const ByteView hash = r.raw(c.body_hash.size());
    if (r.ok()) std::copy(hash.begin(), hash.end(), c.body_hash.begin());
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
    case Kind::upsert:
      c.op = UpsertItem{get_item(r)};
      break;
    case Kind::remove: {
      DeleteItem del{r.str8()};
      if (del.item_id.size() > item_id_bytes_max) return errc::malformed;
      c.op = std::move(del);
      break;
    }
    case Kind::bootstrap: {
      const std::uint32_t n = r.u32();
      // Each item takes at least 17 bytes: refuse counts the input cannot hold before reserving.
      if (n > items_max || n > r.remaining() / 17) return errc::malformed;
      Bootstrap bootstrap;
      bootstrap.items.reserve(n);
      for (std::uint32_t i = 0; i < n && r.ok(); ++i) bootstrap.items.push_back(get_item(r));
      c.op = std::move(bootstrap);
      break;
    }
    default:
      return errc::malformed;
  }
  if (!r.at_end()) return errc::malformed;
  out = std::move(c);
  return {};
}

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

std::string describe(const Command& command) {
  std::string text;
  if (const auto* draw = std::get_if<Draw>(&command.op)) {
    text = fmt::format("draw count={} seed={:#018x}", draw->count, draw->seed);
  } else if (const auto* upsert = std::get_if<UpsertItem>(&command.op)) {
    text = fmt::format("upsert item_id={} quantity={} probability={}", upsert->item.item_id,
                       upsert->item.quantity, upsert->item.probability);
  } else if (const auto* del = std::get_if<DeleteItem>(&command.op)) {
    text = fmt::format("delete item_id={}", del->item_id);
  } else {
    const auto& bootstrap = std::get<Bootstrap>(command.op);
    text = fmt::format("bootstrap items={}", bootstrap.items.size());
    for (const Item& item : bootstrap.items) {
      text += fmt::format(" {}:{}:{}", item.item_id, item.quantity, item.probability);
    }
  }
  text += fmt::format(" ts={}", command.timestamp_ms);
  if (!command.idempotency_key.empty()) text += quote_key(command.idempotency_key);
  return text;
}

}  // namespace rpool::pool
