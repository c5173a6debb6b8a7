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

TEST_CASE("cutting the last record at every byte offset reopens to exactly the earlier records") {
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
        std::fill(image.begin() + static_cast<std::ptrdiff_t>(cut), image.begin() + static_cast<std::ptrdiff_t>(end), 0);
      }
      fs.set_contents(path, image);
      {
        auto log = open_ok(dir, o);
        const std::size_t kept = cut == end ? 20 : 19;
        CHECK(log->last_index() == LogIndex(kept));
        CHECK(read_all(*log) == std::vector<Entry>(written.begin(), written.begin() + static_cast<std::ptrdiff_t>(kept)));
        if (cut == last_start || cut == end) {
          CHECK(log->warnings().empty());
        } else {
          REQUIRE(log->warnings().size() == 1);
          CHECK(log->warnings()[0].find("torn tail of") != std::string::npos);
          CHECK(log->warnings()[0].find(fmt::format("at offset {}", last_start)) != std::string::npos);
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
                                  segment_header_bytes + 2 * record_bytes(16))) != std::string::npos);
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
