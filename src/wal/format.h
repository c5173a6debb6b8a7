// The byte formats of the files in a data directory, and the pure functions that encode and
// check them. The Log (log.h) writes these files; rpool-wal reads them through the same code.
// The layouts themselves are documented, byte by byte, in the class comment of wal::Log.
#pragma once

#include <bitset>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "base/bytes.h"
#include "base/types.h"

namespace rpool::wal {

// One log entry. `kind` is opaque to the log (raft uses it for normal / no-op / configuration);
// it is stored so that tools can show it.
struct Entry {
  Term term;
  LogIndex index;
  std::uint8_t kind = 0;
  Bytes payload;
  friend bool operator==(const Entry&, const Entry&) = default;
};

// Raft's persistent state besides the log (§5, Figure 2), plus the commit index as a hint.
struct HardState {
  Term current_term;
  NodeId voted_for;       // 0: no vote in current_term
  LogIndex commit_index;  // advisory; raft may recompute it
  friend bool operator==(const HardState&, const HardState&) = default;
};

// Which of two hard states is the later one. A node's hard state only ever moves forwards: the
// term never falls, a vote is cast at most once per term (none, then one node), and the commit
// index never falls while term and vote stay. So of any two states a node saved, the later is the
// greater in (term, vote cast, commit index); recovery takes the greatest of every copy it finds
// (the file and each hard-state record) and so needs no order between them.
bool hard_state_before(const HardState& a, const HardState& b);

// A snapshot as stored: the state machine's bytes as of (index, term), plus the caller's metadata
// (for raft: the membership at that index).
struct SnapshotFile {
  LogIndex index;
  Term term;
  Bytes metadata;
  Bytes data;
  friend bool operator==(const SnapshotFile&, const SnapshotFile&) = default;
};

inline constexpr std::uint32_t format_version = 1;  // the hardstate and snapshot files'
// A segment's header version. 2: the segment may hold hard-state records. A build that knows only
// version 1 refuses a segment of version 2 as corrupt ("unsupported segment format version 2")
// instead of stopping its scan at a hard-state record, taking it for a torn tail and cutting the
// log there. Both are read; new segments are written at 2, and a hard-state record is never
// written into a segment of version 1.
inline constexpr std::uint32_t segment_version = 2;
inline constexpr std::uint32_t segment_version_min = 1;
inline constexpr std::uint32_t segment_version_hard_state = 2;  // the first with such records
inline constexpr std::uint64_t segment_header_bytes = 32;
inline constexpr std::uint64_t record_header_bytes = 25;
inline constexpr std::uint64_t hard_state_bytes = 48;
// A hard-state record in a segment (log.h, "Hard-state record"): the record header's kind field
// holds hard_state_record_kind and its index field 0 (the record is outside the index sequence);
// its term field is the current term and its payload voted_for and commit_index.
inline constexpr std::uint8_t hard_state_record_kind = 0xff;
inline constexpr std::uint32_t hard_state_record_payload_bytes = 16;
inline constexpr std::uint64_t hard_state_record_bytes = 25 + hard_state_record_payload_bytes;
inline constexpr std::uint64_t snapshot_header_bytes = 48;
inline constexpr std::uint64_t snapshot_trailer_bytes = 8;
// The largest payload one entry may carry. A record larger than a segment gets a segment of its
// own, which then exceeds segment_bytes.
inline constexpr std::uint32_t entry_payload_bytes_max = 256u << 20;
// The unit a disk writes atomically: after a power loss each 512-byte sector of a file (counted
// from the file's start) holds either its old content or the new, never a mix. Every byte the
// log has not yet made durable has zero as its old content (see STALE RECORDS in log.h), so an
// unfinished write shows as whole zero sectors, or as a file cut short.
inline constexpr std::uint64_t sector_bytes = 512;
// The most record bytes of the open segment that are ever written but not yet synced: append()
// syncs before a write would take them past this (a record longer than this is written alone,
// its header synced first). So a crash can damage only the last write_window_bytes of records;
// damage further from the end is corruption. Long enough for a 256-entry batch of 1 KiB entries
// in one fdatasync; short enough that a zeroed sector with 256 KiB of records behind it is never
// taken for a crash.
inline constexpr std::uint64_t write_window_bytes = 256u << 10;
static_assert(write_window_bytes % sector_bytes == 0);
inline constexpr std::string_view segment_magic = "RPOOLWAL";
inline constexpr std::string_view hard_state_magic = "RPOOLHST";
inline constexpr std::string_view snapshot_magic = "RPOOLSNP";
static_assert(segment_magic.size() == 8 && hard_state_magic.size() == 8 &&
              snapshot_magic.size() == 8);
// The layouts in log.h, field by field.
static_assert(segment_header_bytes == 8 + 4 + 4 + 8 + 4 + 4);
static_assert(record_header_bytes == 4 + 4 + 8 + 8 + 1);
static_assert(hard_state_bytes == 8 + 4 + 4 + 8 + 8 + 8 + 4 + 4);
static_assert(snapshot_header_bytes == 8 + 4 + 4 + 8 + 8 + 8 + 8);
static_assert(snapshot_trailer_bytes == 4 + 4);

// ---- file names ------------------------------------------------------------------------------
inline constexpr std::string_view lock_file_name = "LOCK";
inline constexpr std::string_view hard_state_file_name = "hardstate";
inline constexpr std::string_view spare_file_name = "next.spare";
std::string closed_segment_name(LogIndex first, LogIndex last);  // 0000..0001-0000..0100.wal
std::string open_segment_name(std::uint64_t seq);                // open-0000..0007.wal
std::string snapshot_name(LogIndex index, Term term);            // snapshot-<index>-<term>.snap

enum class FileKind { closed_segment, open_segment, hard_state, snapshot, temporary, lock, other };
struct ParsedName {
  FileKind kind = FileKind::other;
  LogIndex first;         // closed_segment; snapshot: its index
  LogIndex last;          // closed_segment
  Term term;              // snapshot
  std::uint64_t seq = 0;  // open_segment
};
ParsedName parse_name(std::string_view name);

// ---- segments --------------------------------------------------------------------------------
void encode_segment_header(LogIndex first_index, Bytes& out);
// Appends one framed record.
void encode_record(const Entry& entry, Bytes& out);
inline std::uint64_t record_bytes(std::size_t payload_bytes) {
  return record_header_bytes + payload_bytes;
}
// Appends one framed hard-state record.
void encode_hard_state_record(const HardState& state, Bytes& out);
static_assert(hard_state_record_bytes == record_header_bytes + hard_state_record_payload_bytes);

// A hard-state record found by scan_segment().
struct HardStateRecord {
  std::uint64_t offset = 0;  // of the record header in the file
  HardState state;
};

struct RecordMeta {
  std::uint64_t offset = 0;  // of the record header in the file
  Term term;
  LogIndex index;
  std::uint8_t kind = 0;
  std::uint32_t payload_bytes = 0;
};

// Where scan_segment() reads a segment from: bytes in memory, or a File read through a sliding
// window (recovery reads 64 MiB segments 1 MiB at a time: the copy stays in the CPU cache and no
// segment-sized buffer is ever faulted in).
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual std::uint64_t size() const = 0;
  // A view of [offset, offset + len), which lies within size(). Valid until the next call; offsets
  // are meant to move forwards; a view before the previous one's start reads again.
  virtual std::error_code view(std::uint64_t offset, std::size_t len, ByteView& out) = 0;
};

class MemorySource final : public ByteSource {
 public:
  explicit MemorySource(ByteView bytes) : bytes_(bytes) {}
  std::uint64_t size() const override { return bytes_.size(); }
  std::error_code view(std::uint64_t offset, std::size_t len, ByteView& out) override {
    out = bytes_.subspan(offset, len);
    return {};
  }

 private:
  ByteView bytes_;
};

class File;
class FileSource final : public ByteSource {
 public:
  FileSource(File& file, std::uint64_t size, std::size_t window_bytes = 1u << 20)
      : file_(file), size_(size), window_bytes_(window_bytes) {}
  std::uint64_t size() const override { return size_; }
  std::error_code view(std::uint64_t offset, std::size_t len, ByteView& out) override;

 private:
  File& file_;
  std::uint64_t size_;
  std::size_t window_bytes_;
  Bytes buffer_;
  std::uint64_t buffer_offset_ = 0;  // file offset of buffer_[0]
};

// Why scan_segment() stopped reading records.
enum class ScanStop {
  end,          // the end of the file, or an all-zero record header followed by zeros only
  zero_header,  // an all-zero record header, with non-zero bytes somewhere after it
  cut_short,    // a record (or its header) runs past the end of the file
  checksum,     // a record's CRC32C does not match
  other,        // a bad header, an impossible length, a wrong index, a falling term
};

// What scan_segment() found in the bytes of one segment file.
struct SegmentScan {
  bool header_ok = false;
  std::uint32_t version = 0;  // from the header, if header_ok
  bool header_zero = false;         // the header is all zero bytes (crash while creating)
  LogIndex first_index;             // from the header
  std::vector<RecordMeta> records;  // every whole, valid entry record, in order
  // Every whole, valid hard-state record, in order. They sit between entry records anywhere in
  // the segment and take no part in the index sequence or the term order of the entries.
  std::vector<HardStateRecord> hard_states;
  std::uint64_t data_end = 0;       // offset just past the last valid record (or the header)
  std::uint64_t file_bytes = 0;
  // Bytes from data_end up to the last non-zero byte of the file: 0 for a clean (zero-filled or
  // exact) tail. When fault is set they start with the bad record.
  std::uint64_t garbage_bytes = 0;
  std::optional<std::string> fault;  // why the record at data_end is not valid
  ScanStop stop = ScanStop::end;
  std::error_code read_error;  // the source failed; nothing else is meaningful then
};

// Checks the header, then each record in turn: length within the file, CRC32C, index one more
// than the previous (the first equal to the header's first_index), term not decreasing. In a
// segment of version 2, a record of kind hard_state_record_kind is a hard-state record instead
// (in version 1 it is an entry record like any other): index 0 and a payload of
// exactly hard_state_record_payload_bytes, or the scan stops there (ScanStop::other). Stops at
// the first record that fails, or at an all-zero record header (the preallocated tail). Pure:
// the caller decides whether a fault is a torn tail or corruption.
SegmentScan scan_segment(ByteSource& file);
inline SegmentScan scan_segment(ByteView file) {
  MemorySource source(file);
  return scan_segment(source);
}

// The torn-tail rule (documented in log.h, TORN TAIL OR CORRUPTION) for the bytes after the last
// valid record of the newest open segment, when scan.garbage_bytes > 0. Pure, like scan_segment:
// Log::open and verify_directory() both judge by it.
struct TailVerdict {
  bool torn = false;   // true: a crash artefact, cut at open; false: corruption
  std::string reason;  // for the warning or the fault, to be given with offset scan.data_end
};
TailVerdict judge_tail(ByteSource& file, const SegmentScan& scan);

// The entry kinds an application writes (raft: 1..3). The log stores kinds opaquely; recovery
// and verify treat any other kind as corruption when given a set (Options::known_kinds).
using KindSet = std::bitset<256>;
KindSet kinds(std::initializer_list<std::uint8_t> list);

// The checks of a segment's valid records that Log::open and verify_directory() share beyond
// scan_segment(): the first record's term against the previous segment's last term (a term
// regression across segments), and each record's kind against `known` (when given). nullopt when
// they pass; else the offset and reason of the first failure.
struct RecordFault {
  std::uint64_t offset = 0;
  std::string reason;
};
std::optional<RecordFault> check_records(const SegmentScan& scan,
                                         std::optional<Term> previous_last_term,
                                         const std::optional<KindSet>& known);

// Decodes the record at `meta.offset` of `file` again (checking its CRC), into `out`.
bool decode_record(ByteView file, const RecordMeta& meta, Entry& out);

// ---- hard state and snapshots ----------------------------------------------------------------
Bytes encode_hard_state(const HardState& state);
// nullopt with `why` set when the bytes are not a valid hard state file.
std::optional<HardState> decode_hard_state(ByteView bytes, std::string& why);

// The full file contents, checksum included.
Bytes encode_snapshot(const SnapshotFile& snapshot);
std::optional<SnapshotFile> decode_snapshot(ByteView bytes, std::string& why);

}  // namespace rpool::wal
