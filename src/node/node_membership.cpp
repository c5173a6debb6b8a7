// NodeHost: membership changes and leadership transfer (CONTRACT.md's admin endpoints).
//
// Adding a node (thesis §4.1, §4.2.1): the leader appends a config entry making it a non-voting
// learner, whose context records its addresses so that every member (and every later snapshot)
// knows how to reach it; the leader replicates to it (by snapshot if the log was compacted);
// once the learner has everything committed, the leader appends a second entry promoting it to
// voter. The request is answered when that entry commits. Removing a node is one entry; a
// leader that removes itself steps down once it commits. One change at a time, and none during
// a leadership transfer: anything else gets 409 membership_change_in_progress.
//
// A change is driven from the Ready cycle and the tick (drive_change); a leader change midway
// answers 504 outcome_unknown, and repeating the same request continues from wherever the
// membership got to (an added node that is already a learner is only promoted).
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/assert.h"
#include "node/node_host.h"
#include "node/node_internal.h"

namespace rpool::node {
namespace {

using Clock = std::chrono::steady_clock;

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

}  // namespace

std::string detail::member_context_json(const Member& m) {
  return nlohmann::json{{"raft", m.raft.to_string()}, {"http", m.http.to_string()}}.dump();
}

const Member* NodeHost::member_info(NodeId id) const {
  const auto it = members_.find(id);
  return it == members_.end() ? nullptr : &it->second;
}

void NodeHost::sync_peers() {
  const raft::Membership& m = core_->membership();
  if (peers_synced_ && m == synced_membership_ && core_->leader() == synced_leader_) return;
  peers_synced_ = transport_ != nullptr;
  synced_membership_ = m;
  synced_leader_ = core_->leader();
  // Addresses: the config's, overridden by what the membership recorded.
  members_.clear();
  for (const Member& c : options_.config.members) members_[c.id] = c;
  for (const auto& [id, text] : m.context) {
    if (auto parsed = parse_member_context(id, text)) {
      members_[id] = std::move(*parsed);
    } else {
      logger_.warn("a member's recorded addresses do not parse", {{"node", id.value()}, {"context", text}});
    }
  }
  if (!transport_) return;
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
      transport_->remove_peer(id);
      logger_.info("peer removed", {{"node", id.value()}});
    }
  }
  for (const auto& [id, endpoint] : want) {
    const auto it = peers_.find(id);
    if (it != peers_.end() && it->second == endpoint) continue;
    transport_->set_peer(id, endpoint.host, endpoint.port);
    logger_.info("peer set", {{"node", id.value()}, {"raft", endpoint.to_string()}});
  }
  peers_ = std::move(want);
}

nlohmann::json NodeHost::members_json() const {
  nlohmann::json members = nlohmann::json::array();
  const raft::Membership& m = core_->membership();
  auto add = [&](NodeId id, bool voter) {
    const Member* member = member_info(id);
    members.push_back({{"id", id.value()},
                       {"raft", member ? member->raft.to_string() : ""},
                       {"http", member ? member->http.to_string() : ""},
                       {"voter", voter}});
  };
  for (NodeId id : m.voters) add(id, true);
  for (NodeId id : m.learners) add(id, false);
  return members;
}

// --- membership changes -----------------------------------------------------------------------

bool NodeHost::answered_busy(const HttpRequest& request, const Respond& respond) {
  if (!change_ && !transfer_) return false;
  respond(error_response(request, api::Error::membership_change_in_progress,
                         change_ ? "A membership change is under way; one at a time, retry when it is done."
                                 : "A leadership transfer is under way; one at a time, retry when it is done."));
  return true;
}

void NodeHost::handle_add_member(HttpRequest&& request, Respond answer) {
  const auto body = nlohmann::json::parse(request.body(), nullptr, false);
  std::optional<Endpoint> raft_endpoint;
  std::optional<Endpoint> http_endpoint;
  if (body.is_object() && body.size() == 3 && body.contains("id") && body["id"].is_number_unsigned() &&
      body["id"].get<std::uint64_t>() != 0 && body.contains("raft") && body["raft"].is_string() &&
      body.contains("http") && body["http"].is_string()) {
    raft_endpoint = parse_endpoint(body["raft"].get<std::string>());
    http_endpoint = parse_endpoint(body["http"].get<std::string>());
  }
  if (!raft_endpoint || !http_endpoint) {
    answer(error_response(request, api::Error::bad_request,
                           R"(The body must be {"id": <node id>, "raft": "host:port", "http": "host:port"}.)"));
    return;
  }
  Member member{NodeId(body["id"].get<std::uint64_t>()), std::move(*raft_endpoint), std::move(*http_endpoint)};
  if (core_->role() != raft::Role::leader) {
    forward(std::move(request), std::move(answer), options_.change_timeout + options_.write_timeout);
    return;
  }
  auto req = std::make_shared<HttpRequest>(std::move(request));
  auto held = std::make_shared<Held>(Held{req, std::move(answer)});
  with_core([this, req, held, member = std::move(member)]() mutable {
    Respond respond = std::move(held->respond);
    if (core_->role() != raft::Role::leader) {
      forward(std::move(*req), std::move(respond), options_.change_timeout + options_.write_timeout);
      return;
    }
    if (change_ && change_->kind == MemberChange::Kind::add && change_->member == member) {
      change_->waiters.emplace_back(req, std::move(respond));  // the same request again: wait with it
      return;
    }
    if (answered_busy(*req, respond)) return;
    const raft::Membership& m = core_->membership();
    if (m.contains(member.id)) {
      const Member* known = member_info(member.id);
      if (known == nullptr || !(*known == member)) {
        respond(error_response(*req, api::Error::bad_request,
                               fmt::format("Node {} is already a member, with other addresses.", member.id.value())));
        return;
      }
      if (m.is_voter(member.id)) {
        respond(json_response(*req, 200, fmt::format(R"({{"id":{},"voter":true,"members":{}}})", member.id.value(), members_json().dump())));
        return;
      }
    } else {
      for (NodeId id : m.voters) {
        const Member* other = member_info(id);
        if (other != nullptr && (other->raft == member.raft || other->http == member.http)) {
          respond(error_response(*req, api::Error::bad_request,
                                 fmt::format("Node {} already uses one of these addresses.", id.value())));
          return;
        }
      }
    }
    change_.emplace();
    change_->kind = MemberChange::Kind::add;
    change_->member = member;
    change_->deadline = Clock::now() + options_.change_timeout;
    change_->waiters.emplace_back(req, std::move(respond));
    if (m.is_learner(member.id)) {
      change_->promoting = true;  // added earlier: only the promotion is left
      drive_change();
      return;
    }
    const std::error_code ec = core_->change_membership(
        {raft::ChangeType::add_learner, member.id, detail::member_context_json(member)});
    if (ec) {
      end_change(ec);
      return;
    }
    change_->entry = core_->log().last_index();
    change_->entry_term = core_->current_term();
    logger_.info("adding a member", {{"node", member.id.value()}, {"raft", member.raft.to_string()},
                                     {"http", member.http.to_string()}, {"index", change_->entry.value()}});
  }, held);
}

void NodeHost::handle_remove_member(HttpRequest&& request, Respond answer, NodeId id) {
  if (id == NodeId()) {
    answer(error_response(request, api::Error::not_found, "A member id is a positive integer."));
    return;
  }
  if (core_->role() != raft::Role::leader) {
    forward(std::move(request), std::move(answer), options_.change_timeout + options_.write_timeout);
    return;
  }
  auto req = std::make_shared<HttpRequest>(std::move(request));
  auto held = std::make_shared<Held>(Held{req, std::move(answer)});
  with_core([this, req, held, id]() mutable {
    Respond respond = std::move(held->respond);
    if (core_->role() != raft::Role::leader) {
      forward(std::move(*req), std::move(respond), options_.change_timeout + options_.write_timeout);
      return;
    }
    if (change_ && change_->kind == MemberChange::Kind::remove && change_->member.id == id) {
      change_->waiters.emplace_back(req, std::move(respond));
      return;
    }
    if (answered_busy(*req, respond)) return;
    if (!core_->membership().contains(id)) {
      respond(error_response(*req, api::Error::not_found, fmt::format("Node {} is not a member.", id.value())));
      return;
    }
    change_.emplace();
    change_->kind = MemberChange::Kind::remove;
    change_->member.id = id;
    change_->deadline = Clock::now() + options_.change_timeout;
    change_->waiters.emplace_back(req, std::move(respond));
    if (const std::error_code ec = core_->change_membership({raft::ChangeType::remove, id, {}})) {
      end_change(ec);
      return;
    }
    change_->entry = core_->log().last_index();
    change_->entry_term = core_->current_term();
    logger_.info("removing a member", {{"node", id.value()}, {"index", change_->entry.value()}});
  }, held);
}

void NodeHost::drive_change() {
  if (!change_) return;
  MemberChange& c = *change_;
  if (c.committed) {
    c.committed = false;
    c.entry = LogIndex();
    if (c.kind == MemberChange::Kind::add && !c.promoting) {
      c.promoting = true;
      logger_.info("learner added; promoting it once it has caught up", {{"node", c.member.id.value()}});
    } else {
      logger_.info(c.kind == MemberChange::Kind::add ? "member added" : "member removed", {{"node", c.member.id.value()}});
      end_change({}, fmt::format(R"({{"id":{},"{}":true,"members":{}}})", c.member.id.value(),
                                 c.kind == MemberChange::Kind::add ? "voter" : "removed", members_json().dump()));
      return;
    }
  }
  if (c.lost) {
    end_change(make_error_code(raft::errc::not_leader), "The membership change was lost in a leader change; repeat the request to see it through.");
    return;
  }
  if (core_->role() != raft::Role::leader) {
    // A leader that removed itself steps down as the entry commits, before it is applied here.
    if (c.entry != LogIndex() && core_->log().commit_index() >= c.entry && core_->log().term(c.entry) == c.entry_term) return;
    end_change(make_error_code(raft::errc::not_leader), "Leadership moved during the membership change; repeat the request to see it through.");
    return;
  }
  if (Clock::now() >= c.deadline) {
    end_change(make_error_code(raft::errc::not_caught_up),
               c.promoting ? fmt::format("Node {} is still catching up as a non-voting learner; repeat the request to keep waiting.", c.member.id.value())
                           : "The membership change did not commit in time; repeat the request.");
    return;
  }
  if (c.kind == MemberChange::Kind::add && c.promoting && c.entry == LogIndex()) {
    const std::error_code ec = core_->change_membership({raft::ChangeType::promote, c.member.id, {}});
    if (ec == raft::errc::not_caught_up || ec == raft::errc::change_in_progress) return;  // next time
    if (ec) {
      end_change(ec);
      return;
    }
    c.entry = core_->log().last_index();
    c.entry_term = core_->current_term();
    logger_.info("promoting a learner", {{"node", c.member.id.value()}, {"index", c.entry.value()}});
    schedule_ready();
  }
}

void NodeHost::end_change(std::error_code ec, std::string body) {
  RPOOL_ASSERT(change_);
  std::vector<Waiter> waiters = std::move(change_->waiters);
  change_.reset();
  for (auto& [req, respond] : waiters) {
    if (!ec) {
      respond(json_response(*req, 200, body));
    } else if (ec == raft::errc::change_in_progress || ec == raft::errc::transfer_in_progress) {
      respond(error_response(*req, api::Error::membership_change_in_progress,
                             ec == raft::errc::change_in_progress
                                 ? "A membership change is under way, or the leader has not yet committed an entry of its term; retry shortly."
                                 : "A leadership transfer is under way; retry when it is done."));
    } else if (ec == raft::errc::not_leader || ec == raft::errc::not_caught_up) {
      respond(error_response(*req, api::Error::outcome_unknown,
                             body.empty() ? "The membership change did not finish; repeat the request." : body));
    } else {
      respond(error_response(*req, api::Error::bad_request, fmt::format("The membership change is not possible: {}.", ec.message())));
    }
  }
}

// --- leadership transfer ------------------------------------------------------------------------

void NodeHost::handle_transfer(HttpRequest&& request, Respond answer) {
  const auto body = nlohmann::json::parse(request.body(), nullptr, false);
  if (body.is_discarded() || !body.is_object() || !body.contains("to") || !body["to"].is_number_unsigned() ||
      body.size() != 1) {
    answer(error_response(request, api::Error::bad_request, R"(The body must be {"to": <node id>}.)"));
    return;
  }
  const NodeId to(body["to"].get<std::uint64_t>());
  if (core_->role() != raft::Role::leader) {
    forward(std::move(request), std::move(answer));
    return;
  }
  auto req = std::make_shared<HttpRequest>(std::move(request));
  auto held = std::make_shared<Held>(Held{req, std::move(answer)});
  with_core([this, req, held, to]() mutable {
    Respond respond = std::move(held->respond);
    if (core_->role() != raft::Role::leader) {
      forward(std::move(*req), std::move(respond));
      return;
    }
    if (transfer_ && transfer_->to == to) {
      transfer_->waiters.emplace_back(req, std::move(respond));
      return;
    }
    if (answered_busy(*req, respond)) return;
    if (to == options_.id) {
      respond(json_response(*req, 200, fmt::format(R"({{"leader_id":{},"term":{}}})", to.value(), core_->current_term().value())));
      return;
    }
    if (!core_->membership().is_voter(to)) {
      respond(error_response(*req, api::Error::bad_request, fmt::format("Node {} is not a voting member.", to.value())));
      return;
    }
    if (const std::error_code ec = core_->transfer_leader(to)) {
      if (ec == raft::errc::transfer_in_progress) {
        respond(error_response(*req, api::Error::membership_change_in_progress, "A leadership transfer is already under way."));
      } else if (ec == raft::errc::not_leader) {
        respond(error_response(*req, api::Error::no_leader, "Leadership is moving; retry shortly."));
      } else {
        respond(error_response(*req, api::Error::bad_request, fmt::format("Cannot transfer to node {}: {}", to.value(), ec.message())));
      }
      return;
    }
    transfer_.emplace();
    transfer_->to = to;
    transfer_->deadline = Clock::now() + 2 * std::chrono::milliseconds(options_.config.raft.election_timeout_ms);
    transfer_->waiters.emplace_back(req, std::move(respond));
    logger_.info("transferring leadership", {{"to", to.value()}, {"term", core_->current_term().value()}});
  }, held);
}

void NodeHost::drive_transfer() {
  if (!transfer_) return;
  if (core_->role() != raft::Role::leader && core_->leader() == transfer_->to) {
    end_transfer(true, {});
  } else if (core_->role() == raft::Role::leader && core_->lead_transferee() == NodeId()) {
    end_transfer(false, "The leadership transfer was abandoned (the target did not catch up in time); retry it.");
  } else if (Clock::now() >= transfer_->deadline) {
    end_transfer(false, "The leadership transfer did not complete in time; retry it.");
  }
}

void NodeHost::end_transfer(bool done, std::string_view message) {
  RPOOL_ASSERT(transfer_);
  Transfer t = std::move(*transfer_);
  transfer_.reset();
  logger_.info(done ? "leadership transferred" : "leadership transfer failed",
               {{"to", t.to.value()}, {"term", core_->current_term().value()}});
  for (auto& [req, respond] : t.waiters) {
    if (done) {
      respond(json_response(*req, 200, fmt::format(R"({{"leader_id":{},"term":{}}})", t.to.value(), core_->current_term().value())));
    } else {
      respond(error_response(*req, api::Error::outcome_unknown, message));
    }
  }
  if (stopping_) maybe_finish_shutdown();
}

void NodeHost::start_shutdown_transfer() {
  with_core([this] {
    if (core_->role() != raft::Role::leader || transfer_) return;
    // The most up-to-date voter takes over at once (thesis §3.10): no election timeout.
    NodeId best;
    LogIndex best_match;
    for (NodeId id : core_->membership().voters) {
      if (id == options_.id) continue;
      const raft::Progress* pr = core_->progress(id);
      if (pr != nullptr && pr->recent_active && (best == NodeId() || pr->match_index > best_match)) {
        best = id;
        best_match = pr->match_index;
      }
    }
    if (best == NodeId() || core_->transfer_leader(best)) return;
    transfer_.emplace();
    transfer_->to = best;
    transfer_->for_shutdown = true;
    transfer_->deadline = Clock::now() + 2 * std::chrono::milliseconds(options_.config.raft.election_timeout_ms);
    logger_.info("shutting down: transferring leadership", {{"to", best.value()}, {"term", core_->current_term().value()}});
  });
}

}  // namespace rpool::node
