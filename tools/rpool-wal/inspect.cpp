#include "inspect.h"

#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "pool/command.h"
#include "raft/types.h"
#include "wal/log.h"
#include "wal/repair.h"
#include "wal/verify.h"

namespace rpool::tools {
namespace {

constexpr std::size_t hex_bytes_max = 256;  // longer opaque payloads are shown cut, with "..."
constexpr std::uint64_t read_bytes_max = 16u << 20;

std::string hex(ByteView b) {
  std::string s;
  for (std::size_t i = 0; i < b.size() && i < hex_bytes_max; ++i) s += fmt::format("{:02x}", b[i]);
  if (b.size() > hex_bytes_max) s += "...";
  return s;
}

std::string kind_name(std::uint8_t kind) {
  switch (static_cast<raft::EntryType>(kind)) {
    case raft::EntryType::normal: return "normal";
    case raft::EntryType::noop: return "noop";
    case raft::EntryType::config: return "config";
  }
  return fmt::format("kind{}", kind);
}

std::string ids(const std::vector<NodeId>& v) {
  // Appends in place: GCC 12 at -O3 misreads `"," + std::string` as an overlapping memcpy
  // (-Wrestrict).
  std::string s;
  for (auto id : v) {
    if (!s.empty()) s += ',';
    s += fmt::format("{}", id);
  }
  return s;
}

nlohmann::json item_json(const pool::Item& item) {
  return {
      {"item_id", item.item_id}, {"quantity", item.quantity}, {"probability", item.probability}};
}

nlohmann::json items_json(const std::vector<pool::Item>& items) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& item : items) j.push_back(item_json(item));
  return j;
}

// Every command kind, with the pool it acts on. The visitor has one overload per alternative of
// Command::op, so a kind added there without a line here does not compile.
nlohmann::json command_json(const pool::Command& c) {
  struct Visitor {
    nlohmann::json operator()(const pool::Draw& draw) const {
      // The seed as a hex string: JSON numbers lose precision above 2^53.
      return {{"op", "draw"}, {"count", draw.count}, {"seed", fmt::format("{:#018x}", draw.seed)}};
    }
    nlohmann::json operator()(const pool::UpsertItem& up) const {
      return {{"op", "upsert"}, {"item", item_json(up.item)}};
    }
    nlohmann::json operator()(const pool::DeleteItem& del) const {
      return {{"op", "delete"}, {"item_id", del.item_id}};
    }
    nlohmann::json operator()(const pool::Bootstrap& boot) const {
      nlohmann::json j = {{"op", "bootstrap"}, {"items", items_json(boot.items)}};
      // The more pools the config's "pools" seeds, by pool_id (the default pool's are "items").
      if (!boot.pools.empty()) {
        j["pools"] = nlohmann::json::object();
        for (const auto& [pool_id, items] : boot.pools) j["pools"][pool_id] = items_json(items);
      }
      return j;
    }
    nlohmann::json operator()(const pool::CreatePool& create) const {
      return {{"op", "create_pool"}, {"items", items_json(create.items)}};
    }
    nlohmann::json operator()(const pool::DeletePool&) const { return {{"op", "delete_pool"}}; }
  };
  nlohmann::json j = std::visit(Visitor{}, c.op);
  j["pool_id"] = c.pool_id;
  j["timestamp_ms"] = c.timestamp_ms;
  if (!c.idempotency_key.empty()) j["idempotency_key"] = c.idempotency_key;
  return j;
}

// The payload, decoded by kind: a pool command, a membership, nothing (no-op) or opaque bytes.
void describe_payload(const wal::Entry& e, std::string& text, nlohmann::json& j) {
  const auto opaque = [&](const char* why) {
    text = fmt::format("opaque len={} hex={}", e.payload.size(), hex(e.payload));
    j["opaque"] = {{"reason", why}, {"len", e.payload.size()}, {"hex", hex(e.payload)}};
  };
  switch (static_cast<raft::EntryType>(e.kind)) {
    case raft::EntryType::normal: {
      pool::Command c;
      if (pool::decode(e.payload, c)) return opaque("not a pool command");
      text = pool::describe(c, pool::NamePool::always);
      j["command"] = command_json(c);
      return;
    }
    case raft::EntryType::noop:
      if (!e.payload.empty()) return opaque("no-op with a payload");
      text = "no-op";
      return;
    case raft::EntryType::config: {
      raft::Membership m;
      if (!raft::decode_membership(e.payload, m)) return opaque("not a membership");
      text = fmt::format("membership voters=[{}] learners=[{}]", ids(m.voters), ids(m.learners));
      j["membership"] = {{"voters", nlohmann::json::array()},
                         {"learners", nlohmann::json::array()}};
      for (auto id : m.voters) j["membership"]["voters"].push_back(id.value());
      for (auto id : m.learners) j["membership"]["learners"].push_back(id.value());
      if (!m.context.empty()) {
        j["membership"]["context"] = nlohmann::json::object();
        for (const auto& [id, context] : m.context) {
          j["membership"]["context"][std::to_string(id.value())] = context;
          text += fmt::format(" {}:{}", id.value(), context);
        }
      }
      return;
    }
  }
  opaque("unknown entry kind");
}

// The entry kinds raft writes: anything else in a log is corruption (verify, like rpoold).
wal::KindSet raft_kinds() {
  return wal::kinds({static_cast<std::uint8_t>(raft::EntryType::normal),
                     static_cast<std::uint8_t>(raft::EntryType::noop),
                     static_cast<std::uint8_t>(raft::EntryType::config)});
}

wal::Options read_only_options(std::ostream& err) {
  wal::Options o;
  o.read_only = true;
  o.warn = [&err](const std::string& w) { err << "rpool-wal: warning: " << w << '\n'; };
  return o;
}

std::unique_ptr<wal::Log> open_log(const std::string& dir, std::ostream& err) {
  wal::OpenResult r = wal::Log::open(dir, read_only_options(err));
  if (r.error) {
    err << "rpool-wal: " << (r.detail.empty() ? dir : r.detail) << " (" << r.error.message()
        << ")\n";
    return nullptr;
  }
  return std::move(r.log);
}

// The hard-state records of the log's segments (log.h, "Hard-state record"), each keyed by the
// index of the entry record before it (first_index - 1 for one ahead of a segment's entries).
// Log::read skips them; dump shows them where they lie.
std::multimap<std::uint64_t, wal::HardState> hard_state_records(const wal::Log& log,
                                                                 std::ostream& err) {
  std::multimap<std::uint64_t, wal::HardState> out;
  wal::FileSystem& fs = wal::posix_file_system();
  for (const auto& seg : log.segments()) {
    std::unique_ptr<wal::File> file;
    std::uint64_t size = 0;
    if (auto ec = fs.open(wal::join_path(log.dir(), seg.name), wal::OpenMode::read_only, file);
        ec || (ec = file->size(size))) {
      // A live node may have closed (renamed) or removed it since: its records are not shown.
      err << fmt::format("rpool-wal: {}: hard-state records not shown: {}\n", seg.name,
                         ec.message());
      continue;
    }
    wal::FileSource source(*file, size);
    const wal::SegmentScan scan = wal::scan_segment(source);
    std::size_t k = 0;  // entry records before the hard-state record
    for (const auto& h : scan.hard_states) {
      while (k < scan.records.size() && scan.records[k].offset < h.offset) ++k;
      out.emplace(scan.first_index.value() + k - 1, h.state);
    }
  }
  return out;
}

std::string vote_text(NodeId id) {
  return id.value() == 0 ? std::string("nobody") : fmt::format("{}", id);
}

}  // namespace

int wal_stat(const std::string& dir, std::ostream& out, std::ostream& err) {
  auto log = open_log(dir, err);
  if (!log) return 1;
  const auto segments = log->segments();
  std::size_t open = 0;
  std::uint64_t bytes = 0;
  for (const auto& s : segments) {
    open += s.open ? 1 : 0;
    bytes += s.file_bytes;
  }
  out << fmt::format("data directory: {}\n", dir);
  out << fmt::format("segments: {} ({} closed, {} open), {} bytes on disk\n", segments.size(),
                     segments.size() - open, open, bytes);
  for (const auto& s : segments) {
    const std::string range = s.last_index < s.first_index
                                  ? fmt::format("empty, next index {}", s.first_index)
                                  : fmt::format("{}..{}", s.first_index, s.last_index);
    out << fmt::format("  {:<46} {:<6} {:<24} entries {:>8}  data {:>10} B  file {:>10} B\n",
                       s.name, s.open ? "open" : "closed", range,
                       s.last_index.value() + 1 - s.first_index.value(), s.data_bytes,
                       s.file_bytes);
  }
  const std::uint64_t entries = log->last_index().value() + 1 - log->first_index().value();
  out << fmt::format("entries: {} (indexes {}..{}), last term {}\n", entries, log->first_index(),
                     log->last_index(), log->last_term());
  int rc = 0;
  wal::HardState hs;
  if (auto ec = log->load_hard_state(hs)) {
    err << "rpool-wal: " << log->error_detail() << '\n';
    rc = 1;
  } else {
    out << fmt::format("hard state: term {}, voted for {}, commit index {}\n", hs.current_term,
                       hs.voted_for.value() == 0 ? std::string("nobody")
                                                 : fmt::format("{}", hs.voted_for),
                       hs.commit_index);
  }
  std::optional<wal::SnapshotFile> snap;
  if (auto ec = log->load_latest_snapshot(snap)) {
    err << "rpool-wal: " << log->error_detail() << '\n';
    rc = 1;
  } else if (snap) {
    out << fmt::format("snapshot: {} (index {}, term {}, metadata {} B, data {} B)\n",
                       wal::snapshot_name(snap->index, snap->term), snap->index, snap->term,
                       snap->metadata.size(), snap->data.size());
  } else {
    out << "snapshot: none\n";
  }
  return rc;
}

int wal_dump(const std::string& dir, const DumpOptions& options, std::ostream& out,
             std::ostream& err) {
  auto log = open_log(dir, err);
  if (!log) return 1;
  const std::uint64_t first = log->first_index().value();
  const std::uint64_t last = log->last_index().value();
  std::uint64_t lo = options.from.value_or(first);
  const std::uint64_t hi = std::min(options.to.value_or(last), last);  // inclusive
  if (lo < first) {
    err << fmt::format("rpool-wal: entries before index {} were compacted into a snapshot\n",
                       first);
    lo = first;
  }
  const auto hard_states = hard_state_records(*log, err);
  // A hard-state record is shown after the entry it follows (those ahead of the first entry
  // shown, when the range starts at the log's first index).
  auto show_hard_states = [&](std::uint64_t after) {
    const auto [from, to] = hard_states.equal_range(after);
    for (auto it = from; it != to; ++it) {
      const wal::HardState& h = it->second;
      if (options.json) {
        out << nlohmann::json{{"record", "hard_state"},
                              {"after_index", after},
                              {"term", h.current_term.value()},
                              {"voted_for", h.voted_for.value()},
                              {"commit_index", h.commit_index.value()}}
                   .dump()
            << '\n';
      } else {
        out << fmt::format("hard-state term {} voted-for {} commit {}\n", h.current_term,
                           vote_text(h.voted_for), h.commit_index);
      }
    }
  };
  if (lo == first) show_hard_states(first - 1);
  std::vector<wal::Entry> batch;
  while (lo <= hi) {
    batch.clear();
    if (auto ec = log->read(LogIndex(lo), LogIndex(hi + 1), batch, read_bytes_max)) {
      err << "rpool-wal: " << log->error_detail() << " (" << ec.message() << ")\n";
      return 1;
    }
    for (const auto& e : batch) {
      std::string text;
      nlohmann::json j = {{"index", e.index.value()},
                          {"term", e.term.value()},
                          {"kind", kind_name(e.kind)},
                          {"payload_bytes", e.payload.size()}};
      describe_payload(e, text, j);
      if (options.json) {
        out << j.dump() << '\n';
      } else {
        out << fmt::format("{} {} {} {}\n", e.index, e.term, kind_name(e.kind), text);
      }
      show_hard_states(e.index.value());
    }
    lo += batch.size();
  }
  return 0;
}

int wal_verify(const std::string& dir, std::ostream& out, std::ostream& err) {
  const wal::VerifyReport report =
      wal::verify_directory_settled(dir, wal::posix_file_system(), raft_kinds());
  for (const auto& w : report.warnings) err << "rpool-wal: warning: " << w << '\n';
  for (const auto& f : report.faults) {
    out << fmt::format("FAULT {}: offset {}: {}\n", f.file, f.offset, f.reason);
  }
  out << fmt::format(
      "{}: {} segments, {} records ({} bytes), indexes {}..{}, {} snapshots, hard state {}: {}\n",
      dir, report.segments, report.records, report.record_bytes, report.first_index,
      report.last_index, report.snapshots, report.hard_state ? "present" : "absent",
      report.faults.empty() ? "ok" : fmt::format("{} faults", report.faults.size()));
  return report.faults.empty() ? 0 : 1;
}

int wal_repair(const std::string& dir, bool yes, std::ostream& out, std::ostream& err) {
  wal::RepairPlan plan;
  std::string detail;
  if (auto ec = wal::plan_repair(dir, wal::posix_file_system(), raft_kinds(), plan, detail)) {
    err << "rpool-wal: " << detail << '\n';
    return 1;
  }
  for (const auto& f : plan.other_faults) {
    out << fmt::format("FAULT {} (repair does not cut this; it stays)\n", f.line());
  }
  if (!plan.fault) {
    out << fmt::format("{}: nothing to cut in the log{}\n", dir,
                       plan.other_faults.empty() ? "" : "; the faults above remain");
    return plan.other_faults.empty() ? 0 : 1;
  }
  out << fmt::format("first fault: {}\n", plan.fault->line());
  if (!yes) {
    for (const auto& line : plan.describe()) out << "would " << line << '\n';
    out << "nothing was changed; run again with --yes to do it\n";
    return 0;
  }
  if (auto ec = wal::apply_repair(dir, wal::posix_file_system(), plan, detail)) {
    err << "rpool-wal: repair failed: " << detail << '\n';
    return 1;
  }
  for (const auto& line : plan.describe()) out << "did " << line << '\n';
  // What is left must verify; say so either way.
  const int rc = wal_verify(dir, out, err);
  if (rc != 0) {
    out << "the faults above remain. If the hard state's commit index is beyond the log, committed "
           "entries were "
           "cut: this node must not rejoin with this log (replace its data directory, e.g. remove "
           "and re-add "
           "the member so that it catches up from the leader)\n";
  }
  return rc;
}

}  // namespace rpool::tools
