// Fuzzes the WAL segment scanner (wal::scan_segment) and what recovery and `rpool-wal verify`
// run on its result: the torn-tail judgement, the per-record checks and decode_record().
//
// Input: one mode byte, then the segment file's bytes (version 2, or 1 as older builds wrote). Mode bit 0 set: the harness first
// rewrites the segment header's CRC and every record CRC it can frame, so that the fuzzer
// reaches the index, term and tail checks behind the checksums instead of stopping at them.
//
// Whatever the bytes, the scanner must report, never assert, and what it reports must hold
// together: entry records in order from the header's first index (hard-state records between
// them take no index), terms not decreasing, each record decoding again to what the scan said,
// every hard-state record framed where the scan says, data_end and the garbage inside the file.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "fuzz_input.h"
#include "wal/crc32c.h"
#include "wal/format.h"

namespace {

using namespace rpool;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "wal_segment: %s\n", what);
    std::abort();
  }
}

// The CRCs a writer would have put in: the header's over its first 28 bytes, each record's over
// its length field and everything after its CRC field (wal::Log's layout).
void fix_checksums(Bytes& file) {
  if (file.size() < wal::segment_header_bytes) return;
  store_u32le(file.data() + 28, wal::crc32c(ByteView(file).first(28)));
  std::uint64_t pos = wal::segment_header_bytes;
  while (file.size() - pos >= wal::record_header_bytes) {
    const std::uint32_t length = load_u32le(file.data() + pos);
    if (length > wal::entry_payload_bytes_max) return;
    const std::uint64_t bytes = wal::record_bytes(length);
    if (bytes > file.size() - pos) return;
    const ByteView record(file.data() + pos, bytes);
    const std::uint32_t crc = wal::crc32c(wal::crc32c(record.first(4)), record.subspan(8));
    store_u32le(file.data() + pos + 4, crc);
    pos += bytes;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::FuzzInput in(data, size);
  const std::uint8_t mode = in.u8();
  const ByteView rest = in.rest();
  Bytes file(rest.begin(), rest.end());
  if (mode & 1) fix_checksums(file);

  const wal::SegmentScan scan = wal::scan_segment(ByteView(file));
  check(!scan.read_error, "a memory source cannot fail");
  check(scan.file_bytes == file.size(), "file_bytes");
  check(scan.data_end <= file.size(), "data_end beyond the file");
  check(scan.garbage_bytes <= file.size() - scan.data_end, "garbage beyond the file");
  if (!scan.header_ok) {
    check(scan.records.empty(), "records without a header");
    check(scan.fault.has_value(), "a bad header without a fault");
    return 0;
  }
  check(scan.version >= wal::segment_version_min && scan.version <= wal::segment_version,
        "a header version outside those read");
  // Version 1 segments (before hard-state records) have none: there kind 0xff is an entry's.
  const bool hard_state_records = scan.version >= wal::segment_version_hard_state;
  check(hard_state_records || scan.hard_states.empty(), "a hard-state record in a version-1 segment");
  std::uint64_t end = wal::segment_header_bytes;
  std::size_t h = 0;  // hard-state records passed
  // Hard-state records lying at `end`, in order, each exactly hard_state_record_bytes long.
  auto skip_hard_states = [&] {
    while (h < scan.hard_states.size() && scan.hard_states[h].offset == end) {
      const std::uint8_t* r = file.data() + end;
      check(load_u32le(r) == wal::hard_state_record_payload_bytes, "hard-state record length");
      check(load_u64le(r + 16) == 0, "hard-state record with an index");
      check(r[24] == wal::hard_state_record_kind, "hard-state record kind");
      check(load_u64le(r + 8) == scan.hard_states[h].state.current_term.value(), "term");
      check(load_u64le(r + 25) == scan.hard_states[h].state.voted_for.value(), "vote");
      check(load_u64le(r + 33) == scan.hard_states[h].state.commit_index.value(), "commit");
      end += wal::hard_state_record_bytes;
      ++h;
    }
  };
  for (std::size_t i = 0; i < scan.records.size(); ++i) {
    const wal::RecordMeta& meta = scan.records[i];
    skip_hard_states();
    check(meta.offset == end, "records not back to back");
    check(!hard_state_records || meta.kind != wal::hard_state_record_kind,
          "a hard-state record taken for an entry");
    check(meta.index.value() == scan.first_index.value() + i, "record indexes not contiguous");
    if (i > 0) check(scan.records[i - 1].term <= meta.term, "record terms decreasing");
    wal::Entry entry;
    check(wal::decode_record(ByteView(file), meta, entry), "a scanned record does not decode");
    check(entry.payload.size() == meta.payload_bytes, "payload length");
    check(entry.kind == meta.kind, "kind");
    end = meta.offset + wal::record_bytes(meta.payload_bytes);
  }
  skip_hard_states();
  check(h == scan.hard_states.size(), "hard-state records out of place");
  check(scan.data_end == end, "data_end is not past the last record");

  if (scan.garbage_bytes > 0) {
    wal::MemorySource source{ByteView(file)};
    const wal::TailVerdict verdict = wal::judge_tail(source, scan);
    check(!verdict.reason.empty() || verdict.torn, "a corrupt tail without a reason");
  }
  const std::optional<Term> previous =
      mode & 2 ? std::optional<Term>(Term(mode >> 2)) : std::nullopt;
  (void)wal::check_records(scan, previous, wal::kinds({1, 2, 3}));
  return 0;
}
