// wal::Log — the durable, segmented write-ahead log of one node, with its hard state and
// snapshot files.
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "base/bytes.h"
#include "base/types.h"
#include "wal/errc.h"
#include "wal/file.h"
#include "wal/format.h"

namespace rpool::wal {

enum class Preallocation {
  // Every new segment is written out with zeros (and fdatasynced) before it receives records, on
  // a helper thread ahead of need. Appends then overwrite allocated, written blocks, so an
  // fdatasync flushes data only and no file-system metadata (measured: see bench/wal/README.md).
  zero_fill,
  // fallocate(2): cheap to create, but on ext4 the first write into each unwritten extent turns
  // into a metadata change, so every fdatasync commits the journal.
  fallocate,
  // The segment grows with each append (size change on every fdatasync).
  none,
};

struct Options {
  std::uint64_t segment_bytes = 64u << 20;  // a segment is rolled over when a record won't fit
  Preallocation preallocation = Preallocation::zero_fill;
  bool prepare_in_background = true;  // prepare the next segment on a helper thread
  // The config's wal.fsync. false: sync() skips its fdatasync, so an acknowledged write can be lost
  // to a power failure (not to a process crash). Segment, hard state and snapshot files are still
  // synced when created. For tests and benchmarks only.
  bool fsync = true;
  // No lock, no repairs, no writes: for rpool-wal, which may run beside a live node. A torn tail
  // of the open segment is reported as a warning and left alone. A recovery that finds a file
  // gone or a record damaged is tried again a few times (a node may be renaming or writing it)
  // before open() reports it.
  bool read_only = false;
  std::size_t snapshots_kept = 2;  // the newest N snapshot files survive save_snapshot
  // The entry kinds the application writes (raft: 1..3); a record of any other kind fails open()
  // with errc::corrupt. nullopt: kinds are not checked.
  std::optional<KindSet> known_kinds;
  FileSystem* fs = nullptr;  // nullptr: posix_file_system()
  // Receives each recovery warning (one line). Default: "rpool-wal: warning: ..." on stderr.
  std::function<void(const std::string&)> warn;
};

inline constexpr std::uint64_t segment_bytes_min = 4096;  // the node's config enforces 64 KiB
inline constexpr std::uint64_t segment_bytes_max = 1u << 30;
static_assert(segment_bytes_min > segment_header_bytes + record_header_bytes);

// One segment file, as stat shows it.
struct SegmentInfo {
  std::string name;
  bool open = false;
  LogIndex first_index;
  LogIndex last_index;           // first_index - 1 when empty
  std::uint64_t data_bytes = 0;  // header + records
  std::uint64_t file_bytes = 0;  // on disk, preallocation included
};

struct OpenResult;

// The log of one data directory.
//
// THREADING. A Log is not thread-safe: one thread (the node's WAL thread) makes every call. The
// only thread inside is the helper that zero-fills the next segment file; it shares nothing
// with the caller but the file system.
//
// DURABILITY. append() writes records to the open segment without syncing; sync() makes every
// earlier append durable with one fdatasync (group commit). A failed write or fsync poisons the
// log: every later mutation returns errc::poisoned until the log is reopened, because after a
// failed fsync the kernel may have dropped the dirty pages, and retrying would falsely succeed.
// Files are created, renamed and removed only with an fsync of the directory afterwards.
//
// ON-DISK FORMAT (version 1; all integers little-endian). A data directory holds:
//
//   LOCK                               flock(LOCK_EX) by the node; empty
//   hardstate                          the hard state, replaced atomically
//   open-<seq:20>.wal                  the open segment (normally one), named by a sequence
//   <first:20>-<last:20>.wal           closed segments, named by their inclusive index range
//   snapshot-<index:20>-<term:20>.snap snapshot files, the newest Options::snapshots_kept
//   next.spare, *.tmp                  work files; removed at open
//
// Segment file:
//   offset  size  field
//   0       8     magic "RPOOLWAL"
//   8       4     format version = 2 (1: written before hard-state records, read too)
//   12      4     reserved, 0
//   16      8     first_index: the index of the segment's first record
//   24      4     reserved, 0
//   28      4     CRC32C of bytes 0..27
//   32      ...   records, back to back, then zeros up to the preallocated size (open segment)
// Record (25-byte header + payload):
//   0       4     payload length L (at most entry_payload_bytes_max)
//   4       4     CRC32C of bytes 0..3 followed by bytes 8..(25+L-1): length, term, index, kind,
//                 payload
//   8       8     term
//   16      8     index: first_index for the first record, then +1 each
//   24      1     kind (opaque to the log)
//   25      L     payload (opaque to the log)
// An all-zero record header ends the records. A closed segment is cut to exactly its records.
//
// Hard-state record (41 bytes), among the records of a segment:
//   0 4 payload length = 16 | 4 4 CRC32C as for an entry record | 8 8 current_term |
//   16 8 index = 0 | 24 1 kind = 0xff | 25 8 voted_for | 33 8 commit_index
// It takes no place in the index sequence (the next entry record holds the index after the
// previous entry record's) and none in the entries' term order. Kind 0xff is never an entry's.
// Only segments of version 2 hold them (format.h, segment_version): a build older than this
// record refuses such a segment rather than misread it.
//
// hardstate (48 bytes), written as hardstate.tmp, fdatasynced, renamed over, directory fsynced:
//   0 8 magic "RPOOLHST" | 8 4 version = 1 | 12 4 reserved | 16 8 current_term | 24 8 voted_for |
//   32 8 commit_index | 40 4 CRC32C of bytes 0..39 | 44 4 reserved
//
// snapshot file, written as snapshot.tmp, fdatasynced, renamed, directory fsynced:
//   0 8 magic "RPOOLSNP" | 8 4 version = 1 | 12 4 reserved | 16 8 index | 24 8 term |
//   32 8 metadata length M | 40 8 data length D | 48 M metadata | 48+M D data |
//   48+M+D 4 CRC32C of every byte before it | 52+M+D 4 reserved
//
// RECOVERY (open). Every record of every segment is read and checked (CRC, index sequence,
// term order). Segments must be contiguous. Only the newest open segment may end in a torn tail,
// and only by the rule below; it is cut back to the last whole record, zeroed, synced and reported
// through Options::warn with the byte count. Any other damage (a bad record in a closed segment,
// an index gap, a name that disagrees with the contents, a tail the rule does not allow) fails
// open() with errc::corrupt, error_detail() "<file>: offset <n>: <reason>", and nothing on disk
// changed. The log never cuts a record by itself beyond the rule; `rpool-wal repair` does, on
// request, keeping what it cuts.
//
// TORN TAIL OR CORRUPTION. Two facts bound what a crash can leave. (1) append() never has more
// than write_window_bytes (256 KiB) of record bytes written and unsynced: it syncs before a write
// would pass that, and writes a record longer than a window alone, after syncing its header. (2)
// Every byte not yet durable has zero as its old content (STALE RECORDS), and a disk writes a
// 512-byte sector (sector_bytes) whole or not at all. So, with D the offset of the first record
// that does not check out in the newest open segment and E the end of its last non-zero byte,
// [D, E) is a torn tail exactly when
//   (a) the record at D looks unfinished: its header is all zero, or it runs past the end of the
//       file, or one of the sectors it overlaps is all zero within it (a record with a wrong
//       index or a falling term, an impossible length, or a bad checksum with every sector
//       written is changed data, never a crash); and
//   (b) E lies within one write's reach of D: E - D <= write_window_bytes, or, when the header at
//       D declares a record longer than a window, E <= the end of that record and no valid
//       record of the next index starts inside it (else the length field itself is damaged).
// A flipped byte fails (a); a zeroed sector or a cut with more than 256 KiB of records behind it
// fails (b), so neither takes acknowledged records with it. What the rule cannot tell apart is
// a zeroed sector within the last 256 KiB from an unfinished write: that is cut as torn. (A
// commit index in the hard state beyond the cut is then reported by check_recovery(), recovery.h.)
// Zeroing (a truncated suffix, a cut tail) keeps to the same reach: it goes backwards one window
// at a time, each slice synced.
//
// HARD STATE. The term, vote and commit index are kept in two places: hard-state records in the
// segments (append_hard_state, the node's path: no file to create, rename or fsync besides the
// entries' own fdatasync), and the hardstate file (save_hard_state, a checkpoint). A node's
// hard state only moves forwards (format.h, hard_state_before), so the latest is the greatest
// copy found: open() takes the greatest of the file and every hard-state record. An older
// directory has only the file, and opens with it. Before the log removes the bytes of the
// latest record (compact, truncate_suffix, reset), it saves that state to the file first, so
// no crash can leave an older state as the greatest copy.
//
// STALE RECORDS. Because segment space is reused (truncate_suffix, torn tails), the bytes after
// the last record of the open segment are zeroed and synced before a new record can land in front
// of them; otherwise an old record could line up behind a new one and come back to life.
class Log {
 public:
  // Opens (creating if needed) the log in `dir` and recovers it; see RECOVERY above.
  static OpenResult open(const std::string& dir, Options options = {});

  ~Log();
  Log(const Log&) = delete;
  Log& operator=(const Log&) = delete;

  // Appends entries after last_index(), without syncing. entries[0].index must be
  // last_index() + 1 (first_index() on an empty log), indexes must be consecutive and terms not
  // decreasing: a violation is a bug in the caller and asserts. A rollover to a new segment
  // syncs and closes the full one (the only sync inside append).
  std::error_code append(std::span<const Entry> entries);

  // One fdatasync making every earlier append durable. Cheap when nothing is pending.
  std::error_code sync();

  // Removes the entries with index >= from (a conflicting tail replaced by a new leader), durably:
  // when it returns ok, no removed entry can reappear after a crash. from must be within
  // [first_index(), last_index() + 1]; errc::compacted below.
  std::error_code truncate_suffix(LogIndex from);

  // Deletes the closed segments whose entries all have index <= up_to (the caller has a snapshot
  // covering them). first_index() moves to the first remaining segment, so up to a segment's worth
  // of entries at or below up_to may remain readable.
  std::error_code compact(LogIndex up_to);

  // Discards every entry; the next append must be `next_index` (after installing a snapshot at
  // next_index - 1 that is not contiguous with this log). A crash during reset() leaves a prefix
  // of the old log, possibly empty with first_index() 1: after opening, the caller compares the
  // log with its latest snapshot and calls reset() again if they are not contiguous.
  std::error_code reset(LogIndex next_index);

  // Appends the entries [lo, hi) to `out`, stopping early once their payloads exceed bytes_max
  // (but always at least one). Needs first_index() <= lo <= hi <= last_index() + 1:
  // errc::compacted below, errc::unavailable above.
  std::error_code read(LogIndex lo, LogIndex hi, std::vector<Entry>& out,
                       std::uint64_t bytes_max = UINT64_MAX) const;
  std::error_code term(LogIndex index, Term& out) const;

  // The first entry still held, and the last. An empty log has last_index() == first_index() - 1
  // (first_index() is 1 for a new log, or what reset() set).
  LogIndex first_index() const;
  LogIndex last_index() const;
  Term last_term() const;  // Term(0) when empty

  // Blocks until the helper thread has the next segment file ready (returns at once when it is,
  // or when there is no helper). For benchmarks and tests that must not measure the preparation.
  std::error_code wait_for_next_segment();

  // Hard state, as a record in the open segment (see HARD STATE below): written like an append,
  // behind the entries appended before it, and durable with the next sync(). A crash keeps it
  // only if it keeps every entry appended before it, so a commit index never outlives the
  // entries it points at.
  std::error_code append_hard_state(const HardState& state);
  // Hard state, as the hardstate file: saved atomically (temp file, fdatasync, rename, directory
  // fsync), a checkpoint that needs no segment. For a new directory, tools and the operator's
  // commands; the log writes it itself before it removes the segment holding the latest record.
  std::error_code save_hard_state(const HardState& state);
  // The latest hard state (HARD STATE below): the zero state when none was ever saved. Reads
  // the file again (errc::corrupt when it does not check out) and takes the later of it and the
  // latest record recovery found or append_hard_state() wrote.
  std::error_code load_hard_state(HardState& out) const;

  // A small file the application keeps beside the log (rpool: the node's cluster id), saved
  // atomically like the hard state. `name` is 1-32 of [a-z0-9-] and not a name the log uses;
  // its content is the application's (no checksum is added). load gives errc::not_found when
  // absent.
  std::error_code save_file(std::string_view name, ByteView bytes);
  std::error_code load_file(std::string_view name, Bytes& out) const;

  // Snapshot files (see the format above); keeps the newest Options::snapshots_kept.
  std::error_code save_snapshot(const SnapshotFile& snapshot);
  // write_snapshot_file() below writes and fdatasyncs the file this many bytes at a time.
  static constexpr std::size_t snapshot_write_bytes = std::size_t{1} << 20;
  // save_snapshot() in two steps, for a caller whose appends must not wait while a large file is
  // written. write_snapshot_file() writes the file, fdatasyncs it and renames it into place
  // (then fsyncs `dir`); it touches no Log, only `fs`, so it may run on another thread while the
  // log appends (but not beside another write_snapshot_file() in the same `dir`). On failure
  // `detail` names the file and the call. keep_snapshots() then removes all but the newest
  // Options::snapshots_kept, as save_snapshot() does. A crash between the two leaves one more
  // snapshot file, which recovery treats like any other.
  static std::error_code write_snapshot_file(FileSystem& fs, const std::string& dir,
                                             const SnapshotFile& snapshot, std::string& detail);
  std::error_code keep_snapshots(const SnapshotFile& newest);
  // The newest snapshot, checksum verified; nullopt when there is none; errc::corrupt (with
  // error_detail()) when the newest one is damaged: an older one is never used silently instead.
  std::error_code load_latest_snapshot(std::optional<SnapshotFile>& out) const;

  std::vector<SegmentInfo> segments() const;
  const std::vector<std::string>& warnings() const { return warnings_; }
  // One line naming the file, offset and reason of the last corrupt/IO error returned.
  const std::string& error_detail() const { return error_detail_; }
  bool poisoned() const { return poisoned_; }
  const std::string& dir() const { return dir_; }

  // Asserts the in-memory structure: segments contiguous, only the last one open, offsets
  // increasing and within data_end, terms not decreasing, byte totals consistent.
  void check_invariants() const;

 private:
  struct Segment {
    std::string name;
    bool open = false;
    std::uint64_t seq = 0;                    // open segments only
    std::uint32_t version = segment_version;  // from its header (format.h)
    LogIndex first_index;
    std::vector<std::uint64_t> offsets;  // record i (index first_index + i) starts here
    std::vector<std::uint32_t> payload_bytes;
    std::vector<Term> terms;
    // The last hard-state record written or found in the segment (its offset), if any.
    std::optional<std::uint64_t> hard_state_offset;
    std::uint64_t data_end = 0;   // header + records
    std::uint64_t dirty_end = 0;  // open: past the last byte that may be non-zero; >= data_end
    std::uint64_t file_bytes = 0;
    std::unique_ptr<File> file;
    LogIndex last_index() const { return first_index + offsets.size() - 1; }
  };

  Log(std::string dir, Options options);
  std::error_code recover();
  std::error_code recover_segment(const std::string& name, bool open, std::uint64_t seq,
                                  bool last_open, const std::optional<LogIndex>& expected_first);
  std::error_code writable();
  // Writes `bytes` to `tmp`, fdatasyncs it, renames it over `final_path` and fsyncs the
  // directory: the file is replaced whole or not at all.
  std::error_code replace_file(const std::string& tmp, const std::string& final_path,
                               ByteView bytes);
  std::error_code fail(std::error_code ec, std::string detail);  // poisons on I/O errors
  std::error_code corrupt(const std::string& file, std::uint64_t offset, const std::string& why);
  std::error_code prepare_segment_file(const std::string& path) const;
  std::error_code start_segment(LogIndex first_index);
  std::error_code close_open_segment();
  // Zeroes [from, to) of the open segment durably, backwards one write window at a time (a long
  // record's header last), each slice synced: a crash meanwhile leaves non-zero bytes after the
  // first damaged record only within the torn-tail rule's reach.
  std::error_code zero_range(Segment& segment, std::uint64_t from, std::uint64_t to);
  // Syncs the open segment's record bytes so far, to keep the next write within one window.
  std::error_code sync_window(Segment& segment);
  std::error_code remove_last_segment();
  // Whether the latest hard state lives only in a record at or after (segment i, offset): then
  // removing those bytes would lose it.
  bool hard_state_record_at_or_after(std::size_t i, std::uint64_t offset) const;
  // Saves the latest hard state to the file when its latest record is about to be removed.
  std::error_code checkpoint_hard_state();
  std::error_code reopen_last_as_open();
  void kick_spare();
  std::error_code take_spare(const std::string& path);
  std::string path(const std::string& name) const { return join_path(dir_, name); }
  void warn(const std::string& message);
  const Segment* segment_of(LogIndex index) const;

  std::string dir_;
  Options options_;
  FileSystem& fs_;
  std::unique_ptr<DirLock> lock_;
  std::vector<Segment> segments_;  // ascending and contiguous; only the last may be open
  LogIndex empty_first_index_{1};  // first_index() while segments_ hold no entry
  std::uint64_t next_seq_ = 1;     // for the next open segment
  bool unsynced_ = false;          // appended since the last successful sync
  // Record bytes written to the open segment since its last sync; <= write_window_bytes, except
  // for one record longer than that, written alone (format.h, write_window_bytes).
  std::uint64_t unsynced_bytes_ = 0;
  bool poisoned_ = false;
  // The latest hard state (HARD STATE above), and whether it is (also) in a record: then the
  // latest record is the last one in segment order, in the last segment with a hard_state_offset.
  HardState hard_state_;
  bool hard_state_in_record_ = false;
  bool hard_state_unordered_ = false;   // recovery found an older record after the latest
  std::future<std::error_code> spare_;  // the helper zero-filling next.spare
  bool spare_ready_ = false;            // next.spare is complete (spare_ was collected)
  std::vector<std::string> warnings_;
  mutable std::string error_detail_;
  Bytes scratch_;
};

struct OpenResult {
  std::unique_ptr<Log> log;  // set exactly when !error
  std::error_code error;
  std::string detail;  // one line: the file, offset and reason, when error
};

}  // namespace rpool::wal
