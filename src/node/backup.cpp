// Backups: the file format (backup.h) and GET /v1/snapshot.
#include "node/backup.h"

#include <openssl/sha.h>

#include <chrono>
#include <cstring>
#include <thread>

#include <fmt/format.h>

#include "base/assert.h"
#include "node/http_api.h"
#include "pool/state_machine.h"

namespace rpool::node {
namespace {

constexpr char backup_magic[8] = {'R', 'P', 'O', 'O', 'L', 'B', 'A', 'K'};
static_assert(sizeof backup_magic + 4 + 4 + 8 + 8 + 8 == backup_header_bytes);
static_assert(SHA256_DIGEST_LENGTH == backup_trailer_bytes);

pool::Sha256 sha256_of(ByteView bytes) {
  pool::Sha256 out;
  SHA256(bytes.data(), bytes.size(), out.data());
  return out;
}

// The index field of an encoded backup.
std::uint64_t index_of(const std::string& file) {
  return load_u64le(reinterpret_cast<const std::uint8_t*>(file.data()) + 16);
}

}  // namespace

std::string sha256_hex(ByteView bytes) { return pool::to_hex(sha256_of(bytes)); }

std::string encode_backup(LogIndex index, std::uint64_t cluster_id, ByteView state,
                          const std::vector<std::pair<LogIndex, Bytes>>& entries) {
  std::size_t size = backup_header_bytes + state.size() + 8 + backup_trailer_bytes;
  for (const auto& [i, command] : entries) size += 8 + 4 + command.size();
  std::string out(size, '\0');
  auto* const begin = reinterpret_cast<std::uint8_t*>(out.data());
  std::memcpy(begin, backup_magic, sizeof backup_magic);
  store_u32le(begin + 8, backup_version);
  store_u32le(begin + 12, 0);
  store_u64le(begin + 16, index.value());
  store_u64le(begin + 24, cluster_id);
  store_u64le(begin + 32, state.size());
  std::uint8_t* p = begin + backup_header_bytes;
  if (!state.empty()) std::memcpy(p, state.data(), state.size());
  p += state.size();
  store_u64le(p, entries.size());
  p += 8;
  for (const auto& [i, command] : entries) {
    RPOOL_ASSERT_OP(i, <=, index);
    RPOOL_ASSERT(command.size() <= UINT32_MAX);
    store_u64le(p, i.value());
    store_u32le(p + 8, static_cast<std::uint32_t>(command.size()));
    if (!command.empty()) std::memcpy(p + 12, command.data(), command.size());
    p += 12 + command.size();
  }
  const std::size_t body = static_cast<std::size_t>(p - begin);
  RPOOL_ASSERT_OP(body + backup_trailer_bytes, ==, out.size());
  const pool::Sha256 sum = sha256_of({begin, body});
  std::memcpy(p, sum.data(), sum.size());
  return out;
}

std::optional<std::string> decode_backup(ByteView file, Backup& out) {
  constexpr std::size_t smallest = backup_header_bytes + 8 + backup_trailer_bytes;
  if (file.size() < smallest) {
    return fmt::format("it is {} bytes long, shorter than any backup ({} bytes at least)",
                       file.size(), smallest);
  }
  if (std::memcmp(file.data(), backup_magic, sizeof backup_magic) != 0)
    return std::string("it does not start with RPOOLBAK: not an rpool backup");
  const std::uint32_t version = load_u32le(file.data() + 8);
  if (version != backup_version)
    return fmt::format("format version {} (this build reads {})", version, backup_version);
  const std::size_t body = file.size() - backup_trailer_bytes;
  const pool::Sha256 sum = sha256_of(file.first(body));
  if (std::memcmp(sum.data(), file.data() + body, sum.size()) != 0)
    return std::string("its SHA-256 does not match its contents: the file is damaged or cut short");
  // The checksum held, so what follows is what a node wrote; the bounds are checked all the same.
  const LogIndex index(load_u64le(file.data() + 16));
  const std::uint64_t state_bytes = load_u64le(file.data() + 32);
  if (state_bytes > body - backup_header_bytes - 8)
    return fmt::format("it declares {} bytes of state, more than it holds", state_bytes);
  ByteView rest = file.subspan(backup_header_bytes, body - backup_header_bytes);
  out.index = index;
  out.cluster_id = load_u64le(file.data() + 24);
  out.state.assign(rest.begin(), rest.begin() + static_cast<long>(state_bytes));
  rest = rest.subspan(state_bytes);
  const std::uint64_t count = load_u64le(rest.data());
  rest = rest.subspan(8);
  if (count > rest.size() / 12)
    return fmt::format("it declares {} commands, more than it can hold", count);
  out.entries.clear();
  out.entries.reserve(count);
  LogIndex previous;
  for (std::uint64_t k = 0; k < count; ++k) {
    if (rest.size() < 12) return fmt::format("command {} of {} is cut short", k + 1, count);
    const LogIndex i(load_u64le(rest.data()));
    const std::uint32_t length = load_u32le(rest.data() + 8);
    if (length > rest.size() - 12)
      return fmt::format("command {} of {} is cut short", k + 1, count);
    if (i <= previous || i > index) {
      return fmt::format("command {} has log index {}, out of order (after {}, at most {})", k + 1,
                         i, previous, index);
    }
    out.entries.emplace_back(i, Bytes(rest.begin() + 12, rest.begin() + 12 + length));
    rest = rest.subspan(12 + length);
    previous = i;
  }
  if (!rest.empty()) return fmt::format("{} bytes follow its last command", rest.size());
  return std::nullopt;
}

std::optional<std::string> restore_backup(const Backup& backup, pool::StateMachine& out) {
  if (const auto ec = out.restore(backup.state))
    return fmt::format("its state image does not decode: {}", ec.message());
  for (const auto& [i, bytes] : backup.entries) {
    if (i.value() <= out.applied_index()) {
      return fmt::format("command at index {} is not after its image (index {})", i,
                         out.applied_index());
    }
    pool::Command command;
    if (const auto ec = pool::decode(bytes, command))
      return fmt::format("command at index {} does not decode: {}", i, ec.message());
    out.apply(i.value(), command);  // as every replica applied it
  }
  return std::nullopt;
}

Replica::BackupSource Replica::backup_source() const {
  BackupSource source;
  source.index = applied_;
  LogIndex from;
  if (margin_snapshot_.second) {
    source.image = margin_snapshot_.second;
    from = margin_snapshot_.first.next();
  } else {
    // No snapshot yet: the log still starts at index 1, and the image is the empty state.
    source.image = std::make_shared<const Bytes>(pool::StateMachine().snapshot());
    from = LogIndex(1);
  }
  RPOOL_ASSERT_OP(margin_snapshot_.first, <=, applied_);
  const raft::Log& log = core_->log();
  RPOOL_ASSERT_OP(log.first_index(), <=, from);  // compacted only up to the margin snapshot
  for (LogIndex i = from; i <= applied_; i = i.next()) {
    const raft::Entry& e = log.at(i);
    if (e.type == raft::EntryType::normal) source.entries.emplace_back(i, e.data);
  }
  return source;
}

// GET /v1/snapshot. The state is taken at a linearizable point: the request goes through the
// ReadIndex path of a default read (replica_.read(): on a follower the leader confirms the read
// index), and once this node has applied up to it, the backup is of the applied index, which then
// reflects every write acknowledged before the request began. A follower therefore answers from
// its own copy instead of forwarding: the leader is spared the work, and the body need not fit
// the forwarding client's answer limit.
//
// On the event loop only Replica::backup_source() runs (the entries since the newest snapshot
// are copied; the state is not serialised); the file is assembled and checksummed on a thread of
// its own, and the answer posted back to the loop. Server-Timing gives both durations.
void HttpApi::handle_backup(HttpRequest&& request, Respond respond) {
  if (*backups_in_flight_ >= backups_in_flight_max) {
    respond(error_response(request, api::Error::overloaded,
                           "A backup is being taken on this node already; retry when it is done."));
    return;
  }
  ++*backups_in_flight_;
  auto req = std::make_shared<HttpRequest>(std::move(request));
  replica_.read([this, req, respond = std::move(respond)](const Outcome& outcome) mutable {
    if (outcome.ec) {
      --*backups_in_flight_;
      return respond(outcome_response(*req, outcome));
    }
    const auto started = Clock::now();
    auto source = std::make_shared<Replica::BackupSource>(replica_.backup_source());
    const double loop_ms =
        std::chrono::duration<double, std::milli>(Clock::now() - started).count();
    // At most backups_in_flight_max (1) thread: the previous one has posted its answer already.
    if (backup_thread_.joinable()) backup_thread_.join();
    backup_thread_ = std::thread([source, cluster_id = replica_.cluster_id(), &env = replica_.env(),
                                  req, respond = std::move(respond), in_flight = backups_in_flight_,
                                  loop_ms]() mutable {
      const auto built = Clock::now();
      auto body = std::make_shared<std::string>(
          encode_backup(source->index, cluster_id, *source->image, source->entries));
      source.reset();
      std::string sum = sha256_hex(as_bytes(*body));
      const double build_ms =
          std::chrono::duration<double, std::milli>(Clock::now() - built).count();
      env.post(
          [=, req = std::move(req), respond = std::move(respond), sum = std::move(sum)]() mutable {
            --*in_flight;
            HttpResponse res{http::status::ok, req->version()};
            res.set(http::field::content_type, "application/octet-stream");
            res.set("Rpool-Snapshot-Index", std::to_string(index_of(*body)));
            res.set("Rpool-Sha256", sum);
            res.set("Server-Timing",
                    fmt::format("loop;dur={:.1f}, build;dur={:.1f}", loop_ms, build_ms));
            res.keep_alive(req->keep_alive());
            res.body() = std::move(*body);
            res.prepare_payload();
            respond(std::move(res));
          });
    });
  });
}

HttpApi::~HttpApi() {
  if (backup_thread_.joinable()) backup_thread_.join();
}

}  // namespace rpool::node
