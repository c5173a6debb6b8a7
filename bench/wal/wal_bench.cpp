// bench-wal: append + fdatasync throughput and latency of wal::Log on the real disk, and the
// speed of recovery (open, which reads and checks every record) of a large log.
//
//   bench-wal [--dir DIR] [--seconds S] [--recovery-mib N] [--json FILE] [--only
//   throughput|prealloc|recovery]
//
// Cases: entry sizes 16 B, 256 B, 4 KiB x batches of 1, 64, 1024 entries, each batch one append()
// and one sync(); entries/s, MB/s of payload, p50/p99 of the append+sync latency. Then batch 1 of
// 4 KiB under each Preallocation mode (the measurement behind the zero_fill default). Then open of
// an N MiB log (default 1024), once with the page cache warm and once after dropping the files
// from the cache (posix_fadvise DONTNEED), in MB/s of segment bytes.
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "wal/log.h"

namespace {

using namespace rpool;
using Clock = std::chrono::steady_clock;

struct Result {
  std::string name;
  double entries_per_s = 0, mb_per_s = 0, p50_us = 0, p99_us = 0;
  std::uint64_t batches = 0;
};

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double cpu_seconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto at = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
  return v[at];
}

std::unique_ptr<wal::Log> open_or_die(const std::string& dir, const wal::Options& o) {
  wal::OpenResult r = wal::Log::open(dir, o);
  if (r.error) {
    std::fprintf(stderr, "bench-wal: %s\n", r.detail.c_str());
    std::exit(1);
  }
  return std::move(r.log);
}

void check(std::error_code ec, const wal::Log& log) {
  if (ec) {
    std::fprintf(stderr, "bench-wal: %s: %s\n", ec.message().c_str(), log.error_detail().c_str());
    std::exit(1);
  }
}

Result run_case(const std::string& dir, std::size_t entry_bytes, std::size_t batch, double seconds,
                wal::Preallocation mode, const std::string& name) {
  std::filesystem::remove_all(dir);
  wal::Options o;
  o.preallocation = mode;
  auto log = open_or_die(dir, o);
  std::vector<wal::Entry> entries(batch);
  for (auto& e : entries) {
    e.term = Term(1);
    e.kind = 1;
    e.payload.assign(entry_bytes, 0x5A);
  }
  std::vector<double> latencies;
  std::uint64_t next = 1, count = 0;
  // Warm-up: the first segment is prepared synchronously at the first append.
  const auto start = Clock::now();
  bool warm = false;
  Clock::time_point measured_start = start;
  while (true) {
    for (auto& e : entries) e.index = LogIndex(next++);
    const auto t0 = Clock::now();
    check(log->append(entries), *log);
    check(log->sync(), *log);
    const double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
    if (!warm) {
      // The first append starts the helper preparing the next segment (64 MiB of zeros); in
      // steady state that happens once per 64 MiB, so keep it out of a 3 s measurement.
      check(log->wait_for_next_segment(), *log);
      if (seconds_since(start) > 0.3) {
        warm = true;
        measured_start = Clock::now();
      }
      continue;
    }
    latencies.push_back(us);
    count += batch;
    if (seconds_since(measured_start) >= seconds) break;
  }
  const double elapsed = seconds_since(measured_start);
  Result r;
  r.name = name;
  r.batches = latencies.size();
  r.entries_per_s = static_cast<double>(count) / elapsed;
  r.mb_per_s = static_cast<double>(count * entry_bytes) / elapsed / 1e6;
  r.p50_us = percentile(latencies, 0.50);
  r.p99_us = percentile(latencies, 0.99);
  log.reset();
  std::filesystem::remove_all(dir);
  return r;
}

void drop_cache(const std::string& dir) {
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const int fd = ::open(e.path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

std::vector<Result> run_recovery(const std::string& dir, std::uint64_t mib) {
  std::filesystem::remove_all(dir);
  std::uint64_t bytes = 0;
  {
    wal::Options o;
    auto log = open_or_die(dir, o);
    std::vector<wal::Entry> entries(1024);
    for (auto& e : entries) {
      e.term = Term(1);
      e.kind = 1;
      e.payload.assign(256, 0xA5);
    }
    std::uint64_t next = 1;
    while (bytes < mib << 20) {
      for (auto& e : entries) e.index = LogIndex(next++);
      check(log->append(entries), *log);
      check(log->sync(), *log);
      bytes += entries.size() * wal::record_bytes(256);
    }
  }
  std::vector<Result> out;
  {
    // Warm the page cache (as far as memory allows) with one untimed open.
    wal::Options o;
    o.read_only = true;
    open_or_die(dir, o);
  }
  for (bool cold : {false, true}) {
    if (cold) drop_cache(dir);
    const auto t0 = Clock::now();
    const double cpu0 = cpu_seconds();
    wal::Options o;
    o.read_only = true;  // measure reading and checking, not the helper preparing a segment
    auto log = open_or_die(dir, o);
    const double s = seconds_since(t0);
    const double cpu = cpu_seconds() - cpu0;
    std::uint64_t on_disk = 0;
    for (const auto& seg : log->segments()) on_disk += seg.data_bytes;
    Result r;
    r.name = cold ? "recovery_cold" : "recovery_warm";
    r.entries_per_s = static_cast<double>(log->last_index().value()) / s;
    r.mb_per_s = static_cast<double>(on_disk) / s / 1e6;
    r.p50_us = s * 1e6;
    r.p99_us = s * 1e6;
    r.batches = 1;
    out.push_back(r);
    // On a shared machine the wall clock includes time other processes held the CPU; the MB per
    // CPU-second shows what the code itself costs.
    std::printf(
        "  %-14s %8.0f MiB of segments, %10llu entries, open in %6.3f s (%.3f s CPU): %8.0f MB/s, "
        "%8.0f MB per CPU-s\n",
        r.name.c_str(), static_cast<double>(on_disk) / (1 << 20),
        static_cast<unsigned long long>(log->last_index().value()), s, cpu, r.mb_per_s,
        static_cast<double>(on_disk) / cpu / 1e6);
  }
  std::filesystem::remove_all(dir);
  return out;
}

void print(const Result& r) {
  std::printf("  %-24s %12.0f %10.1f %10.0f %10.0f %8llu\n", r.name.c_str(), r.entries_per_s,
              r.mb_per_s, r.p50_us, r.p99_us, static_cast<unsigned long long>(r.batches));
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = "/tmp/rpool-wal-bench";
  double seconds = 3;
  std::uint64_t recovery_mib = 1024;
  std::string json_path, only;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--dir") dir = value;
    else if (flag == "--seconds") seconds = std::stod(value);
    else if (flag == "--recovery-mib") recovery_mib = std::stoull(value);
    else if (flag == "--json") json_path = value;
    else if (flag == "--only") only = value;
    else {
      std::fprintf(stderr,
                   "usage: bench-wal [--dir DIR] [--seconds S] [--recovery-mib N] [--json FILE] "
                   "[--only throughput|prealloc|recovery]\n");
      return 2;
    }
  }
  std::vector<Result> results;
  const char* header =
      "  case                         entries/s       MB/s    p50 us    p99 us  batches\n";
  if (only.empty() || only == "throughput") {
    std::printf("append + fdatasync per batch, %g s per case, dir %s (zero_fill segments)\n%s",
                seconds, dir.c_str(), header);
    for (std::size_t bytes : {16, 256, 4096}) {
      for (std::size_t batch : {1, 64, 1024}) {
        results.push_back(run_case(dir, bytes, batch, seconds, wal::Preallocation::zero_fill,
                                   fmt::format("size{}_batch{}", bytes, batch)));
        print(results.back());
      }
    }
  }
  if (only.empty() || only == "prealloc") {
    // 4 KiB entries, as fio's bs=4k: every append then lands in a block never written before, which
    // is where fallocated (unwritten) extents cost a metadata commit per fdatasync.
    std::printf("batch 1 x 4 KiB by segment preallocation\n%s", header);
    const std::pair<wal::Preallocation, const char*> modes[] = {
        {wal::Preallocation::zero_fill, "zero_fill"},
        {wal::Preallocation::fallocate, "fallocate"},
        {wal::Preallocation::none, "none"}};
    for (const auto& [mode, name] : modes) {
      results.push_back(run_case(dir, 4096, 1, seconds, mode, fmt::format("prealloc_{}", name)));
      print(results.back());
    }
  }
  if (only.empty() || only == "recovery") {
    std::printf("recovery: open (read + check every record) of a %llu MiB log of 256 B entries\n",
                static_cast<unsigned long long>(recovery_mib));
    for (const auto& r : run_recovery(dir, recovery_mib)) results.push_back(r);
  }
  if (!json_path.empty()) {
    FILE* f = std::fopen(json_path.c_str(), "w");
    if (f == nullptr) return 1;
    std::fprintf(f, "{\n");
    for (std::size_t i = 0; i < results.size(); ++i) {
      const auto& r = results[i];
      std::fprintf(f,
                   "  \"%s\": {\"entries_per_s\": %.1f, \"mb_per_s\": %.2f, \"p50_us\": %.1f, "
                   "\"p99_us\": %.1f}%s\n",
                   r.name.c_str(), r.entries_per_s, r.mb_per_s, r.p50_us, r.p99_us,
                   i + 1 < results.size() ? "," : "");
    }
    std::fprintf(f, "}\n");
    std::fclose(f);
  }
  return 0;
}
