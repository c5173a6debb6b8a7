// Disaster recovery: `rpoold --force-new-cluster`, for when a majority of the voters is lost for
// good and the cluster can no longer commit anything.
//
// The surviving node keeps its data directory and its cluster id and makes itself the only voter
// by a membership change written durably to its own log before it starts: a config entry holding
// {voters: [self]}, appended after everything its log holds, in a term above every term it has
// seen (raft applies a config entry as soon as it is appended, §4.1, so the node starts as a
// one-voter cluster, elects itself and commits its whole log, the new entry included). Nothing
// the log holds is dropped: an entry acknowledged by the old cluster is on the survivor if the
// survivor was part of the majority that stored it (and the leader always is), and entries whose
// outcome was never known commit now too (their clients retry with their Idempotency-Key).
// Fresh nodes then join with `--join` and POST /v1/cluster/members, as for any running cluster.
//
// The lost members must never come back with their old data: their logs may hold entries of the
// old terms that the survivor's new history contradicts. Wipe them and add them back as new.
#pragma once

#include <optional>
#include <string>

#include "node/config.h"
#include "wal/log.h"
#include "wal/recovery.h"

namespace rpool::node {

struct ForceResult {
  enum class Status { forced, already_alone, empty, failed } status = Status::failed;
  std::string message;  // one line: what was done, or why not
};

// Makes `self` the only voter of the state `recovered` holds (see above), updating its hard
// state in place. Refuses an empty data directory (no entry, no snapshot): there is nothing to
// keep, and founding a cluster is what a start without the flag does. Synchronous; run before the
// log is handed to storage.
ForceResult force_new_cluster(wal::Recovered& recovered, const Config& config, NodeId self);

}  // namespace rpool::node
