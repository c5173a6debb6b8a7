// rpool-wal restore: the data directory of a founding member of a NEW cluster, built from a backup
// (GET /v1/snapshot, src/node/backup.h).
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

namespace rpool::tools {

struct RestoreOptions {
  std::string backup;    // the backup file
  std::string config;    // the new cluster's config (its members found the cluster)
  std::uint64_t id = 0;  // the member whose directory is written
  std::string data_dir;  // empty: the config's data_dir for `id`
};

// Checks the backup (framing, SHA-256, the state image decodes and its commands apply) before it
// writes anything, then writes into an empty or absent directory: the backup's state as a
// snapshot at the
// backup's index (term 1), the config's members as the membership, a hard state (term 1, no vote,
// committed up to the snapshot) and the new cluster's id. Every founding member is restored from
// the same backup and config: the cluster id is derived from both, so members restored from
// different backups, or started empty, refuse each other's handshakes. The written directory is
// then recovered as rpoold would, as a last check.
//
// Exit codes: 0 restored; 1 a bad backup, a non-empty directory or an I/O error (nothing is
// written for the first two); 2 a bad config or an id that is not a member.
int wal_restore(const RestoreOptions& options, std::ostream& out, std::ostream& err);

}  // namespace rpool::tools
