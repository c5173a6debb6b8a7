// Backups: the file format (backup.h) and GET /v1/snapshot.
#include "node/backup.h"

#include <openssl/sha.h>

#include <chrono>
#include <cstring>

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

}  // namespace

std::string sha256_hex(ByteView bytes) { return pool::to_hex(sha256_of(bytes)); }

std::string encode_backup(LogIndex index, std::uint64_t cluster_id, ByteView state) {
  std::string out(backup_header_bytes + state.size() + backup_trailer_bytes, '\0');
  auto* p = reinterpret_cast<std::uint8_t*>(out.data());
  std::memcpy(p, backup_magic, sizeof backup_magic);
  store_u32le(p + 8, backup_version);
  store_u32le(p + 12, 0);
  store_u64le(p + 16, index.value());
  store_u64le(p + 24, cluster_id);
  store_u64le(p + 32, state.size());
  if (!state.empty()) std::memcpy(p + backup_header_bytes, state.data(), state.size());
  const std::size_t body = backup_header_bytes + state.size();
  const pool::Sha256 sum = sha256_of({p, body});
  std::memcpy(p + body, sum.data(), sum.size());
  return out;
}

std::optional<std::string> decode_backup(ByteView file, Backup& out) {
  if (file.size() < backup_header_bytes + backup_trailer_bytes) {
    return fmt::format("it is {} bytes long, shorter than any backup ({} bytes at least)",
                       file.size(), backup_header_bytes + backup_trailer_bytes);
  }
  if (std::memcmp(file.data(), backup_magic, sizeof backup_magic) != 0)
    return std::string("it does not start with RPOOLBAK: not an rpool backup");
  const std::uint32_t version = load_u32le(file.data() + 8);
  if (version != backup_version)
    return fmt::format("format version {} (this build reads {})", version, backup_version);
  const std::uint64_t state_bytes = load_u64le(file.data() + 32);
  if (state_bytes != file.size() - backup_header_bytes - backup_trailer_bytes) {
    return fmt::format("it declares {} bytes of state but holds {} (a truncated or padded copy?)",
                       state_bytes, file.size() - backup_header_bytes - backup_trailer_bytes);
  }
  const std::size_t body = file.size() - backup_trailer_bytes;
  const pool::Sha256 sum = sha256_of(file.first(body));
  if (std::memcmp(sum.data(), file.data() + body, sum.size()) != 0)
    return std::string("its SHA-256 does not match its contents: the file is damaged");
  out.index = LogIndex(load_u64le(file.data() + 16));
  out.cluster_id = load_u64le(file.data() + 24);
  out.state.assign(file.begin() + backup_header_bytes, file.begin() + static_cast<long>(body));
  return std::nullopt;
}

// GET /v1/snapshot. The state is taken at a linearizable point: the request goes through the
// ReadIndex path of a default read (replica_.read(): on a follower the leader confirms the read
// index), and once this node has applied up to it the state is serialised at the applied index,
// which then reflects every write acknowledged before the request began. A follower therefore
// answers from its own copy instead of forwarding: the leader is spared the serialisation, and
// the body need not fit the forwarding client's answer limit.
//
// The serialisation runs on the event loop, like the node's own periodic snapshots (it is the
// same StateMachine::snapshot()); its duration is returned in a Server-Timing header so that it
// can be watched (bench/backup.py measures it with a million idempotency keys).
void HttpApi::handle_backup(HttpRequest&& request, Respond respond) {
  if (backups_in_flight_ >= backups_in_flight_max) {
    respond(error_response(request, api::Error::overloaded,
                           "A backup is being taken on this node already; retry when it is done."));
    return;
  }
  ++backups_in_flight_;
  auto req = std::make_shared<HttpRequest>(std::move(request));
  replica_.read([this, req, respond = std::move(respond)](const Outcome& outcome) {
    RPOOL_ASSERT(backups_in_flight_ > 0);
    --backups_in_flight_;
    if (outcome.ec) return respond(outcome_response(*req, outcome));
    const auto started = Clock::now();
    const LogIndex index = replica_.applied();
    std::string body;
    {
      const Bytes state = replica_.pool().snapshot();
      body = encode_backup(index, replica_.cluster_id(), state);
    }  // the state's own copy goes before the answer is handed over
    const std::string sum = sha256_hex(as_bytes(body));
    const double ms =
        std::chrono::duration<double, std::milli>(Clock::now() - started).count();
    HttpResponse res{http::status::ok, req->version()};
    res.set(http::field::content_type, "application/octet-stream");
    res.set("Rpool-Snapshot-Index", std::to_string(index.value()));
    res.set("Rpool-Sha256", sum);
    res.set("Server-Timing", fmt::format("serialise;dur={:.1f}", ms));
    res.keep_alive(req->keep_alive());
    res.body() = std::move(body);
    res.prepare_payload();
    respond(std::move(res));
  });
}

}  // namespace rpool::node
