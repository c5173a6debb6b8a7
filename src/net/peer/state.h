// The peer transport's shared state and the coroutines that work on it. Internal to src/net/peer:
// peer_transport.cpp holds the public functions, outbound.cpp the connecting side (run_peer) and
// inbound.cpp the accepting side (accept_loop, run_inbound).
//
// Three kinds of coroutine run, each holding shared_ptrs to what it touches so that a transport
// destroyed while they are suspended leaves nothing dangling:
//   accept_loop   one per transport: accepts connections and starts run_inbound for each;
//   run_inbound   one per accepted connection: TLS and handshake, then frames to on_message;
//   run_peer      one per peer: connect, TLS, write the handshake and the queue, reconnect after
//                 backoff; with watch_outgoing beside it, which notices the peer closing.
// Each coroutine re-checks `stopped` (and its peer's `removed`, its connection's `closed`) after
// every suspension, because stop(), remove_peer() or set_peer() may have run meanwhile, possibly
// from inside on_message.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <exception>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <string_view>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fmt/format.h>

#include "base/assert.h"
#include "base/bytes.h"
#include "net/peer/log_limit.h"
#include "net/peer/peer_transport.h"
#include "net/peer/stream.h"

namespace rpool::net::peer {

constexpr std::array<std::uint8_t, 4> handshake_magic = {'R', 'P', 'L', 'P'};
// Receive buffers start at this size and grow only as a large frame actually arrives, so a peer
// announcing a huge frame does not make us allocate it up front.
constexpr std::size_t read_chunk_bytes = 64 << 10;
// Buffers that grew past this (a burst, a snapshot chunk) are released once empty.
constexpr std::size_t buffer_keep_bytes_max = 4 << 20;
// After accept() fails (e.g. out of file descriptors), wait this long before accepting again.
constexpr std::chrono::milliseconds accept_retry_delay{100};

static_assert(peer_handshake_bytes == 4 + 1 + 8 + 8 + 8);
static_assert(peer_frame_header_bytes == 4 + 1);

// Completion of a co_spawn'ed coroutine: an exception is a bug and leaves io_context::run().
inline void rethrow(std::exception_ptr e) {
  if (e) std::rethrow_exception(e);
}

inline void release_if_large(Bytes& b) {
  if (b.empty() && b.capacity() > buffer_keep_bytes_max) Bytes().swap(b);
}

inline std::string describe(const error_code& ec) {
  if (ec == asio::error::eof) return "closed by peer";
  return ec.message();
}

// The sending side of one peer: its one outgoing connection and its queue.
struct Peer {
  enum class Link { connecting, connected, waiting };

  Peer(asio::io_context& io, NodeId id_, std::string host_, std::uint16_t port_)
      : id(id_),
        host(std::move(host_)),
        port(port_),
        stream(io.get_executor()),
        wake(io),
        retry(io) {}

  NodeId id;
  std::string host;
  std::uint16_t port;
  PeerStream stream;         // its socket is closed while not connected
  asio::steady_timer wake;   // the idle writer waits on it; cancel() wakes it
  asio::steady_timer retry;  // backoff between attempts; cancel() retries at once
  // Frames waiting to be written, back to back; pending.size() <= queue_bytes_max. Messages queue
  // while connecting or connected and are dropped while waiting to retry.
  Bytes pending;
  std::size_t pending_frames = 0;
  Link link = Link::connecting;
  bool writer_idle = false;   // the writer is waiting on `wake`
  bool removed = false;       // remove_peer() or stop(): the coroutine ends at its next step
  std::uint64_t attempt = 0;  // connection attempts so far; stale completions compare it
  std::uint64_t address_generation = 0;  // bumped when set_peer changes host or port
  std::string close_reason;              // why the current connection ended, for the log
  PeerStats stats;                       // sending-side counters (receiving side lives in State)
};

// One accepted, receive-only connection.
struct Inbound {
  Inbound(tcp::socket s, std::uint64_t accepted_)
      : stream(std::move(s)),
        handshake_timer(stream.socket().get_executor()),
        accepted(accepted_) {}

  PeerStream stream;
  asio::steady_timer handshake_timer;
  std::uint64_t accepted;  // order of acceptance: the oldest waiting one is evicted first
  tcp::endpoint remote;
  NodeId sender;  // valid once handshaken
  bool handshaken = false;
  bool timed_out = false;  // the handshake did not arrive within handshake_timeout
  bool closed = false;     // closed by us (stop, a newer connection from the same sender)
};

}  // namespace rpool::net::peer

namespace rpool::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

struct PeerTransport::State {
  using Peer = peer::Peer;
  using Inbound = peer::Inbound;
  static void release_if_large(Bytes& b) { peer::release_if_large(b); }

  State(asio::io_context& io_, Options options_, OnMessage on_message_)
      : io(io_),
        options(std::move(options_)),
        on_message(std::move(on_message_)),
        acceptor(io_),
        cluster_id(options.cluster_id),
        rng(std::random_device{}()) {}

  asio::io_context& io;
  const Options options;
  const OnMessage on_message;
  tcp::acceptor acceptor;
  std::uint16_t bound_port = 0;
  std::uint64_t cluster_id;  // options.cluster_id, or the adopted one (adopt_cluster_id)
  bool started = false;
  bool stopped = false;
  std::map<NodeId, std::shared_ptr<Peer>> peers;
  // Accepted connections: at most handshakes_pending_max not yet handshaken, at most
  // incoming_connections_max handshaken.
  std::set<std::shared_ptr<Inbound>> inbound;
  std::uint64_t accepted_total = 0;
  // Receiving-side counters per sender, plus drops of messages addressed to them; only for
  // peers (set_peer), so that a stranger naming itself after ever new ids cannot grow the map.
  // Everything about other ids is summed in `strangers`.
  std::map<NodeId, PeerStats> by_id;
  PeerStats strangers;
  std::uint64_t malformed_total = 0;
  std::uint64_t handshakes_rejected = 0;  // the sum of rejected_by_reason
  std::array<std::uint64_t, peer_reject_reason_count> rejected_by_reason{};
  peer::LogLimit refusals_logged;  // lines about refused connections and malformed frames, by address
  Bytes scratch;        // send() encodes here first, to know the frame's size before queueing it
  std::mt19937_64 rng;  // reconnect jitter only

  void log(std::string_view line) const {
    if (stopped) return;
    if (options.log) {
      options.log(line);
    } else {
      fmt::print(stderr, "rpool peer {}: {}\n", options.self, line);
    }
  }

  // Logs a line about a connection refused or closed for what it sent: at most once a minute per
  // remote address (peer::LogLimit), saying how many lines were held back before it.
  void log_refusal(const asio::ip::address& remote, std::string_view line) {
    std::uint64_t held_back = 0;
    if (!refusals_logged.admit(remote.to_string(), peer::LogLimit::Clock::now(), &held_back)) return;
    if (held_back == 0) return log(line);
    log(fmt::format("{} ({} more such lines from this address not logged since the last)", line,
                    held_back));
  }

  std::chrono::milliseconds backoff(unsigned failures) {
    RPOOL_ASSERT(failures >= 1);
    const auto hi = options.reconnect_max.count();
    auto base = options.reconnect_min.count();
    for (unsigned i = 1; i < failures && base < hi; ++i) base *= 2;
    base = std::min(base, hi);
    // Jitter in [base/2, base] keeps peers that failed together from retrying in lockstep.
    std::uniform_int_distribution<std::chrono::milliseconds::rep> jitter(base / 2, base);
    return std::chrono::milliseconds(jitter(rng));
  }

  PeerStats& counters_of(NodeId id) { return peers.count(id) != 0 ? by_id[id] : strangers; }

  std::size_t count_inbound(bool handshaken) const {
    return static_cast<std::size_t>(
        std::count_if(inbound.begin(), inbound.end(),
                      [&](const auto& in) { return in->handshaken == handshaken; }));
  }

  void close_inbound(Inbound& in) {
    if (in.closed) return;
    in.closed = true;
    in.stream.close();
    in.handshake_timer.cancel();
  }

  // Aborts whatever the peer's coroutine is waiting for (connect, write, idle wait, backoff).
  static void interrupt(Peer& p) {
    p.stream.close();
    p.wake.cancel();
    p.retry.cancel();
  }

  // Ends an established outgoing connection from outside the writer (the watcher, set_peer):
  // nothing more is queued for it, and the writer wakes up to do the rest of the accounting.
  void end_connection(Peer& p, std::string reason) {
    RPOOL_ASSERT(p.link == Peer::Link::connected);
    p.link = Peer::Link::waiting;
    p.close_reason = std::move(reason);
    drop_queue(p);
    interrupt(p);
  }

  void drop_queue(Peer& p) {
    p.stats.frames_dropped += p.pending_frames;
    p.pending.clear();
    p.pending_frames = 0;
    release_if_large(p.pending);
  }
};

}  // namespace rpool::net

namespace rpool::net::peer {

using State = PeerTransport::State;

// The connecting side of one peer, for as long as it is a peer (outbound.cpp).
asio::awaitable<void> run_peer(std::shared_ptr<State> st, std::shared_ptr<Peer> p);
// Accepts connections until the transport stops (inbound.cpp).
asio::awaitable<void> accept_loop(std::shared_ptr<State> st);

}  // namespace rpool::net::peer
