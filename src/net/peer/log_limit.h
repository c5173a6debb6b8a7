// Rate limit for log lines about connections the transport refuses. Anyone who can reach the raft
// port can open connections that fail the handshake or TLS, as fast as they like; logging each one
// would let a stranger fill the disk with our log. A line is logged at most once per window for
// each remote address, and the next one that gets through says how many were held back.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

namespace rpool::net::peer {

class LogLimit {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::minutes window{1};
  // Addresses remembered at once. When full, every further address shares one slot, so a stranger
  // using many source addresses is still limited and the map cannot grow without bound.
  static constexpr std::size_t addresses_max = 256;
  static inline const std::string others = "(other addresses)";

  // Whether to log a line about `address` now. If so, `*suppressed` (when given) receives the
  // number of lines about it held back since the last one logged.
  bool admit(const std::string& address, Clock::time_point now, std::uint64_t* suppressed) {
    forget_older_than(now - window);
    const std::string& key =
        entries_.count(address) != 0 || entries_.size() < addresses_max ? address : others;
    auto [it, first] = entries_.try_emplace(key, Entry{now, 0});
    Entry& e = it->second;
    if (!first && now - e.last_logged < window) {
      ++e.suppressed;
      return false;
    }
    if (suppressed != nullptr) *suppressed = first ? 0 : e.suppressed;
    e.last_logged = now;
    e.suppressed = 0;
    return true;
  }

  std::size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    Clock::time_point last_logged;
    std::uint64_t suppressed;  // lines held back since last_logged
  };

  void forget_older_than(Clock::time_point cutoff) {
    // An entry whose window has passed with nothing held back carries no information. One with
    // lines held back stays, so its count is reported with the next line.
    for (auto it = entries_.begin(); it != entries_.end();) {
      const bool stale = it->second.last_logged < cutoff && it->second.suppressed == 0;
      it = stale ? entries_.erase(it) : std::next(it);
    }
  }

  std::map<std::string, Entry> entries_;
};

}  // namespace rpool::net::peer
