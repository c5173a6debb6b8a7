// Running out of file descriptors is not a disk failure: it comes back as
// errc::descriptors_exhausted, distinct from io_error, and a reopen recovers the log intact.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>

#include "helpers.h"

namespace rpool::wal {
namespace {

using test::entries;
using test::open_ok;
using test::read_all;
using test::small;

TEST_CASE("EMFILE and ENFILE map to descriptors_exhausted, not io_error") {
  for (int err : {EMFILE, ENFILE}) {
    const std::error_code ec = from_errno(err);
    CHECK(ec == errc::descriptors_exhausted);
    CHECK(ec != errc::io_error);
    CHECK(ec.message().find("file descriptor") != std::string::npos);
  }
}

TEST_CASE(
    "a segment that cannot be opened for lack of descriptors fails the append as such; a reopen "
    "recovers") {
  SimFileSystem fs(11);
  const Options o = small(&fs);
  bool exhausted = false;
  fs.set_fault_hook([&](SimFileSystem::Op op, const std::string&) -> std::error_code {
    if (exhausted && (op == SimFileSystem::Op::open || op == SimFileSystem::Op::create)) {
      return from_errno(EMFILE);
    }
    return {};
  });
  auto log = open_ok("/d", o);
  REQUIRE_FALSE(log->append(entries(1, 10, 1, 100)));
  REQUIRE_FALSE(log->sync());
  exhausted = true;
  // 4 KiB segments: 100 more entries of 100 bytes need a new segment file.
  const std::error_code ec = log->append(entries(11, 100, 1, 100));
  CHECK(ec == errc::descriptors_exhausted);
  CHECK(ec != errc::io_error);
  INFO(log->error_detail());
  CHECK(log->error_detail().find("no file descriptor left") != std::string::npos);
  log.reset();
  exhausted = false;
  log = open_ok("/d", o);
  CHECK(log->last_index() >= LogIndex(10));
  REQUIRE_FALSE(log->truncate_suffix(LogIndex(11)));
  REQUIRE_FALSE(log->append(entries(11, 100, 1, 100)));
  REQUIRE_FALSE(log->sync());
  CHECK(read_all(*log) == entries(1, 110, 1, 100));
}

TEST_CASE("posix: opening a log with no descriptor left reports descriptors_exhausted") {
  test::TempDir tmp;
  {
    auto log = open_ok(tmp.path(), small());
    REQUIRE_FALSE(log->append(entries(1, 50, 1, 100)));
    REQUIRE_FALSE(log->sync());
  }
  rlimit saved{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved) == 0);
  std::vector<int> fds;
  rlimit low = saved;
  low.rlim_cur = 64;
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
  for (;;) {
    const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) break;
    fds.push_back(fd);
  }
  Options o = small();
  o.read_only = true;  // no lock file, no helper thread: the first open(2) is a segment's
  OpenResult r = Log::open(tmp.path(), o);
  for (int fd : fds) ::close(fd);
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &saved) == 0);
  CHECK(r.error == errc::descriptors_exhausted);
  INFO(r.detail);
  CHECK(r.detail.find("no file descriptor left") != std::string::npos);
  open_ok(tmp.path(), small());
}

}  // namespace
}  // namespace rpool::wal
