#include "wal/repair.h"

#include <algorithm>

#include <fmt/format.h>

#include "wal/errc.h"
#include "wal/verify.h"

namespace rpool::wal {
namespace {

bool is_segment(const std::string& name) {
  const FileKind k = parse_name(name).kind;
  return k == FileKind::closed_segment || k == FileKind::open_segment;
}

std::string base_name(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// A name for the cut bytes that no earlier repair used.
std::string free_broken_name(const std::vector<std::string>& names, const std::string& file) {
  std::string candidate = file + ".broken";
  for (int n = 2; std::find(names.begin(), names.end(), candidate) != names.end(); ++n) {
    candidate = fmt::format("{}.broken.{}", file, n);
  }
  return candidate;
}

}  // namespace

std::vector<std::string> RepairPlan::describe() const {
  std::vector<std::string> lines;
  if (!fault) return lines;
  for (auto it = later.rbegin(); it != later.rend(); ++it) {
    lines.push_back(fmt::format("move {} aside to {}.broken (it follows the cut)", *it, *it));
  }
  if (cut_at == 0) {
    lines.push_back(fmt::format(
        "move {} aside to {} ({} bytes: the fault is in its header or before its records)", segment,
        broken, cut_bytes));
  } else {
    lines.push_back(fmt::format("cut {} at offset {}, keeping the {} cut bytes in {}", segment,
                                cut_at, cut_bytes, broken));
  }
  if (!renamed_to.empty())
    lines.push_back(fmt::format("rename {} to {} (the records it keeps)", segment, renamed_to));
  return lines;
}

std::error_code plan_repair(const std::string& dir, FileSystem& fs,
                            const std::optional<KindSet>& known_kinds, RepairPlan& out,
                            std::string& detail) {
  out = RepairPlan{};
  const VerifyReport report = verify_directory(dir, fs, known_kinds);
  std::vector<std::string> names;
  if (auto ec = fs.list(dir, names)) {
    detail = fmt::format("{}: cannot list the data directory: {}", dir, ec.message());
    return ec;
  }
  // Segments in log order: closed by first index, then open ones by sequence (as Log::open reads).
  std::vector<std::string> segments;
  for (const auto& n : names) {
    if (is_segment(n)) segments.push_back(n);
  }
  std::sort(segments.begin(), segments.end(), [](const std::string& a, const std::string& b) {
    const ParsedName pa = parse_name(a), pb = parse_name(b);
    if (pa.kind != pb.kind) return pa.kind == FileKind::closed_segment;
    return pa.kind == FileKind::closed_segment ? pa.first < pb.first : pa.seq < pb.seq;
  });
  std::size_t first_bad = segments.size();
  for (const auto& f : report.faults) {
    const auto it = std::find(segments.begin(), segments.end(), base_name(f.file));
    if (it == segments.end() || f.file != join_path(dir, *it)) {
      out.other_faults.push_back(f);
      continue;
    }
    const auto at = static_cast<std::size_t>(it - segments.begin());
    if (at < first_bad || (at == first_bad && f.offset < out.fault->offset)) {
      if (out.fault) out.other_faults.push_back(*out.fault);
      first_bad = at;
      out.fault = f;
    } else {
      out.other_faults.push_back(f);
    }
  }
  if (!out.fault) return {};
  out.segment = segments[first_bad];
  out.later.assign(segments.begin() + static_cast<std::ptrdiff_t>(first_bad) + 1, segments.end());
  // Faults in the later segments go with them.
  std::erase_if(out.other_faults, [&](const Fault& f) {
    return std::any_of(out.later.begin(), out.later.end(),
                       [&](const std::string& s) { return f.file == join_path(dir, s); });
  });
  // Where to cut: at the first record that does not check out; a segment whose header is bad,
  // or that does not follow the one before it (offset 16: its first index), goes whole.
  std::unique_ptr<File> file;
  std::uint64_t size = 0;
  if (auto ec = fs.open(join_path(dir, out.segment), OpenMode::read_only, file);
      ec || (ec = file->size(size))) {
    detail = fmt::format("{}: cannot read: {}", join_path(dir, out.segment), ec.message());
    return ec;
  }
  FileSource source(*file, size);
  const SegmentScan scan = scan_segment(source);
  if (scan.read_error) {
    detail =
        fmt::format("{}: read failed: {}", join_path(dir, out.segment), scan.read_error.message());
    return scan.read_error;
  }
  std::uint64_t cut =
      out.fault->offset < segment_header_bytes ? 0 : std::min(out.fault->offset, scan.data_end);
  // The records kept are those before the cut.
  std::size_t kept = 0;
  while (kept < scan.records.size() && scan.records[kept].offset < cut) ++kept;
  if (kept == 0) cut = 0;
  out.cut_at = cut;
  // Up to the last non-zero byte: an open segment's preallocated zeros are not worth keeping.
  out.cut_bytes = std::max(cut, scan.data_end + scan.garbage_bytes) - cut;
  out.broken = free_broken_name(names, out.segment);
  const ParsedName p = parse_name(out.segment);
  if (cut > 0 && p.kind == FileKind::closed_segment) {
    const std::string name = closed_segment_name(scan.first_index, scan.records[kept - 1].index);
    if (name != out.segment) out.renamed_to = name;
  }
  return {};
}

std::error_code apply_repair(const std::string& dir, FileSystem& fs, const RepairPlan& plan,
                             std::string& detail) {
  if (!plan.fault) return {};
  std::unique_ptr<DirLock> lock;
  if (auto ec = fs.lock(join_path(dir, std::string(lock_file_name)), lock)) {
    detail = ec == errc::locked
                 ? fmt::format("{}: a node is running on this data directory (LOCK is held)", dir)
                 : fmt::format("{}: cannot lock LOCK: {}", dir, ec.message());
    return ec;
  }
  auto step = [&](std::error_code ec, const std::string& what) {
    if (ec) detail = fmt::format("{}: {}", what, ec.message());
    return ec;
  };
  // Newest first: a crash leaves a log that is a prefix of the old one.
  for (auto it = plan.later.rbegin(); it != plan.later.rend(); ++it) {
    const std::string from = join_path(dir, *it);
    if (auto ec = step(fs.rename(from, from + ".broken"), fmt::format("{}: rename failed", from)))
      return ec;
    if (auto ec = step(fs.sync_dir(dir), fmt::format("{}: fsync failed", dir))) return ec;
  }
  const std::string path = join_path(dir, plan.segment);
  const std::string broken = join_path(dir, plan.broken);
  if (plan.cut_at == 0) {
    if (auto ec = step(fs.rename(path, broken), fmt::format("{}: rename failed", path))) return ec;
    return step(fs.sync_dir(dir), fmt::format("{}: fsync failed", dir));
  }
  std::unique_ptr<File> file;
  if (auto ec =
          step(fs.open(path, OpenMode::read_write, file), fmt::format("{}: cannot open", path)))
    return ec;
  Bytes cut(static_cast<std::size_t>(plan.cut_bytes));
  if (auto ec = step(file->read_at(plan.cut_at, cut), fmt::format("{}: read failed", path)))
    return ec;
  {
    // Written as a .tmp first (removed by the next open if this is interrupted), then renamed.
    const std::string tmp = broken + ".tmp";
    std::unique_ptr<File> out;
    if (auto ec =
            step(fs.open(tmp, OpenMode::create_new, out), fmt::format("{}: create failed", tmp)))
      return ec;
    if (auto ec = step(out->write_at(0, cut), fmt::format("{}: write failed", tmp))) return ec;
    if (auto ec = step(out->sync_data(), fmt::format("{}: fdatasync failed", tmp))) return ec;
    if (auto ec = step(fs.rename(tmp, broken), fmt::format("{}: rename failed", tmp))) return ec;
    if (auto ec = step(fs.sync_dir(dir), fmt::format("{}: fsync failed", dir))) return ec;
  }
  if (auto ec = step(file->truncate(plan.cut_at), fmt::format("{}: truncate failed", path)))
    return ec;
  if (auto ec = step(file->sync_data(), fmt::format("{}: fdatasync failed", path))) return ec;
  if (!plan.renamed_to.empty()) {
    if (auto ec = step(fs.rename(path, join_path(dir, plan.renamed_to)),
                       fmt::format("{}: rename failed", path)))
      return ec;
    if (auto ec = step(fs.sync_dir(dir), fmt::format("{}: fsync failed", dir))) return ec;
  }
  return {};
}

}  // namespace rpool::wal
