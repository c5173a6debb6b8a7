// Recovery from torn, zero-filled and corrupted segment files, on the simulated disk.
#include <doctest/doctest.h>

#include <fmt/format.h>

#include "helpers.h"

namespace rpool::wal {
namespace {

using test::entries;
using test::entry;
using test::open_ok;
using test::read_all;
using test::small;

const std::string dir = "/data";

TEST_CASE(
    "cutting the last record at every byte offset: a short file or a zero sector reopens to the "
    "earlier records") {
  for (bool shorten : {false, true}) {
    // shorten: the file ends at the cut (no preallocation); otherwise the bytes from the cut on
    // are zero, as in a preallocated segment.
    SimFileSystem fs(1);
    Options o = small(&fs, 64 << 10);
    o.preallocation = shorten ? Preallocation::none : Preallocation::zero_fill;
    const auto written = entries(1, 20, 1, 40);
    std::string name;
    std::uint64_t end = 0;
    {
      auto log = open_ok(dir, o);
      REQUIRE_FALSE(log->append(written));
      REQUIRE_FALSE(log->sync());
      name = log->segments().back().name;
      end = log->segments().back().data_bytes;
    }
    const std::string path = join_path(dir, name);
    const Bytes original = fs.contents(path);
    const std::uint64_t last_start = end - record_bytes(40);
    for (std::uint64_t cut = last_start; cut <= end; ++cut) {
      CAPTURE(shorten);
      CAPTURE(cut);
      Bytes image = original;
      if (shorten) {
        image.resize(cut);
      } else {
        std::fill(image.begin() + static_cast<std::ptrdiff_t>(cut),
                  image.begin() + static_cast<std::ptrdiff_t>(end), 0);
      }
      fs.set_contents(path, image);
      // Zeros from a byte inside the record's last sector on, with the sector's first bytes of the
      // record still there, is no crash artefact (a sector is written whole): corruption.
      const std::uint64_t last_sector =
          std::max(last_start, (end - 1) / sector_bytes * sector_bytes);
      if (!shorten && cut > last_sector && cut < end) {
        OpenResult r = Log::open(dir, o);
        CHECK(r.error == errc::corrupt);
        CHECK(
            r.detail.find(fmt::format("{}: offset {}: record checksum mismatch, with every sector",
                                      path, last_start)) != std::string::npos);
        CHECK(fs.contents(path) == image);
        fs.set_contents(path, original);
        continue;
      }
      {
        auto log = open_ok(dir, o);
        const std::size_t kept = cut == end ? 20 : 19;
        CHECK(log->last_index() == LogIndex(kept));
        CHECK(read_all(*log) ==
              std::vector<Entry>(written.begin(),
                                 written.begin() + static_cast<std::ptrdiff_t>(kept)));
        if (cut == last_start || cut == end) {
          CHECK(log->warnings().empty());
        } else {
          REQUIRE(log->warnings().size() == 1);
          CHECK(log->warnings()[0].find("torn tail of") != std::string::npos);
          CHECK(log->warnings()[0].find(fmt::format("at offset {}", last_start)) !=
                std::string::npos);
        }
        // The log goes on from there, and the repaired file reopens without a warning.
        REQUIRE_FALSE(log->append(std::vector<Entry>{entry(kept + 1, 2, 40)}));
        REQUIRE_FALSE(log->sync());
        log->check_invariants();
      }
      auto log = open_ok(dir, o);
      CHECK(log->warnings().empty());
      CHECK(log->last_index() == LogIndex(cut == end ? 21 : 20));
      log.reset();
      fs.set_contents(path, original);
    }
  }
}

TEST_CASE("flipping any byte of a record in a closed segment fails open, naming file and offset") {
  SimFileSystem fs(2);
  const Options o = small(&fs);
  std::string name;
  {
    auto log = open_ok(dir, o);
    REQUIRE_FALSE(log->append(entries(1, 200, 1, 40)));
    REQUIRE_FALSE(log->sync());
    REQUIRE(log->segments().size() > 3);
    REQUIRE_FALSE(log->segments()[1].open);
    name = log->segments()[1].name;
  }
  const std::string path = join_path(dir, name);
  const Bytes original = fs.contents(path);
  const std::uint64_t record = segment_header_bytes + 2 * record_bytes(40);  // the third record
  for (std::uint64_t at = 0; at < record + record_bytes(40); ++at) {
    if (at >= segment_header_bytes && at < record) continue;  // header bytes, then the third record
    CAPTURE(at);
    Bytes image = original;
    image[at] = static_cast<std::uint8_t>(~image[at]);
    fs.set_contents(path, image);
    OpenResult r = Log::open(dir, o);
    CHECK(r.error == errc::corrupt);
    CHECK(r.log == nullptr);
    CHECK(r.detail.find(name) != std::string::npos);
    const std::uint64_t fault_offset = at < segment_header_bytes ? 0 : record;
    CHECK(r.detail.find(fmt::format("offset {}:", fault_offset)) != std::string::npos);
    INFO(r.detail);
  }
  fs.set_contents(path, original);
  open_ok(dir, o);
}

TEST_CASE("a missing middle segment is a fatal index gap naming the next file") {
  SimFileSystem fs(3);
  const Options o = small(&fs);
  std::vector<SegmentInfo> segs;
  {
    auto log = open_ok(dir, o);
    REQUIRE_FALSE(log->append(entries(1, 200, 1, 40)));
    REQUIRE_FALSE(log->sync());
    segs = log->segments();
  }
  REQUIRE_FALSE(fs.remove(join_path(dir, segs[2].name)));
  OpenResult r = Log::open(dir, o);
  CHECK(r.error == errc::corrupt);
  CHECK(r.detail.find(segs[3].name) != std::string::npos);
  CHECK(r.detail.find("gap") != std::string::npos);
}

TEST_CASE("bytes after the last record of a closed segment are corruption") {
  SimFileSystem fs(4);
  const Options o = small(&fs);
  std::string name;
  {
    auto log = open_ok(dir, o);
    REQUIRE_FALSE(log->append(entries(1, 200, 1, 40)));
    REQUIRE_FALSE(log->sync());
    name = log->segments()[0].name;
  }
  Bytes image = fs.contents(join_path(dir, name));
  image.push_back(7);
  fs.set_contents(join_path(dir, name), image);
  OpenResult r = Log::open(dir, o);
  CHECK(r.error == errc::corrupt);
  CHECK(r.detail.find(fmt::format("{}: offset {}", name, image.size() - 1)) != std::string::npos);
}

TEST_CASE("garbage behind a zero-filled record header in the open segment is cut and zeroed") {
  SimFileSystem fs(5);
  const Options o = small(&fs, 64 << 10);
  std::string name;
  std::uint64_t end = 0;
  {
    auto log = open_ok(dir, o);
    REQUIRE_FALSE(log->append(entries(1, 10, 1, 40)));
    REQUIRE_FALSE(log->sync());
    name = log->segments().back().name;
    end = log->segments().back().data_bytes;
  }
  Bytes image = fs.contents(join_path(dir, name));
  image[end + 1000] = 0xAB;  // a stray byte well inside the preallocated zeros
  fs.set_contents(join_path(dir, name), image);
  {
    auto log = open_ok(dir, o);
    CHECK(log->last_index() == LogIndex(10));
    REQUIRE(log->warnings().size() == 1);
    CHECK(log->warnings()[0].find("torn tail of 1001 bytes") != std::string::npos);
  }
  auto log = open_ok(dir, o);
  CHECK(log->warnings().empty());
  CHECK(fs.contents(join_path(dir, name))[end + 1000] == 0);
}

}  // namespace
}  // namespace rpool::wal

namespace rpool::wal {
namespace {

void write_file(SimFileSystem& fs, const std::string& path, const Bytes& bytes) {
  std::unique_ptr<File> f;
  REQUIRE_FALSE(fs.open(path, OpenMode::create, f));
  REQUIRE_FALSE(f->write_at(0, bytes));
  REQUIRE_FALSE(f->sync_data());
  REQUIRE_FALSE(fs.sync_dir(dir));
}

TEST_CASE("a well-formed record with the wrong index in a closed segment is corruption") {
  SimFileSystem fs(6);
  REQUIRE_FALSE(fs.make_dirs(dir));
  Bytes seg;
  encode_segment_header(LogIndex(1), seg);
  for (std::uint64_t i : {1, 2, 4}) encode_record(test::entry(i, 1), seg);
  write_file(fs, join_path(dir, closed_segment_name(LogIndex(1), LogIndex(3))), seg);
  OpenResult r = Log::open(dir, small(&fs));
  CHECK(r.error == errc::corrupt);
  CHECK(r.detail.find(fmt::format("offset {}: record holds index 4, expected 3",
                                  segment_header_bytes + 2 * record_bytes(16))) !=
        std::string::npos);
}

TEST_CASE("a record whose term goes down is corruption") {
  SimFileSystem fs(7);
  REQUIRE_FALSE(fs.make_dirs(dir));
  Bytes seg;
  encode_segment_header(LogIndex(1), seg);
  encode_record(test::entry(1, 5), seg);
  encode_record(test::entry(2, 4), seg);
  write_file(fs, join_path(dir, closed_segment_name(LogIndex(1), LogIndex(2))), seg);
  OpenResult r = Log::open(dir, small(&fs));
  CHECK(r.error == errc::corrupt);
  CHECK(r.detail.find("term 4 is below") != std::string::npos);
}

}  // namespace
}  // namespace rpool::wal

namespace rpool::wal {
namespace {

// A log of `count` entries of `bytes` payload in one open segment of 1 MiB, synced.
struct OpenSegment {
  SimFileSystem fs{21};
  Options options = test::small(&fs, 1u << 20);
  std::string path;
  std::uint64_t end = 0;
  std::vector<std::uint64_t> offsets;  // of each record, by computing the framing
  explicit OpenSegment(std::size_t count, std::size_t bytes = 200) {
    auto log = test::open_ok(dir, options);
    for (std::size_t i = 0; i < count; i += 100) {
      REQUIRE_FALSE(
          log->append(test::entries(i + 1, std::min<std::size_t>(100, count - i), 1, bytes)));
      REQUIRE_FALSE(log->sync());
    }
    REQUIRE(log->segments().size() == 1);
    path = join_path(dir, log->segments().back().name);
    end = log->segments().back().data_bytes;
    for (std::size_t i = 0; i < count; ++i)
      offsets.push_back(segment_header_bytes + i * record_bytes(bytes));
  }
  // Opening fails with errc::corrupt naming the file, the offset and `why`, and changes nothing.
  void expect_corrupt(const Bytes& image, std::uint64_t offset, const std::string& why) {
    fs.set_contents(path, image);
    OpenResult r = Log::open(dir, options);
    CHECK(r.error == errc::corrupt);
    CHECK(r.log == nullptr);
    INFO(r.detail);
    CHECK(r.detail.find(fmt::format("{}: offset {}: ", path, offset)) != std::string::npos);
    CHECK(r.detail.find(why) != std::string::npos);
    CHECK(fs.contents(path) == image);
  }
};

TEST_CASE("a flipped byte in the middle of the open segment is corruption, not a torn tail") {
  OpenSegment seg(3000);
  Bytes image = seg.fs.contents(seg.path);
  const std::uint64_t at = seg.offsets[1000];
  image[at + 40] ^= 0x01;
  seg.expect_corrupt(image, at,
                     "record checksum mismatch, with every sector of the record written");
}

TEST_CASE("a flipped byte in the last record of the open segment is corruption too") {
  OpenSegment seg(50);
  Bytes image = seg.fs.contents(seg.path);
  image[seg.offsets.back() + 100] ^= 0x80;
  seg.expect_corrupt(image, seg.offsets.back(), "with every sector of the record written");
}

TEST_CASE("a zeroed sector with more than a write window of records after it is corruption") {
  OpenSegment seg(3000);  // 675 KB of records
  Bytes image = seg.fs.contents(seg.path);
  const std::uint64_t sector = seg.end / 3 / sector_bytes * sector_bytes;
  std::fill_n(image.begin() + static_cast<std::ptrdiff_t>(sector), sector_bytes, 0);
  // The first record overlapping the sector is the first bad one.
  std::uint64_t bad = 0;
  for (auto o : seg.offsets) {
    if (o + record_bytes(200) > sector) {
      bad = o;
      break;
    }
  }
  seg.expect_corrupt(image, bad, "beyond the 262144 bytes one unfinished write can reach");
}

TEST_CASE("zeroed sectors within the last write window are a torn tail, cut at open") {
  OpenSegment seg(3000);
  Bytes image = seg.fs.contents(seg.path);
  const std::uint64_t sector = (seg.end - write_window_bytes / 2) / sector_bytes * sector_bytes;
  std::fill_n(image.begin() + static_cast<std::ptrdiff_t>(sector), sector_bytes, 0);
  seg.fs.set_contents(seg.path, image);
  auto log = test::open_ok(dir, seg.options);
  REQUIRE(log->warnings().size() == 1);
  CHECK(log->warnings()[0].find("cut a torn tail") != std::string::npos);
  CHECK(log->last_index() < LogIndex(3000));
  CHECK(test::read_all(*log) == test::entries(1, log->last_index().value(), 1, 200));
}

TEST_CASE("appending more than a write window syncs so that the unsynced bytes stay within one") {
  SimFileSystem fs(22);
  auto log = test::open_ok(dir, test::small(&fs, 4u << 20));
  REQUIRE_FALSE(log->append(test::entries(1, 1, 1, 1000)));  // the segment exists
  REQUIRE_FALSE(log->sync());
  const std::uint64_t before = fs.data_syncs();
  // 2,000 records of 1,025 bytes, 255 to a window of 256 KiB: a sync after every 255, and no sync()
  // call.
  REQUIRE_FALSE(log->append(test::entries(2, 2000, 1, 1000)));
  const std::uint64_t window_syncs = fs.data_syncs() - before;
  CHECK(window_syncs == 2000 / (write_window_bytes / record_bytes(1000)));
  log->check_invariants();
  // A crash now loses at most the last window, whatever reaches the disk.
  log.reset();
  fs.crash(SimFileSystem::CrashMode::sector_subsets);
  log = test::open_ok(dir, test::small(&fs, 4u << 20));
  CHECK((log->last_index().value() - 1) * record_bytes(1000) >=
        2000 * record_bytes(1000) - write_window_bytes);
}

TEST_CASE("a record longer than a window torn after its synced header is a torn tail") {
  SimFileSystem fs(23);
  const Options o = test::small(&fs, 4u << 20);
  std::string path;
  {
    auto log = test::open_ok(dir, o);
    REQUIRE_FALSE(log->append(test::entries(1, 10, 1, 100)));
    REQUIRE_FALSE(log->sync());
    path = join_path(dir, log->segments().back().name);
  }
  std::uint64_t long_at = 0;
  for (int round = 0; round < 20; ++round) {
    {
      auto log = test::open_ok(dir, o);
      long_at = log->segments().back().data_bytes;
      REQUIRE_FALSE(log->append(std::vector<Entry>{test::entry(11, 1, 1u << 20)}));
      // No sync: the header alone is durable, the payload's sectors survive in any subset.
    }
    fs.crash(SimFileSystem::CrashMode::sector_subsets);
    auto log = test::open_ok(dir, o);
    CHECK(log->last_index() >= LogIndex(10));
    if (log->last_index() == LogIndex(11)) REQUIRE_FALSE(log->truncate_suffix(LogIndex(11)));
  }
  // And the same bytes with the header's length pointing past them: any more non-zero bytes
  // beyond the record's own reach are corruption.
  Bytes image = fs.contents(path);
  Bytes header;
  encode_record(test::entry(11, 1, 1u << 20), header);
  std::copy_n(header.begin(), record_header_bytes,
              image.begin() + static_cast<std::ptrdiff_t>(long_at));
  image[long_at + record_bytes(1u << 20) + 600] = 1;
  fs.set_contents(path, image);
  OpenResult r = Log::open(dir, o);
  CHECK(r.error == errc::corrupt);
  CHECK(r.detail.find(fmt::format("offset {}: record checksum mismatch", long_at)) !=
        std::string::npos);
}

}  // namespace
}  // namespace rpool::wal

namespace rpool::wal {
namespace {

TEST_CASE("a damaged length field claiming a long record over valid records is corruption") {
  OpenSegment seg(3000);
  Bytes image = seg.fs.contents(seg.path);
  const std::uint64_t at = seg.offsets[1000];
  image[at + 2] =
      0x40;  // length 200 -> 0x4000c8: about 4 MB, a long record running past the records
  seg.expect_corrupt(image, at, "a valid record of index 1002 starts at offset");
}

}  // namespace
}  // namespace rpool::wal
