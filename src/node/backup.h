// Backups: the file GET /v1/snapshot answers with, and `rpool-wal restore` reads.
//
// A backup is the whole state machine (every pool, the tombstones that carry deleted pools'
// request_id sequences, the idempotency table) as of a log index that a linearizable read fixed:
// the node's newest snapshot image plus the committed pool commands after it, which a restore
// applies (as every replica did) to reach the state at that index. Taking one costs the node's
// event loop a copy of the entries since its last snapshot, not a serialisation of the state; the
// file is assembled and checksummed on a thread of its own.
//
// FORMAT (version 1; all integers little-endian):
//   offset  size  field
//   0       8     magic "RPOOLBAK"
//   8       4     format version = 1
//   12      4     reserved, 0
//   16      8     index: the applied log index the backup's state is as of
//   24      8     cluster id of the cluster it was taken from (informational: a restore founds
//                 a new cluster with an id of its own)
//   32      8     image length S
//   40      S     image: pool::StateMachine::snapshot() bytes (they carry a SHA-256 of their own)
//   40+S    8     entry count N
//   then N times: 8 log index (increasing, <= index) | 4 length L | L pool::Command bytes
//   end-32  32    SHA-256 of every byte before it
// The HTTP answer's Rpool-Sha256 is the SHA-256 of the whole file, so `sha256sum` checks a copy.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/bytes.h"
#include "base/types.h"
#include "pool/state_machine.h"

namespace rpool::node {

inline constexpr std::size_t backup_header_bytes = 40;
inline constexpr std::size_t backup_trailer_bytes = 32;
inline constexpr std::uint32_t backup_version = 1;
// Backups built at once by one node. Each is the whole state in memory (about 120 MB with a
// million idempotency keys, bench/backup-size); a second request while one is being built is
// refused (503 overloaded) rather than doubling the memory and the work.
inline constexpr std::size_t backups_in_flight_max = 1;

struct Backup {
  LogIndex index;
  std::uint64_t cluster_id = 0;
  Bytes state;                                      // pool::StateMachine::snapshot() bytes
  std::vector<std::pair<LogIndex, Bytes>> entries;  // pool commands to apply after it
};

// The backup file, ready to be an HTTP body.
std::string encode_backup(LogIndex index, std::uint64_t cluster_id, ByteView state,
                          const std::vector<std::pair<LogIndex, Bytes>>& entries);
// Checks the framing and the checksum of a backup file and takes it apart. The state and the
// commands are not decoded here: restore_backup() does. On failure returns one sentence saying
// what is wrong.
std::optional<std::string> decode_backup(ByteView file, Backup& out);
// The state machine the backup describes: its image restored, its commands applied. On failure
// returns one sentence saying what is wrong.
std::optional<std::string> restore_backup(const Backup& backup, pool::StateMachine& out);
// Lower-case hex SHA-256 of `bytes` (the Rpool-Sha256 header).
std::string sha256_hex(ByteView bytes);

}  // namespace rpool::node
