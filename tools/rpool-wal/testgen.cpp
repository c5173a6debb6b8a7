// rpool-wal-testgen [--long | --pools | --unknown-kind | --draws] DIR: writes a small data
// directory for the CLI tests: a few dozen 4 KiB segments holding every kind of entry
// (membership, no-op, each pool command, opaque payloads), a hard state, and a snapshot with the
// log compacted behind it. --unknown-kind: the same, ending in an entry of kind 9, which raft
// never writes. --pools: see write_pools; --draws: see write_draws.
#include <cstdio>
#include <string_view>

#include "pool/command.h"
#include "pool/state_machine.h"
#include "raft/types.h"
#include "wal/log.h"
#include "wal/recovery.h"

namespace {

using namespace rpool;

wal::Entry make(std::uint64_t index, std::uint64_t term, raft::EntryType type, Bytes payload) {
  return {Term(term), LogIndex(index), static_cast<std::uint8_t>(type), std::move(payload)};
}

// --long: one open segment of 1 MiB holding 3,000 entries of 200 bytes (675 KB), synced 100 at
// a time, and a hard state committing all of them: damage a third of the way in has more than a
// write window of acknowledged records behind it.
int write_long(const char* dir) {
  wal::Options options;
  options.segment_bytes = 1u << 20;
  options.prepare_in_background = false;
  // recover(), as a node does: a new directory gets its hard state before any entry.
  wal::RecoverResult r = wal::recover(dir, options);
  if (r.error) {
    std::fprintf(stderr, "%s\n", r.detail.c_str());
    return 1;
  }
  wal::Log& log = *r.state.log;
  bool ok = true;
  for (std::uint64_t i = 1; ok && i <= 3000; i += 100) {
    std::vector<wal::Entry> batch;
    for (std::uint64_t k = i; k < i + 100; ++k) {
      batch.push_back(
          make(k, 1, raft::EntryType::normal, Bytes(200, static_cast<std::uint8_t>(k))));
    }
    ok = !log.append(batch) && !log.sync();
  }
  ok = ok && !log.save_hard_state({Term(1), NodeId(1), LogIndex(3000)});
  if (!ok) {
    std::fprintf(stderr, "rpool-wal-testgen: %s\n", log.error_detail().c_str());
    return 1;
  }
  std::printf("1 3000\n");
  return 0;
}

// --pools: a log of several pools, for dump and `replay --pool`: a bootstrap seeding "default"
// and "spring", "event" created, 300 draws going round "default", "spring", "event" and a pool
// that never exists, "event" deleted at draw 150 and created again at draw 200 (its numbering
// goes on), the same idempotency keys in two pools, and a real snapshot of the pools at draw 100
// (the entries behind it kept). Prints "FIRST LAST" and then one JSON line with what the
// tests expect, counted here from the units drawn rather than by the state machine.
int write_pools(const char* dir) {
  wal::Options options;
  options.segment_bytes = 16u << 10;
  options.prepare_in_background = false;
  wal::RecoverResult r = wal::recover(dir, options);
  if (r.error) {
    std::fprintf(stderr, "%s\n", r.detail.c_str());
    return 1;
  }
  wal::Log& log = *r.state.log;
  const Bytes membership = raft::encode_membership({{NodeId(1), NodeId(2), NodeId(3)}, {}, {}});
  std::vector<wal::Entry> entries;
  std::uint64_t index = 1;
  pool::StateMachine state;  // the pools as of the last entry, for the snapshot
  auto append = [&](pool::Command c) {
    c.timestamp_ms = 1700000000000 + index;
    (void)state.apply(index, c);
    entries.push_back(make(index++, 1, raft::EntryType::normal, pool::encode(c)));
  };
  entries.push_back(make(index++, 1, raft::EntryType::config, membership));
  entries.push_back(make(index++, 1, raft::EntryType::noop, {}));
  pool::Command boot;
  boot.op = pool::Bootstrap{{{"diamond", 100, 10}, {"gold", 1000, 20}, {"mud", -1, 70}},
                            {{"spring", {{"skin", 50, 1}}}}};
  append(boot);
  pool::Command create;
  create.op = pool::CreatePool{{{"gem", 30, 5}, {"mud", -1, 5}}};
  create.pool_id = "event";
  append(create);
  const char* const rotation[] = {"default", "spring", "event", "ghost"};
  std::uint64_t units_default = 0, units_spring = 0, units_event_before = 0, units_event_after = 0;
  std::uint64_t deleted_at = 0, recreated_at = 0, snapshot_at = 0;
  Bytes snapshot;  // the pools as of snapshot_at
  for (int i = 0; i < 300; ++i) {
    if (i == 100) {
      snapshot_at = index - 1;
      snapshot = state.snapshot();
    }
    if (i == 150) {
      pool::Command del;
      del.op = pool::DeletePool{};
      del.pool_id = "event";
      deleted_at = index;
      append(del);
    }
    if (i == 200) {
      pool::Command again;
      again.op = pool::CreatePool{{{"gem", 10, 1}}};
      again.pool_id = "event";
      recreated_at = index;
      append(again);
    }
    pool::Command c;
    const std::string pool_id = rotation[i % 4];
    const auto count = static_cast<std::uint32_t>(1 + i % 3);
    c.op = pool::Draw{count, 0x1234567890abcdefull + static_cast<std::uint64_t>(i)};
    c.pool_id = pool_id;
    // Keys repeat across pools (key-k in default and again in event): two independent draws.
    if (i % 2 == 0) c.idempotency_key = "key-" + std::to_string(i / 4);
    append(c);
    if (pool_id == "default") units_default += count;
    if (pool_id == "spring") units_spring += count;
    if (pool_id == "event" && i < 150) units_event_before += count;
    if (pool_id == "event" && i >= 200) units_event_after += count;
  }
  bool ok = !log.append(entries) && !log.sync();
  ok = ok && !log.save_hard_state({Term(1), NodeId(1), LogIndex(index - 1)});
  // Not compacted: dump shows the bootstrap, and replay still starts from the snapshot.
  ok = ok && !log.save_snapshot({LogIndex(snapshot_at), Term(1), membership, snapshot});
  if (!ok) {
    std::fprintf(stderr, "rpool-wal-testgen: %s\n", log.error_detail().c_str());
    return 1;
  }
  std::printf("%llu %llu\n", static_cast<unsigned long long>(log.first_index().value()),
              static_cast<unsigned long long>(log.last_index().value()));
  std::printf(
      "{\"snapshot_at\":%llu,\"deleted_at\":%llu,\"recreated_at\":%llu,\"units_default\":%llu,"
      "\"units_spring\":%llu,\"units_event_before\":%llu,\"units_event_after\":%llu}\n",
      static_cast<unsigned long long>(snapshot_at), static_cast<unsigned long long>(deleted_at),
      static_cast<unsigned long long>(recreated_at), static_cast<unsigned long long>(units_default),
      static_cast<unsigned long long>(units_spring),
      static_cast<unsigned long long>(units_event_before),
      static_cast<unsigned long long>(units_event_after));
  return 0;
}

}  // namespace

// --draws: no snapshot, a catalog where "rare" (quantity 2) outweighs "mud" a million to one, so
// that the draws are predictable: a keyed count-3 draw (rare, rare, then mud), its repeat (draws
// nothing), mud deleted, a count-2 draw (pool_empty twice), a second pool with a draw of its own,
// over terms 1 to 3; the hard state commits all but the last entry.
int write_draws(const char* dir) {
  wal::Options options;
  options.segment_bytes = 4096;
  options.prepare_in_background = false;
  wal::RecoverResult r = wal::recover(dir, options);
  if (r.error) {
    std::fprintf(stderr, "%s\n", r.detail.c_str());
    return 1;
  }
  wal::Log& log = *r.state.log;
  std::vector<wal::Entry> entries;
  std::uint64_t index = 1;
  auto add = [&](std::uint64_t term, pool::Command c) {
    c.timestamp_ms = 1700000000000 + index;
    entries.push_back(make(index++, term, raft::EntryType::normal, pool::encode(c)));
  };
  entries.push_back(make(index++, 1, raft::EntryType::config,
                         raft::encode_membership({{NodeId(1), NodeId(2), NodeId(3)}, {}, {}})));
  add(1, {pool::Bootstrap{{{"mud", -1, 1}, {"rare", 2, 1000000}}}, 0, {}, {}});
  pool::Command keyed{pool::Draw{3, 11}, 0, "audit key, \"quoted\"", {}};
  keyed.body_hash[0] = 1;
  add(1, keyed);
  entries.push_back(make(index++, 2, raft::EntryType::noop, {}));
  add(2, keyed);  // the same key and body: answered again, draws nothing
  add(2, {pool::DeleteItem{"mud"}, 0, {}, {}});
  add(2, {pool::Draw{2, 12}, 0, {}, {}});
  pool::Command create{pool::CreatePool{{{"skin", 5, 1}}}, 0, {}, {}};
  create.pool_id = "spring";
  add(3, create);
  pool::Command spring_draw{pool::Draw{1, 13}, 0, {}, {}};
  spring_draw.pool_id = "spring";
  add(3, spring_draw);
  add(3, {pool::Draw{1, 14}, 0, {}, {}});  // past the recorded commit index
  bool ok = !log.append(entries) && !log.sync();
  ok = ok && !log.save_hard_state({Term(3), NodeId(1), LogIndex(index - 2)});
  if (!ok) {
    std::fprintf(stderr, "rpool-wal-testgen: %s\n", log.error_detail().c_str());
    return 1;
  }
  std::printf("1 %llu\n", static_cast<unsigned long long>(index - 1));
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 3 && std::string_view(argv[1]) == "--long") return write_long(argv[2]);
  if (argc == 3 && std::string_view(argv[1]) == "--pools") return write_pools(argv[2]);
  if (argc == 3 && std::string_view(argv[1]) == "--draws") return write_draws(argv[2]);
  const bool unknown_kind = argc == 3 && std::string_view(argv[1]) == "--unknown-kind";
  if (argc != 2 && !unknown_kind) {
    std::fprintf(stderr,
                 "usage: rpool-wal-testgen [--long | --pools | --unknown-kind | --draws] DIR\n");
    return 2;
  }
  const char* dir = argv[argc - 1];
  wal::Options options;
  options.segment_bytes = 4096;
  options.prepare_in_background = false;
  wal::RecoverResult r = wal::recover(dir, options);
  if (r.error) {
    std::fprintf(stderr, "%s\n", r.detail.c_str());
    return 1;
  }
  wal::Log& log = *r.state.log;
  std::vector<wal::Entry> entries;
  std::uint64_t index = 1;
  entries.push_back(make(index++, 1, raft::EntryType::config,
                         raft::encode_membership({{NodeId(1), NodeId(2), NodeId(3)}, {}, {}})));
  entries.push_back(make(index++, 1, raft::EntryType::noop, {}));
  pool::Command boot;
  boot.op = pool::Bootstrap{{{"diamond", 100, 10}, {"gold", 1000, 20}, {"mud", -1, 70}}};
  boot.timestamp_ms = 1700000000000;
  entries.push_back(make(index++, 1, raft::EntryType::normal, pool::encode(boot)));
  for (int i = 0; i < 400; ++i) {
    const std::uint64_t term = 1 + static_cast<std::uint64_t>(i / 100);
    pool::Command c;
    c.timestamp_ms = 1700000000000 + static_cast<std::uint64_t>(i);
    if (i % 50 == 0) {
      entries.push_back(make(index++, term, raft::EntryType::noop, {}));
      continue;
    }
    if (i % 17 == 0) {
      c.op = pool::UpsertItem{{"silver", 5 + i, 3}};
    } else if (i % 41 == 0) {
      c.op = pool::DeleteItem{"silver"};
    } else {
      c.op = pool::Draw{static_cast<std::uint32_t>(1 + i % 3),
                        0x1234567890abcdefull + static_cast<std::uint64_t>(i)};
      if (i % 5 == 0) c.idempotency_key = "key-" + std::to_string(i);
    }
    entries.push_back(make(index++, term, raft::EntryType::normal, pool::encode(c)));
  }
  entries.push_back(
      make(index++, 6, raft::EntryType::normal, Bytes{0xde, 0xad, 0xbe, 0xef}));  // opaque
  if (unknown_kind)
    entries.push_back(make(index++, 6, static_cast<raft::EntryType>(9), Bytes{1, 2, 3}));
  bool ok = !log.append(entries) && !log.sync();
  ok = ok && !log.save_hard_state({Term(6), NodeId(2), LogIndex(index - 3)});
  ok = ok &&
       !log.save_snapshot({LogIndex(150), Term(2),
                           raft::encode_membership({{NodeId(1), NodeId(2), NodeId(3)}, {}, {}}),
                           Bytes(300, 7)});
  ok = ok && !log.compact(LogIndex(150));
  if (!ok) {
    std::fprintf(stderr, "rpool-wal-testgen: %s\n", log.error_detail().c_str());
    return 1;
  }
  std::printf("%llu %llu\n", static_cast<unsigned long long>(log.first_index().value()),
              static_cast<unsigned long long>(log.last_index().value()));
  return 0;
}
