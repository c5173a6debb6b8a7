#include "raft/types.h"

#include <algorithm>

#include "base/assert.h"

namespace rpool::raft {

namespace {

constexpr std::uint8_t membership_version = 2;
constexpr std::uint8_t message_version = 1;
// Bounds that keep a malformed input from asking for absurd allocations.
constexpr std::uint32_t members_max = 1024;
constexpr std::uint32_t message_entries_max = 1u << 20;

bool sorted_unique_nonzero(const std::vector<NodeId>& ids) {
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] == NodeId(0)) return false;
    if (i > 0 && !(ids[i - 1] < ids[i])) return false;
  }
  return true;
}

void write_ids(ByteWriter& w, const std::vector<NodeId>& ids) {
  w.u32(static_cast<std::uint32_t>(ids.size()));
  for (NodeId id : ids) w.u64(id.value());
}

bool read_ids(ByteReader& r, std::vector<NodeId>& ids) {
  const std::uint32_t n = r.u32();
  if (!r.ok() || n > members_max || r.remaining() < std::size_t{n} * 8) return false;
  ids.clear();
  ids.reserve(n);
  for (std::uint32_t i = 0; i < n; ++i) ids.emplace_back(r.u64());
  return r.ok();
}

void write_membership(ByteWriter& w, const Membership& m) {
  w.u8(membership_version);
  write_ids(w, m.voters);
  write_ids(w, m.learners);
  w.u32(static_cast<std::uint32_t>(m.context.size()));
  for (const auto& [id, text] : m.context) {
    w.u64(id.value());
    w.bytes32(as_bytes(text));
  }
}

bool read_membership(ByteReader& r, Membership& m) {
  const std::uint8_t version = r.u8();
  if (version != 1 && version != membership_version) return false;
  if (!read_ids(r, m.voters)) return false;
  if (!read_ids(r, m.learners)) return false;
  if (version >= 2) {
    const std::uint32_t n = r.u32();
    if (!r.ok() || n > members_max) return false;
    NodeId previous;
    for (std::uint32_t i = 0; i < n; ++i) {
      const NodeId id(r.u64());
      const ByteView text = r.bytes32();
      if (!r.ok() || !(previous < id) || text.size() > member_context_bytes_max) return false;
      m.context.emplace(id, std::string(as_chars(text)));
      previous = id;
    }
  }
  return r.ok() && m.valid();
}

}  // namespace

bool Membership::is_voter(NodeId id) const {
  return std::binary_search(voters.begin(), voters.end(), id);
}

bool Membership::is_learner(NodeId id) const {
  return std::binary_search(learners.begin(), learners.end(), id);
}

bool Membership::valid() const {
  if (!sorted_unique_nonzero(voters) || !sorted_unique_nonzero(learners)) return false;
  for (const auto& [id, text] : context) {
    if (!contains(id) || text.size() > member_context_bytes_max) return false;
  }
  for (NodeId id : learners) {
    if (is_voter(id)) return false;
  }
  return true;
}

void encode_membership(const Membership& m, Bytes& out) {
  RPOOL_ASSERT(m.valid());
  ByteWriter w(out);
  write_membership(w, m);
}

Bytes encode_membership(const Membership& m) {
  Bytes out;
  encode_membership(m, out);
  return out;
}

bool decode_membership(ByteView in, Membership& out) {
  ByteReader r(in);
  Membership m;
  if (!read_membership(r, m) || !r.at_end()) return false;
  out = std::move(m);
  return true;
}

const char* to_string(MessageType t) {
  switch (t) {
    case MessageType::pre_vote: return "pre_vote";
    case MessageType::pre_vote_resp: return "pre_vote_resp";
    case MessageType::vote: return "vote";
    case MessageType::vote_resp: return "vote_resp";
    case MessageType::append: return "append";
    case MessageType::append_resp: return "append_resp";
    case MessageType::heartbeat: return "heartbeat";
    case MessageType::heartbeat_resp: return "heartbeat_resp";
    case MessageType::snapshot: return "snapshot";
    case MessageType::snapshot_resp: return "snapshot_resp";
    case MessageType::timeout_now: return "timeout_now";
    case MessageType::read_index: return "read_index";
    case MessageType::read_index_resp: return "read_index_resp";
  }
  return "unknown";
}

// Message encoding, all integers little-endian:
//   u8 version = 1, u8 type, u64 from, u64 to, u64 term, u64 log_term, u64 index, u64 commit,
//   u64 reject_hint, u8 reject, u64 context,
//   u32 entry count, per entry: u64 term, u64 index, u8 type, u32 length, data
//   u8 has_snapshot; if 1: u64 index, u64 term, membership, u64 offset, u64 snapshot_bytes,
//   u32 length, data, u8 done
//   snapshot_resp only: u64 offset, u8 done (the answer to a chunk: the next byte wanted, or
//   installed / not needed; without them the leader cannot tell the two apart)
void encode_message(const Message& m, Bytes& out) {
  ByteWriter w(out);
  w.u8(message_version);
  w.u8(static_cast<std::uint8_t>(m.type));
  w.u64(m.from.value());
  w.u64(m.to.value());
  w.u64(m.term.value());
  w.u64(m.log_term.value());
  w.u64(m.index.value());
  w.u64(m.commit.value());
  w.u64(m.reject_hint.value());
  w.u8(m.reject ? 1 : 0);
  w.u64(m.context);
  w.u32(static_cast<std::uint32_t>(m.entries.size()));
  for (const Entry& e : m.entries) {
    w.u64(e.term.value());
    w.u64(e.index.value());
    w.u8(static_cast<std::uint8_t>(e.type));
    w.bytes32(e.data);
  }
  const bool has_snapshot = m.type == MessageType::snapshot;
  w.u8(has_snapshot ? 1 : 0);
  if (has_snapshot) {
    w.u64(m.snapshot.index.value());
    w.u64(m.snapshot.term.value());
    write_membership(w, m.snapshot.membership);
    w.u64(m.offset);
    w.u64(m.snapshot_bytes);
    w.bytes32(m.data);
    w.u8(m.done ? 1 : 0);
  }
  if (m.type == MessageType::snapshot_resp) {
    w.u64(m.offset);
    w.u8(m.done ? 1 : 0);
  }
}

bool decode_message(ByteView in, Message& out) {
  ByteReader r(in);
  Message m;
  if (r.u8() != message_version) return false;
  const std::uint8_t type = r.u8();
  if (type < 1 || type > static_cast<std::uint8_t>(MessageType::read_index_resp)) return false;
  m.type = static_cast<MessageType>(type);
  m.from = NodeId(r.u64());
  m.to = NodeId(r.u64());
  m.term = Term(r.u64());
  m.log_term = Term(r.u64());
  m.index = LogIndex(r.u64());
  m.commit = LogIndex(r.u64());
  m.reject_hint = LogIndex(r.u64());
  const std::uint8_t reject = r.u8();
  if (reject > 1) return false;
  m.reject = reject == 1;
  m.context = r.u64();
  const std::uint32_t n = r.u32();
  if (!r.ok() || n > message_entries_max || r.remaining() < std::size_t{n} * 21) return false;
  m.entries.reserve(n);
  for (std::uint32_t i = 0; i < n; ++i) {
    Entry e;
    e.term = Term(r.u64());
    e.index = LogIndex(r.u64());
    const std::uint8_t et = r.u8();
    if (et < 1 || et > 3) return false;
    e.type = static_cast<EntryType>(et);
    const ByteView data = r.bytes32();
    if (!r.ok()) return false;
    e.data.assign(data.begin(), data.end());
    m.entries.push_back(std::move(e));
  }
  const std::uint8_t has_snapshot = r.u8();
  if (has_snapshot != (m.type == MessageType::snapshot ? 1 : 0)) return false;
  if (has_snapshot == 1) {
    m.snapshot.index = LogIndex(r.u64());
    m.snapshot.term = Term(r.u64());
    if (!read_membership(r, m.snapshot.membership)) return false;
    m.offset = r.u64();
    m.snapshot_bytes = r.u64();
    const ByteView data = r.bytes32();
    if (!r.ok()) return false;
    m.data.assign(data.begin(), data.end());
    const std::uint8_t done = r.u8();
    if (done > 1) return false;
    m.done = done == 1;
  }
  if (m.type == MessageType::snapshot_resp) {
    m.offset = r.u64();
    const std::uint8_t done = r.u8();
    if (!r.ok() || done > 1) return false;
    m.done = done == 1;
  }
  if (!r.at_end()) return false;
  out = std::move(m);
  return true;
}

namespace {

class RaftCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "raft"; }
  std::string message(int code) const override {
    switch (static_cast<errc>(code)) {
      case errc::ok: return "ok";
      case errc::not_leader: return "not the leader";
      case errc::no_leader: return "no leader known";
      case errc::transfer_in_progress: return "leadership transfer in progress";
      case errc::change_in_progress: return "membership change in progress";
      case errc::not_caught_up: return "learner has not caught up";
      case errc::unknown_node: return "unknown node";
      case errc::already_member: return "already a member";
      case errc::invalid_change: return "invalid membership change";
      case errc::too_large: return "proposal too large";
      case errc::compacted: return "index already compacted";
      case errc::overloaded:
        return "the leader holds too many uncommitted entries (uncommitted_bytes_max); retry later";
    }
    return "unknown raft error";
  }
};

}  // namespace

const std::error_category& raft_category() {
  static const RaftCategory category;
  return category;
}

}  // namespace rpool::raft
