// Backups: the file GET /v1/snapshot answers with, and `rpool-wal restore` reads.
//
// A backup is the whole state machine (pool::StateMachine::snapshot(): every pool, the tombstones
// that carry deleted pools' request_id sequences, the idempotency table) as of a log index that a
// linearizable read fixed, wrapped so that the file alone says what it is and whether it is whole.
//
// FORMAT (version 1; all integers little-endian):
//   offset  size  field
//   0       8     magic "RPOOLBAK"
//   8       4     format version = 1
//   12      4     reserved, 0
//   16      8     index: the applied log index the state is as of
//   24      8     cluster id of the cluster it was taken from (informational: a restore founds
//                 a new cluster with an id of its own)
//   32      8     state length S
//   40      S     state: pool::StateMachine::snapshot() bytes (they carry a SHA-256 of their own)
//   40+S    32    SHA-256 of every byte before it
// The HTTP answer's Rpool-Sha256 is the SHA-256 of the whole file, so `sha256sum` checks a copy.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "base/bytes.h"
#include "base/types.h"

namespace rpool::node {

inline constexpr std::size_t backup_header_bytes = 40;
inline constexpr std::size_t backup_trailer_bytes = 32;
inline constexpr std::uint32_t backup_version = 1;
// Backups served at once by one node. Each is the whole state serialised in memory (tens of
// megabytes with a million idempotency keys) on the node's event loop; a second request while
// one is being built and handed over is refused (503 overloaded) rather than doubling both.
inline constexpr std::size_t backups_in_flight_max = 1;

struct Backup {
  LogIndex index;
  std::uint64_t cluster_id = 0;
  Bytes state;  // pool::StateMachine::snapshot() bytes
};

// The backup file of `state` at `index`, ready to be an HTTP body.
std::string encode_backup(LogIndex index, std::uint64_t cluster_id, ByteView state);
// Checks the framing and the checksum of a backup file and takes it apart. The state bytes are
// not decoded here: pool::StateMachine::restore() checks them. On failure returns one sentence
// saying what is wrong.
std::optional<std::string> decode_backup(ByteView file, Backup& out);
// Lower-case hex SHA-256 of `bytes` (the Rpool-Sha256 header).
std::string sha256_hex(ByteView bytes);

}  // namespace rpool::node
