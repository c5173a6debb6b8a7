// A slow disk for tests (tests/chaos, "slow disk" nemesis): an LD_PRELOAD library that delays
// every fdatasync(2) and fsync(2) of the process it is loaded into.
//
//   RPOOL_SLOW_FSYNC_FILE=/tmp/x/delay LD_PRELOAD=build/tests/faults/librpool-slow-fsync.so rpoold
//   ... echo 40 > /tmp/x/delay     # from now on each sync takes 40 ms longer; "0" (or no file):
//   none
//
// The file is read again at most every 100 ms, so a test turns the slowness on and off while
// the process runs. Nothing else changes: the real call follows the delay, and its result and
// errno are returned unchanged.
#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <thread>

namespace {

using Clock = std::chrono::steady_clock;

std::atomic<long> delay_ms{0};
std::atomic<Clock::rep> next_read{0};

long read_delay() {
  const char* path = std::getenv("RPOOL_SLOW_FSYNC_FILE");
  if (path == nullptr) return 0;
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[32] = {};
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  return n > 0 ? std::strtol(buf, nullptr, 10) : 0;
}

void delay() {
  const int saved = errno;
  const auto now = Clock::now().time_since_epoch().count();
  if (now >= next_read.load(std::memory_order_relaxed)) {
    delay_ms.store(read_delay(), std::memory_order_relaxed);
    next_read.store(
        now + std::chrono::duration_cast<Clock::duration>(std::chrono::milliseconds(100)).count(),
        std::memory_order_relaxed);
  }
  const long ms = delay_ms.load(std::memory_order_relaxed);
  if (ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  errno = saved;
}

template <typename F>
F real(const char* name) {
  return reinterpret_cast<F>(::dlsym(RTLD_NEXT, name));
}

}  // namespace

extern "C" int fdatasync(int fd) {
  static const auto next = real<int (*)(int)>("fdatasync");
  delay();
  return next(fd);
}

extern "C" int fsync(int fd) {
  static const auto next = real<int (*)(int)>("fsync");
  delay();
  return next(fd);
}
