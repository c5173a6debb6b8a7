// Death tests for the unit suites: runs `body` in a forked child and reports whether it died of
// SIGABRT (an RPOOL_ASSERT firing).
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>

#include <doctest/doctest.h>

namespace rpool::test {

template <class F>
bool aborts(F body) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // The child's own crash report (doctest's "test case CRASHED") is expected: keep it out of
    // the test log.
    std::freopen("/dev/null", "w", stdout);
    std::freopen("/dev/null", "w", stderr);
    body();
    std::_Exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

}  // namespace rpool::test
