#include "node/disaster.h"

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "base/assert.h"
#include "node/replica.h"
#include "raft/types.h"

namespace rpool::node {
namespace {

constexpr std::uint8_t config_kind = static_cast<std::uint8_t>(raft::EntryType::config);

}  // namespace

ForceResult force_new_cluster(wal::Recovered& recovered, const Config& config, NodeId self) {
  wal::Log& log = *recovered.log;
  const std::string& dir = log.dir();
  const bool no_entries = log.last_index() < log.first_index();
  if (no_entries && !recovered.snapshot) {
    return {ForceResult::Status::empty,
            fmt::format("--force-new-cluster: the data directory {} holds no log entry and no "
                        "snapshot: there is nothing to keep (start a survivor's data directory)",
                        dir)};
  }

  // The membership in force: the newest config entry of the log, else the snapshot's, else the
  // founding members of the config (a log that never held a config entry).
  raft::Membership membership;
  for (const Member& m : config.members) {
    membership.voters.push_back(m.id);
    membership.context[m.id] = member_context_json(m);
  }
  std::sort(membership.voters.begin(), membership.voters.end());
  Term last_term = log.last_term();
  if (recovered.snapshot) {
    if (!raft::decode_membership(recovered.snapshot->metadata, membership)) {
      return {
          ForceResult::Status::failed,
          fmt::format("--force-new-cluster: the membership of snapshot {} in {} does not decode",
                      recovered.snapshot->index, dir)};
    }
    last_term = std::max(last_term, recovered.snapshot->term);
  }
  if (!no_entries) {
    std::vector<wal::Entry> entries;
    if (const auto ec = log.read(log.first_index(), log.last_index().next(), entries)) {
      return {ForceResult::Status::failed,
              fmt::format("--force-new-cluster: cannot read the log in {}: {} {}", dir,
                          ec.message(), log.error_detail())};
    }
    for (const wal::Entry& e : entries) {
      if (e.kind != config_kind) continue;
      if (recovered.snapshot && e.index <= recovered.snapshot->index) continue;
      if (!raft::decode_membership(e.payload, membership)) {
        return {ForceResult::Status::failed,
                fmt::format("--force-new-cluster: the config entry {} in {} does not decode",
                            e.index, dir)};
      }
    }
  }
  const std::string before = fmt::format("voters {} learners {}", fmt::join(membership.voters, ","),
                                         fmt::join(membership.learners, ","));
  if (membership.voters == std::vector<NodeId>{self} && membership.learners.empty()) {
    return {ForceResult::Status::already_alone,
            fmt::format("--force-new-cluster: node {} is already the only voter; nothing to change",
                        self)};
  }

  raft::Membership alone;
  alone.voters = {self};
  if (const auto it = membership.context.find(self); it != membership.context.end()) {
    alone.context[self] = it->second;
  } else {
    const Member* me = config.member(self);
    RPOOL_ASSERT(me != nullptr);  // rpoold checks --id against the config first
    alone.context[self] = member_context_json(*me);
  }
  RPOOL_ASSERT(alone.valid());

  // A term above every term this node has seen, so that no leader of the old cluster can have
  // written a different entry at this index in this term. The hard state goes first: a crash
  // before the entry is durable leaves only a higher term (harmless; running the command again
  // goes one term higher still), never an entry of a term the hard state has not reached.
  wal::HardState& hard = recovered.hard_state;
  const Term term(std::max(hard.current_term, last_term).value() + 1);
  const wal::HardState forced{term, NodeId(), hard.commit_index};
  if (const auto ec = log.save_hard_state(forced)) {
    return {ForceResult::Status::failed,
            fmt::format("--force-new-cluster: cannot write the hard state in {}: {} {}", dir,
                        ec.message(), log.error_detail())};
  }
  hard = forced;
  const LogIndex index = log.last_index().next();
  const wal::Entry entry{term, index, config_kind, raft::encode_membership(alone)};
  if (const auto ec = log.append(std::span<const wal::Entry>(&entry, 1)); ec) {
    return {ForceResult::Status::failed,
            fmt::format("--force-new-cluster: cannot append to the log in {}: {} {}", dir,
                        ec.message(), log.error_detail())};
  }
  if (const auto ec = log.sync()) {
    return {ForceResult::Status::failed,
            fmt::format("--force-new-cluster: cannot sync the log in {}: {} {}", dir, ec.message(),
                        log.error_detail())};
  }
  return {ForceResult::Status::forced,
          fmt::format("FORCED A NEW CLUSTER: node {} is now the only voter (was: {}); the "
                      "membership change is entry {} of term {} in {}. The lost members must "
                      "never return with their old data: wipe them and add them back with --join",
                      self, before, index, term, dir)};
}

}  // namespace rpool::node
