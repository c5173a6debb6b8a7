// Fuzzes the decoders of the other files of a data directory: the hard-state file, snapshot files
// (and the raft membership in a snapshot's metadata), and the file-name parser that classifies a
// directory listing.
//
// Input: one mode byte, then the bytes. Mode & 3 picks the decoder: 0 hard state, 1 snapshot,
// 2 or 3 file name. Mode bit 2 set: the harness first rewrites the file's CRC, so that the fuzzer
// reaches the checks behind it. A decoded file must encode back to a file that decodes to the
// same value.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "fuzz_input.h"
#include "raft/types.h"
#include "wal/crc32c.h"
#include "wal/format.h"

namespace {

using namespace rpool;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "wal_state: %s\n", what);
    std::abort();
  }
}

void hard_state(Bytes file, bool fix) {
  if (fix && file.size() == wal::hard_state_bytes) {
    store_u32le(file.data() + 40, wal::crc32c(ByteView(file).first(40)));
  }
  std::string why;
  const auto state = wal::decode_hard_state(ByteView(file), why);
  check(state.has_value() == why.empty(), "a hard state both decoded and refused");
  if (!state) return;
  std::string again_why;
  const auto again = wal::decode_hard_state(wal::encode_hard_state(*state), again_why);
  check(again == state, "hard state round trip");
}

void snapshot(Bytes file, bool fix) {
  if (fix && file.size() >= wal::snapshot_header_bytes + wal::snapshot_trailer_bytes) {
    const std::size_t crc_at = file.size() - wal::snapshot_trailer_bytes;
    store_u32le(file.data() + crc_at, wal::crc32c(ByteView(file).first(crc_at)));
  }
  std::string why;
  const auto snap = wal::decode_snapshot(ByteView(file), why);
  if (!snap) {
    check(!why.empty(), "a refused snapshot without a reason");
    return;
  }
  std::string again_why;
  const auto again = wal::decode_snapshot(wal::encode_snapshot(*snap), again_why);
  check(again == snap, "snapshot round trip");
  // What the node does next with the metadata: the membership at the snapshot's index.
  raft::Membership membership;
  if (raft::decode_membership(ByteView(snap->metadata), membership)) {
    check(membership.valid(), "a decoded membership that is not valid");
    raft::Membership back;
    check(raft::decode_membership(raft::encode_membership(membership), back), "membership again");
    check(back == membership, "membership round trip");
  }
}

void file_name(ByteView bytes) {
  const std::string name(as_chars(bytes));
  const wal::ParsedName parsed = wal::parse_name(name);
  // A name the parser recognises is one the log could have written.
  switch (parsed.kind) {
    case wal::FileKind::closed_segment:
      check(wal::parse_name(wal::closed_segment_name(parsed.first, parsed.last)).kind ==
                wal::FileKind::closed_segment,
            "closed segment name");
      break;
    case wal::FileKind::open_segment:
      check(wal::parse_name(wal::open_segment_name(parsed.seq)).seq == parsed.seq,
            "open segment name");
      break;
    case wal::FileKind::snapshot: {
      const wal::ParsedName again = wal::parse_name(wal::snapshot_name(parsed.first, parsed.term));
      check(again.first == parsed.first && again.term == parsed.term, "snapshot name");
      break;
    }
    default: break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::FuzzInput in(data, size);
  const std::uint8_t mode = in.u8();
  const ByteView rest = in.rest();
  const bool fix = (mode & 4) != 0;
  switch (mode & 3) {
    case 0: hard_state(Bytes(rest.begin(), rest.end()), fix); break;
    case 1: snapshot(Bytes(rest.begin(), rest.end()), fix); break;
    default: file_name(rest); break;
  }
  return 0;
}
