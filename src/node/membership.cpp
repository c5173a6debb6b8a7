// Replica: membership changes and leadership transfer.
//
// Adding a node (thesis §4.1, §4.2.1): the leader appends a config entry making it a non-voting
// learner, whose context records its addresses so that every member (and every later snapshot)
// knows how to reach it; the leader replicates to it (by snapshot if the log was compacted);
// once the learner has everything committed, the leader appends a second entry promoting it to
// voter. The request is answered when that entry commits. Removing a node is one entry; a
// leader that removes itself steps down once it commits. One change at a time, and none during
// a leadership transfer: anything else gets errc::change_in_progress.
//
// A change is driven from the Ready cycle and the tick (drive_change); a leader change midway
// answers outcome_unknown, and repeating the same request continues from wherever the
// membership got to (an added node that is already a learner is only promoted).
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/assert.h"
#include "node/replica.h"

namespace rpool::node {
namespace {

std::optional<Member> parse_member_context(NodeId id, const std::string& text) {
  const auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("raft") || !j.contains("http") || !j["raft"].is_string() ||
      !j["http"].is_string()) {
    return std::nullopt;
  }
  auto raft_endpoint = parse_endpoint(j["raft"].get<std::string>());
  auto http_endpoint = parse_endpoint(j["http"].get<std::string>());
  if (!raft_endpoint || !http_endpoint) return std::nullopt;
  return Member{id, std::move(*raft_endpoint), std::move(*http_endpoint)};
}

Outcome not_leader() { return {make_error_code(errc::not_leader), {}}; }

// For with_core: answers the waiting request with the outcome if the input never runs.
std::function<void(const Outcome&)> abandon(std::shared_ptr<Replica::Done> waiting) {
  return [waiting](const Outcome& outcome) {
    if (*waiting) (*waiting)(outcome);
  };
}

}  // namespace

std::string member_context_json(const Member& m) {
  return nlohmann::json{{"raft", m.raft.to_string()}, {"http", m.http.to_string()}}.dump();
}

const Member* Replica::member_info(NodeId id) const {
  const auto it = members_.find(id);
  return it == members_.end() ? nullptr : &it->second;
}

void Replica::sync_peers() {
  const raft::Membership& m = core_->membership();
  if (peers_synced_ && m == synced_membership_ && core_->leader() == synced_leader_) return;
  peers_synced_ = true;
  synced_membership_ = m;
  synced_leader_ = core_->leader();
  // Addresses: the config's, overridden by what the membership recorded.
  members_.clear();
  for (const Member& c : options_.config.members) members_[c.id] = c;
  for (const auto& [id, text] : m.context) {
    if (auto parsed = parse_member_context(id, text)) {
      members_[id] = std::move(*parsed);
    } else {
      logger_.warn("a member's recorded addresses do not parse",
                   {{"node", id.value()}, {"context", text}});
    }
  }
  // Peers: every member, and the leader even when it is not one (a leader that removes itself
  // leads until the change commits, and must hear the acknowledgements); a node that knows no
  // membership yet (joining) talks to the config's members.
  std::map<NodeId, Endpoint> want;
  auto add = [&](NodeId id) {
    if (id == options_.id) return;
    if (const Member* info = member_info(id)) want[id] = info->raft;
  };
  for (NodeId id : m.voters) add(id);
  for (NodeId id : m.learners) add(id);
  if (core_->leader() != NodeId()) add(core_->leader());
  if (m.voters.empty() && m.learners.empty()) {
    for (const Member& c : options_.config.members) add(c.id);
  }
  for (const auto& [id, endpoint] : peers_) {
    if (!want.contains(id)) {
      transport_.remove_peer(id);
      logger_.info("peer removed", {{"node", id.value()}});
    }
  }
  for (const auto& [id, endpoint] : want) {
    const auto it = peers_.find(id);
    if (it != peers_.end() && it->second == endpoint) continue;
    transport_.set_peer(id, endpoint);
    logger_.info("peer set", {{"node", id.value()}, {"raft", endpoint.to_string()}});
  }
  peers_ = std::move(want);
}

// --- membership changes -----------------------------------------------------------------------

bool Replica::busy(const Done& done) {
  if (!change_ && !transfer_) return false;
  done({make_error_code(errc::change_in_progress),
        change_ ? "A membership change is under way; one at a time, retry when it is done."
                : "A leadership transfer is under way; one at a time, retry when it is done."});
  return true;
}

void Replica::add_member(Member member, Done done) {
  if (core_->role() != raft::Role::leader) return done(not_leader());
  auto shared = std::make_shared<Done>(std::move(done));
  with_core(
      [this, shared, member = std::move(member)]() mutable {
        if (!*shared) return;
        Done answer = std::move(*shared);
        if (core_->role() != raft::Role::leader) return answer(not_leader());
        if (change_ && change_->kind == MemberChange::Kind::add && change_->member == member) {
          change_->waiters.push_back(std::move(answer));  // the same request again: wait with it
          return;
        }
        if (busy(answer)) return;
        const raft::Membership& m = core_->membership();
        if (m.contains(member.id)) {
          const Member* known = member_info(member.id);
          if (known == nullptr || !(*known == member)) {
            return answer({make_error_code(errc::bad_request),
                           fmt::format("Node {} is already a member, with other addresses.",
                                       member.id.value())});
          }
          if (m.is_voter(member.id)) return answer({});
        } else {
          for (NodeId id : m.voters) {
            const Member* other = member_info(id);
            if (other != nullptr && (other->raft == member.raft || other->http == member.http)) {
              return answer(
                  {make_error_code(errc::bad_request),
                   fmt::format("Node {} already uses one of these addresses.", id.value())});
            }
          }
        }
        change_.emplace();
        change_->kind = MemberChange::Kind::add;
        change_->member = member;
        change_->deadline = env_.now() + options_.change_timeout;
        change_->waiters.push_back(std::move(answer));
        if (m.is_learner(member.id)) {
          change_->promoting = true;  // added earlier: only the promotion is left
          drive_change();
          return;
        }
        const std::error_code ec = core_->change_membership(
            {raft::ChangeType::add_learner, member.id, member_context_json(member)});
        if (ec) return end_change({ec, {}});
        change_->entry = core_->log().last_index();
        change_->entry_term = core_->current_term();
        logger_.info("adding a member", {{"node", member.id.value()},
                                         {"raft", member.raft.to_string()},
                                         {"http", member.http.to_string()},
                                         {"index", change_->entry.value()}});
      },
      abandon(shared));
}

void Replica::remove_member(NodeId id, Done done) {
  if (id == NodeId())
    return done({make_error_code(errc::not_found), "A member id is a positive integer."});
  if (core_->role() != raft::Role::leader) return done(not_leader());
  auto shared = std::make_shared<Done>(std::move(done));
  with_core(
      [this, shared, id] {
        if (!*shared) return;
        Done answer = std::move(*shared);
        if (core_->role() != raft::Role::leader) return answer(not_leader());
        if (change_ && change_->kind == MemberChange::Kind::remove && change_->member.id == id) {
          change_->waiters.push_back(std::move(answer));
          return;
        }
        if (busy(answer)) return;
        if (!core_->membership().contains(id)) {
          return answer({make_error_code(errc::not_found),
                         fmt::format("Node {} is not a member.", id.value())});
        }
        change_.emplace();
        change_->kind = MemberChange::Kind::remove;
        change_->member.id = id;
        change_->deadline = env_.now() + options_.change_timeout;
        change_->waiters.push_back(std::move(answer));
        if (const std::error_code ec =
                core_->change_membership({raft::ChangeType::remove, id, {}})) {
          return end_change({ec, {}});
        }
        change_->entry = core_->log().last_index();
        change_->entry_term = core_->current_term();
        logger_.info("removing a member",
                     {{"node", id.value()}, {"index", change_->entry.value()}});
      },
      abandon(shared));
}

void Replica::drive_change() {
  if (!change_) return;
  MemberChange& c = *change_;
  if (c.committed) {
    c.committed = false;
    c.entry = LogIndex();
    if (c.kind == MemberChange::Kind::add && !c.promoting) {
      c.promoting = true;
      logger_.info("learner added; promoting it once it has caught up",
                   {{"node", c.member.id.value()}});
    } else {
      logger_.info(c.kind == MemberChange::Kind::add ? "member added" : "member removed",
                   {{"node", c.member.id.value()}});
      end_change({});
      return;
    }
  }
  if (c.lost) {
    end_change({make_error_code(errc::outcome_unknown),
                "The membership change was lost in a leader change; repeat the request to see it "
                "through."});
    return;
  }
  if (core_->role() != raft::Role::leader) {
    // A leader that removed itself steps down as the entry commits, before it is applied here.
    if (c.entry != LogIndex() && core_->log().commit_index() >= c.entry &&
        core_->log().term(c.entry) == c.entry_term)
      return;
    end_change(
        {make_error_code(errc::outcome_unknown),
         "Leadership moved during the membership change; repeat the request to see it through."});
    return;
  }
  if (env_.now() >= c.deadline) {
    end_change({make_error_code(errc::outcome_unknown),
                c.promoting ? fmt::format("Node {} is still catching up as a non-voting learner; "
                                          "repeat the request to keep waiting.",
                                          c.member.id.value())
                            : "The membership change did not commit in time; repeat the request."});
    return;
  }
  if (c.kind == MemberChange::Kind::add && c.promoting && c.entry == LogIndex()) {
    const std::error_code ec =
        core_->change_membership({raft::ChangeType::promote, c.member.id, {}});
    if (ec == raft::errc::not_caught_up || ec == raft::errc::change_in_progress)
      return;  // next time
    if (ec) {
      end_change({ec, {}});
      return;
    }
    c.entry = core_->log().last_index();
    c.entry_term = core_->current_term();
    logger_.info("promoting a learner",
                 {{"node", c.member.id.value()}, {"index", c.entry.value()}});
    schedule_ready();
  }
}

void Replica::end_change(const Outcome& outcome) {
  RPOOL_ASSERT(change_);
  std::vector<Done> waiters = std::move(change_->waiters);
  change_.reset();
  Outcome out = outcome;
  // The core's refusals, as the replica's errors.
  if (out.ec == raft::errc::change_in_progress) {
    out = {make_error_code(errc::change_in_progress),
           "A membership change is under way, or the leader has not yet committed an entry of its "
           "term; retry shortly."};
  } else if (out.ec == raft::errc::transfer_in_progress) {
    out = {make_error_code(errc::change_in_progress),
           "A leadership transfer is under way; retry when it is done."};
  } else if (out.ec == raft::errc::not_leader || out.ec == raft::errc::not_caught_up) {
    out = {make_error_code(errc::outcome_unknown),
           out.message.empty() ? "The membership change did not finish; repeat the request."
                               : out.message};
  } else if (out.ec && out.ec.category() != node_category()) {
    out = {make_error_code(errc::bad_request),
           fmt::format("The membership change is not possible: {}.", out.ec.message())};
  }
  for (Done& done : waiters) done(out);
}

// --- leadership transfer ------------------------------------------------------------------------

void Replica::transfer_leader(NodeId to, Done done) {
  if (core_->role() != raft::Role::leader) return done(not_leader());
  auto shared = std::make_shared<Done>(std::move(done));
  with_core(
      [this, shared, to] {
        if (!*shared) return;
        Done answer = std::move(*shared);
        if (core_->role() != raft::Role::leader) return answer(not_leader());
        if (transfer_ && transfer_->to == to) {
          transfer_->waiters.push_back(std::move(answer));
          return;
        }
        if (busy(answer)) return;
        if (to == options_.id) return answer({});
        if (!core_->membership().is_voter(to)) {
          return answer({make_error_code(errc::bad_request),
                         fmt::format("Node {} is not a voting member.", to.value())});
        }
        if (const std::error_code ec = core_->transfer_leader(to)) {
          if (ec == raft::errc::transfer_in_progress) {
            return answer({make_error_code(errc::change_in_progress),
                           "A leadership transfer is already under way."});
          }
          if (ec == raft::errc::not_leader)
            return answer(
                {make_error_code(errc::no_leader), "Leadership is moving; retry shortly."});
          return answer({make_error_code(errc::bad_request),
                         fmt::format("Cannot transfer to node {}: {}", to.value(), ec.message())});
        }
        transfer_.emplace();
        transfer_->to = to;
        transfer_->deadline =
            env_.now() + 2 * std::chrono::milliseconds(options_.config.raft.election_timeout_ms);
        transfer_->waiters.push_back(std::move(answer));
        logger_.info("transferring leadership",
                     {{"to", to.value()}, {"term", core_->current_term().value()}});
      },
      abandon(shared));
}

void Replica::drive_transfer() {
  if (!transfer_) return;
  if (core_->role() != raft::Role::leader && core_->leader() == transfer_->to) {
    end_transfer(true, {});
  } else if (core_->role() == raft::Role::leader && core_->lead_transferee() == NodeId()) {
    end_transfer(
        false,
        "The leadership transfer was abandoned (the target did not catch up in time); retry it.");
  } else if (env_.now() >= transfer_->deadline) {
    end_transfer(false, "The leadership transfer did not complete in time; retry it.");
  }
}

void Replica::end_transfer(bool done, std::string message) {
  RPOOL_ASSERT(transfer_);
  Transfer t = std::move(*transfer_);
  transfer_.reset();
  logger_.info(done ? "leadership transferred" : "leadership transfer failed",
               {{"to", t.to.value()}, {"term", core_->current_term().value()}});
  const Outcome outcome =
      done ? Outcome{} : Outcome{make_error_code(errc::outcome_unknown), std::move(message)};
  for (Done& waiter : t.waiters) waiter(outcome);
  if (stopping_) maybe_drained();
}

void Replica::start_shutdown_transfer() {
  with_core([this] {
    if (core_->role() != raft::Role::leader || transfer_) return;
    // The most up-to-date voter takes over at once (thesis §3.10): no election timeout.
    NodeId best;
    LogIndex best_match;
    for (NodeId id : core_->membership().voters) {
      if (id == options_.id) continue;
      const raft::Progress* pr = core_->progress(id);
      if (pr != nullptr && pr->recent_active &&
          (best == NodeId() || pr->match_index > best_match)) {
        best = id;
        best_match = pr->match_index;
      }
    }
    if (best == NodeId() || core_->transfer_leader(best)) return;
    transfer_.emplace();
    transfer_->to = best;
    transfer_->deadline =
        env_.now() + 2 * std::chrono::milliseconds(options_.config.raft.election_timeout_ms);
    logger_.info("shutting down: transferring leadership",
                 {{"to", best.value()}, {"term", core_->current_term().value()}});
  });
}

}  // namespace rpool::node
