#include "wal/format.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include <fmt/format.h>

#include "base/assert.h"
#include "wal/crc32c.h"
#include "wal/file.h"

namespace rpool::wal {
namespace {

bool all_zero(ByteView b) {
  return std::all_of(b.begin(), b.end(), [](std::uint8_t x) { return x == 0; });
}

// Offset just past the last non-zero byte of the source at or after `from` (== from if none).
std::error_code last_nonzero_end(ByteSource& file, std::uint64_t from, std::uint64_t& out) {
  constexpr std::uint64_t chunk = 1u << 20;
  out = from;
  for (std::uint64_t at = from; at < file.size(); at += chunk) {
    const std::size_t n = static_cast<std::size_t>(std::min(chunk, file.size() - at));
    ByteView v;
    if (auto ec = file.view(at, n, v)) return ec;
    for (std::size_t i = n; i > 0; --i) {
      if (v[i - 1] != 0) {
        out = at + i;
        break;
      }
    }
  }
  return {};
}

bool parse_u64(std::string_view s, std::uint64_t& out) {
  if (s.size() != 20) return false;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

std::uint32_t record_crc(ByteView record) {
  // The CRC covers the length field and everything after the CRC field.
  const std::uint32_t c = crc32c(record.first(4));
  return crc32c(c, record.subspan(8));
}

}  // namespace

std::error_code FileSource::view(std::uint64_t offset, std::size_t len, ByteView& out) {
  RPOOL_ASSERT(offset <= size_ && len <= size_ - offset);
  if (offset < buffer_offset_) {
    buffer_.clear();  // backwards (judge_tail looks at a tail twice): read again from here
    buffer_offset_ = offset;
  }
  const std::uint64_t buffered_end = buffer_offset_ + buffer_.size();
  if (offset + len > buffered_end) {
    // Keep what is still wanted, then read a window's worth (or the whole request) behind it.
    const std::size_t keep =
        offset < buffered_end ? static_cast<std::size_t>(buffered_end - offset) : 0;
    if (keep > 0) std::memmove(buffer_.data(), buffer_.data() + (offset - buffer_offset_), keep);
    const std::uint64_t want =
        std::min<std::uint64_t>(std::max(len, window_bytes_), size_ - offset);
    buffer_.resize(static_cast<std::size_t>(want));
    buffer_offset_ = offset;
    if (auto ec = file_.read_at(offset + keep, std::span(buffer_).subspan(keep))) return ec;
  }
  out = ByteView(buffer_).subspan(static_cast<std::size_t>(offset - buffer_offset_), len);
  return {};
}

std::string closed_segment_name(LogIndex first, LogIndex last) {
  return fmt::format("{:020}-{:020}.wal", first.value(), last.value());
}
std::string open_segment_name(std::uint64_t seq) { return fmt::format("open-{:020}.wal", seq); }
std::string snapshot_name(LogIndex index, Term term) {
  return fmt::format("snapshot-{:020}-{:020}.snap", index.value(), term.value());
}

ParsedName parse_name(std::string_view name) {
  ParsedName p;
  std::uint64_t a = 0, b = 0;
  if (name == lock_file_name) {
    p.kind = FileKind::lock;
  } else if (name == hard_state_file_name) {
    p.kind = FileKind::hard_state;
  } else if (name.ends_with(".tmp") || name == spare_file_name) {
    p.kind = FileKind::temporary;
  } else if (name.size() == 45 && name.ends_with(".wal") && name[20] == '-' &&
             parse_u64(name.substr(0, 20), a) && parse_u64(name.substr(21, 20), b)) {
    p.kind = FileKind::closed_segment;
    p.first = LogIndex(a);
    p.last = LogIndex(b);
  } else if (name.size() == 29 && name.starts_with("open-") && name.ends_with(".wal") &&
             parse_u64(name.substr(5, 20), a)) {
    p.kind = FileKind::open_segment;
    p.seq = a;
  } else if (name.size() == 55 && name.starts_with("snapshot-") && name.ends_with(".snap") &&
             name[29] == '-' && parse_u64(name.substr(9, 20), a) &&
             parse_u64(name.substr(30, 20), b)) {
    p.kind = FileKind::snapshot;
    p.first = LogIndex(a);
    p.term = Term(b);
  }
  return p;
}

void encode_segment_header(LogIndex first_index, Bytes& out) {
  const std::size_t at = out.size();
  ByteWriter w(out);
  w.raw(as_bytes(segment_magic));
  w.u32(segment_version);
  w.u32(0);
  w.u64(first_index.value());
  w.u32(0);
  w.u32(crc32c(ByteView(out).subspan(at, 28)));
  RPOOL_ASSERT_OP(out.size() - at, ==, segment_header_bytes);
}

void encode_record(const Entry& entry, Bytes& out) {
  RPOOL_ASSERT_OP(entry.payload.size(), <=, entry_payload_bytes_max);
  RPOOL_ASSERT(entry.index.value() > 0);
  const std::size_t at = out.size();
  ByteWriter w(out);
  w.u32(static_cast<std::uint32_t>(entry.payload.size()));
  w.u32(0);  // the CRC, filled in below
  w.u64(entry.term.value());
  w.u64(entry.index.value());
  w.u8(entry.kind);
  w.raw(entry.payload);
  const ByteView record = ByteView(out).subspan(at);
  RPOOL_ASSERT_OP(record.size(), ==, record_bytes(entry.payload.size()));
  store_u32le(out.data() + at + 4, record_crc(record));
}

bool hard_state_before(const HardState& a, const HardState& b) {
  if (a.current_term != b.current_term) return a.current_term < b.current_term;
  const bool a_voted = a.voted_for.value() != 0;
  const bool b_voted = b.voted_for.value() != 0;
  if (a_voted != b_voted) return b_voted;
  return a.commit_index < b.commit_index;
}

void encode_hard_state_record(const HardState& state, Bytes& out) {
  const std::size_t at = out.size();
  ByteWriter w(out);
  w.u32(hard_state_record_payload_bytes);
  w.u32(0);  // the CRC, filled in below
  w.u64(state.current_term.value());
  w.u64(0);  // outside the index sequence
  w.u8(hard_state_record_kind);
  w.u64(state.voted_for.value());
  w.u64(state.commit_index.value());
  const ByteView record = ByteView(out).subspan(at);
  RPOOL_ASSERT_OP(record.size(), ==, hard_state_record_bytes);
  store_u32le(out.data() + at + 4, record_crc(record));
}

SegmentScan scan_segment(ByteSource& file) {
  SegmentScan s;
  s.file_bytes = file.size();
  // Ends the scan at `pos`, measuring the non-zero bytes from there on.
  auto finish = [&](std::uint64_t pos) -> SegmentScan& {
    s.data_end = pos;
    std::uint64_t end = pos;
    if (auto ec = last_nonzero_end(file, pos, end)) s.read_error = ec;
    s.garbage_bytes = end - pos;
    return s;
  };
  ByteView header;
  if (auto ec = file.view(0, std::min<std::uint64_t>(file.size(), segment_header_bytes), header)) {
    s.read_error = ec;
    return s;
  }
  if (header.size() < segment_header_bytes) {
    s.header_zero = all_zero(header);
    s.fault = fmt::format("segment header cut short ({} of {} bytes)", header.size(),
                          segment_header_bytes);
    return finish(0);
  }
  ByteReader h(header);
  const ByteView magic = h.raw(8);
  const std::uint32_t version = h.u32();
  h.u32();
  const std::uint64_t first = h.u64();
  h.u32();
  const std::uint32_t crc = h.u32();
  if (all_zero(header)) {
    s.header_zero = true;
    s.fault = "segment header is zero-filled";
  } else if (!std::equal(magic.begin(), magic.end(), segment_magic.begin())) {
    s.fault = "bad segment magic";
  } else if (crc != crc32c(header.first(28))) {
    s.fault = "segment header checksum mismatch";
  } else if (version < segment_version_min || version > segment_version) {
    s.fault = fmt::format("unsupported segment format version {}", version);
  } else if (first == 0) {
    s.fault = "segment header names first index 0";
  }
  if (s.fault) return finish(0);
  s.header_ok = true;
  s.version = version;
  s.first_index = LogIndex(first);

  std::uint64_t pos = segment_header_bytes;
  LogIndex expected = s.first_index;
  Term last_term;
  const std::uint64_t size = file.size();
  while (pos < size) {
    const std::uint64_t left = size - pos;
    ByteView rh;
    if (left < record_header_bytes) {
      if (auto ec = file.view(pos, static_cast<std::size_t>(left), rh)) {
        s.read_error = ec;
        return s;
      }
      if (!all_zero(rh)) {
        s.fault = "record header cut short by the end of the file";
        s.stop = ScanStop::cut_short;
      }
      break;
    }
    if (auto ec = file.view(pos, record_header_bytes, rh)) {
      s.read_error = ec;
      return s;
    }
    const std::uint32_t length = load_u32le(rh.data());
    const std::uint32_t stored_crc = load_u32le(rh.data() + 4);
    const Term term(load_u64le(rh.data() + 8));
    const LogIndex index(load_u64le(rh.data() + 16));
    if (length == 0 && stored_crc == 0 && all_zero(rh)) {
      s.stop =
          ScanStop::zero_header;  // the zero-filled, preallocated tail (end, if only zeros follow)
      break;
    }
    if (length > entry_payload_bytes_max) {
      s.fault =
          fmt::format("record length {} exceeds the maximum {}", length, entry_payload_bytes_max);
      s.stop = ScanStop::other;
      break;
    }
    if (record_bytes(length) > left) {
      s.fault = fmt::format("record of {} bytes cut short by the end of the file ({} bytes left)",
                            record_bytes(length), left);
      s.stop = ScanStop::cut_short;
      break;
    }
    const std::uint8_t kind = rh[24];
    ByteView record;
    if (auto ec = file.view(pos, static_cast<std::size_t>(record_bytes(length)), record)) {
      s.read_error = ec;
      return s;
    }
    if (record_crc(record) != stored_crc) {
      s.fault = "record checksum mismatch";
      s.stop = ScanStop::checksum;
      break;
    }
    if (kind == hard_state_record_kind && s.version >= segment_version_hard_state) {
      if (index.value() != 0 || length != hard_state_record_payload_bytes) {
        s.fault = fmt::format("hard-state record with index {} and {} payload bytes (expected 0 "
                              "and {})",
                              index, length, hard_state_record_payload_bytes);
        s.stop = ScanStop::other;
        break;
      }
      const ByteView payload = record.subspan(record_header_bytes);
      s.hard_states.push_back({pos, HardState{term, NodeId(load_u64le(payload.data())),
                                              LogIndex(load_u64le(payload.data() + 8))}});
      pos += record.size();
      continue;
    }
    if (index != expected) {
      s.fault = fmt::format("record holds index {}, expected {}", index, expected);
      s.stop = ScanStop::other;
      break;
    }
    if (term < last_term) {
      s.fault =
          fmt::format("record term {} is below the previous record's term {}", term, last_term);
      s.stop = ScanStop::other;
      break;
    }
    s.records.push_back({pos, term, index, kind, length});
    last_term = term;
    ++expected;
    pos += record.size();
  }
  finish(pos);
  if (s.fault && !s.read_error) RPOOL_ASSERT(s.garbage_bytes > 0);
  if (s.stop == ScanStop::zero_header && s.garbage_bytes == 0) s.stop = ScanStop::end;
  if (!s.fault) RPOOL_ASSERT(s.stop == ScanStop::end || s.stop == ScanStop::zero_header);
  return s;
}

TailVerdict judge_tail(ByteSource& file, const SegmentScan& scan) {
  RPOOL_ASSERT(scan.header_ok);
  RPOOL_ASSERT(scan.garbage_bytes > 0);
  const std::uint64_t from = scan.data_end;                     // D: the first bad byte
  const std::uint64_t nonzero_end = from + scan.garbage_bytes;  // E: past the last non-zero byte
  const std::uint64_t size = file.size();
  const std::string what =
      scan.fault ? *scan.fault
                 : std::string("an all-zero record header with non-zero bytes after it");
  TailVerdict v;
  if (scan.stop == ScanStop::other) {
    v.reason = fmt::format(
        "{}: no unfinished write leaves this (only zero sectors or a short file)", what);
    return v;
  }
  // The record that starts at D, as far as its header tells: its extent, and whether it is one
  // record longer than a write window (written alone, header synced first).
  ByteView header;
  const std::size_t header_len =
      static_cast<std::size_t>(std::min<std::uint64_t>(record_header_bytes, size - from));
  if (auto ec = file.view(from, header_len, header)) {
    v.reason = fmt::format("{}: cannot read it again: {}", what, ec.message());
    return v;
  }
  std::uint64_t length = 0;
  for (std::size_t i = 0; i < 4 && i < header.size(); ++i)
    length |= std::uint64_t{header[i]} << (8 * i);
  const bool header_present = scan.stop != ScanStop::zero_header && header.size() >= 4;
  std::uint64_t extent_end = std::min(size, from + record_header_bytes);
  if (header_present && length <= entry_payload_bytes_max)
    extent_end = std::min(size, from + record_bytes(length));
  // Shape: what an unfinished write leaves is a zero header, a file cut short, or at least one
  // sector of the record still zero. A record with every sector present and a bad checksum has
  // changed bytes: no crash does that.
  bool shaped = scan.stop == ScanStop::zero_header || scan.stop == ScanStop::cut_short;
  for (std::uint64_t at = from; !shaped && at < extent_end;) {
    const std::uint64_t sector_end = std::min(extent_end, (at / sector_bytes + 1) * sector_bytes);
    ByteView part;
    if (auto ec = file.view(at, static_cast<std::size_t>(sector_end - at), part)) {
      v.reason = fmt::format("{}: cannot read it again: {}", what, ec.message());
      return v;
    }
    shaped = all_zero(part);
    at = sector_end;
  }
  if (!shaped) {
    v.reason = fmt::format(
        "{}, with every sector of the record written: a crash leaves whole sectors "
        "zero or the file short, never changed bytes",
        what);
    return v;
  }
  // Reach: one write window from D, or the one long record that starts at D.
  const bool long_record = header_present && length <= entry_payload_bytes_max &&
                           record_bytes(length) > write_window_bytes;
  const std::uint64_t reach_end = from + (long_record ? record_bytes(length) : write_window_bytes);
  if (long_record && nonzero_end > from + write_window_bytes) {
    // A length field is not checked on its own: a damaged one could claim the rest of the file.
    // A genuine long record holds no record of the next index inside it; look for one.
    const std::uint64_t next_index = scan.first_index.value() + scan.records.size() + 1;
    std::uint64_t found = 0;
    constexpr std::uint64_t chunk = 1u << 20;
    for (std::uint64_t at = from + 1; !found && at + record_header_bytes <= nonzero_end;
         at += chunk) {
      const std::uint64_t len = std::min(chunk + record_header_bytes, nonzero_end - at);
      ByteView window;
      if (file.view(at, static_cast<std::size_t>(len), window)) window = {};
      std::vector<std::uint64_t> candidates;
      for (std::uint64_t i = 0; i + record_header_bytes <= window.size() && i < chunk; ++i) {
        if (load_u64le(window.data() + i + 16) == next_index) candidates.push_back(at + i);
      }
      for (const std::uint64_t c : candidates) {
        ByteView h;
        if (file.view(c, record_header_bytes, h)) continue;
        const std::uint32_t len_c = load_u32le(h.data());
        const std::uint32_t crc_c = load_u32le(h.data() + 4);
        if (len_c > entry_payload_bytes_max || c + record_bytes(len_c) > size) continue;
        ByteView rec;
        if (file.view(c, static_cast<std::size_t>(record_bytes(len_c)), rec)) continue;
        if (record_crc(rec) == crc_c) {
          found = c;
          break;
        }
      }
    }
    if (found) {
      v.reason = fmt::format(
          "{}, and its length field claims {} bytes but a valid record of index {} starts at "
          "offset {} inside them: the header is damaged",
          what, record_bytes(length), next_index, found);
      return v;
    }
  }
  if (nonzero_end > reach_end) {
    v.reason = fmt::format(
        "{}, with non-zero bytes up to offset {} ({} bytes after it): beyond the {} bytes "
        "one unfinished write can reach, so records synced after it would be lost",
        what, nonzero_end, nonzero_end - from, reach_end - from);
    return v;
  }
  v.torn = true;
  v.reason = what;
  return v;
}

KindSet kinds(std::initializer_list<std::uint8_t> list) {
  KindSet set;
  for (const std::uint8_t k : list) set.set(k);
  return set;
}

std::optional<RecordFault> check_records(const SegmentScan& scan,
                                         std::optional<Term> previous_last_term,
                                         const std::optional<KindSet>& known) {
  if (previous_last_term && !scan.records.empty() &&
      scan.records.front().term < *previous_last_term) {
    return RecordFault{scan.records.front().offset,
                       fmt::format("record term {} is below the previous segment's last term {}",
                                   scan.records.front().term, *previous_last_term)};
  }
  if (known) {
    for (const RecordMeta& r : scan.records) {
      if (!known->test(r.kind)) {
        return RecordFault{r.offset,
                           fmt::format("entry {} has kind {}, which is not a kind this log holds",
                                       r.index, r.kind)};
      }
    }
  }
  return std::nullopt;
}

bool decode_record(ByteView file, const RecordMeta& meta, Entry& out) {
  if (meta.offset > file.size() || file.size() - meta.offset < record_bytes(meta.payload_bytes)) {
    return false;
  }
  const ByteView record = file.subspan(meta.offset, record_bytes(meta.payload_bytes));
  if (load_u32le(record.data()) != meta.payload_bytes) return false;
  if (record_crc(record) != load_u32le(record.data() + 4)) return false;
  out.term = Term(load_u64le(record.data() + 8));
  out.index = LogIndex(load_u64le(record.data() + 16));
  out.kind = record[24];
  out.payload.assign(record.begin() + record_header_bytes, record.end());
  return out.term == meta.term && out.index == meta.index;
}

Bytes encode_hard_state(const HardState& state) {
  // The buffer starts as the magic rather than an insert into an empty vector, whose
  // reallocation path GCC 12 at -O3 misreads as an overflow (-Wstringop-overflow).
  Bytes out(hard_state_magic.begin(), hard_state_magic.end());
  ByteWriter w(out);
  w.u32(format_version);
  w.u32(0);
  w.u64(state.current_term.value());
  w.u64(state.voted_for.value());
  w.u64(state.commit_index.value());
  w.u32(crc32c(out));
  w.u32(0);
  RPOOL_ASSERT_OP(out.size(), ==, hard_state_bytes);
  return out;
}

std::optional<HardState> decode_hard_state(ByteView bytes, std::string& why) {
  if (bytes.size() != hard_state_bytes) {
    why = fmt::format("hard state file has {} bytes, expected {}", bytes.size(), hard_state_bytes);
    return std::nullopt;
  }
  ByteReader r(bytes);
  const ByteView magic = r.raw(8);
  const std::uint32_t version = r.u32();
  r.u32();
  HardState s;
  s.current_term = Term(r.u64());
  s.voted_for = NodeId(r.u64());
  s.commit_index = LogIndex(r.u64());
  const std::uint32_t crc = r.u32();
  if (!std::equal(magic.begin(), magic.end(), hard_state_magic.begin())) {
    why = "bad hard state magic";
  } else if (crc != crc32c(bytes.first(40))) {
    why = "hard state checksum mismatch";
  } else if (version != format_version) {
    why = fmt::format("unsupported hard state version {}", version);
  } else {
    return s;
  }
  return std::nullopt;
}

Bytes encode_snapshot(const SnapshotFile& snapshot) {
  Bytes out(snapshot_magic.begin(), snapshot_magic.end());  // as in encode_hard_state
  out.reserve(snapshot_header_bytes + snapshot.metadata.size() + snapshot.data.size() +
              snapshot_trailer_bytes);
  ByteWriter w(out);
  w.u32(format_version);
  w.u32(0);
  w.u64(snapshot.index.value());
  w.u64(snapshot.term.value());
  w.u64(snapshot.metadata.size());
  w.u64(snapshot.data.size());
  RPOOL_ASSERT_OP(out.size(), ==, snapshot_header_bytes);
  w.raw(snapshot.metadata);
  w.raw(snapshot.data);
  w.u32(crc32c(out));
  w.u32(0);
  return out;
}

std::optional<SnapshotFile> decode_snapshot(ByteView bytes, std::string& why) {
  if (bytes.size() < snapshot_header_bytes + snapshot_trailer_bytes) {
    why = fmt::format("snapshot file of {} bytes is shorter than its header and trailer",
                      bytes.size());
    return std::nullopt;
  }
  ByteReader r(bytes);
  const ByteView magic = r.raw(8);
  const std::uint32_t version = r.u32();
  r.u32();
  SnapshotFile s;
  s.index = LogIndex(r.u64());
  s.term = Term(r.u64());
  const std::uint64_t metadata_bytes = r.u64();
  const std::uint64_t data_bytes = r.u64();
  const std::uint64_t body = bytes.size() - snapshot_header_bytes - snapshot_trailer_bytes;
  if (!std::equal(magic.begin(), magic.end(), snapshot_magic.begin())) {
    why = "bad snapshot magic";
    return std::nullopt;
  }
  if (version != format_version) {
    why = fmt::format("unsupported snapshot version {}", version);
    return std::nullopt;
  }
  if (metadata_bytes > body || data_bytes != body - metadata_bytes) {
    why = fmt::format("snapshot sizes ({} + {}) do not match the file ({} body bytes)",
                      metadata_bytes, data_bytes, body);
    return std::nullopt;
  }
  const std::uint64_t crc_at = bytes.size() - snapshot_trailer_bytes;
  if (load_u32le(bytes.data() + crc_at) != crc32c(bytes.first(crc_at))) {
    why = "snapshot checksum mismatch";
    return std::nullopt;
  }
  const ByteView m = bytes.subspan(snapshot_header_bytes, metadata_bytes);
  const ByteView d = bytes.subspan(snapshot_header_bytes + metadata_bytes, data_bytes);
  s.metadata.assign(m.begin(), m.end());
  s.data.assign(d.begin(), d.end());
  return s;
}

}  // namespace rpool::wal
