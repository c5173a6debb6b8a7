// The peer transport, written as C++20 coroutines on the node's io_context (see the header for the
// protocol, the queueing rules and the threading model).
//
// Three kinds of coroutine run here, each holding shared_ptrs to what it touches so that a
// transport destroyed while they are suspended leaves nothing dangling:
//   accept_loop   one per transport: accepts connections and starts run_inbound for each;
//   run_inbound   one per accepted connection: handshake, then frames to on_message;
//   run_peer      one per peer: connect, write the handshake and the queue, reconnect after
//                 backoff; with watch_outgoing beside it, which notices the peer closing.
// Each coroutine re-checks `stopped` (and its peer's `removed`, its connection's `closed`) after
// every suspension, because stop(), remove_peer() or set_peer() may have run meanwhile, possibly
// from inside on_message.
#include "net/peer/peer_transport.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <exception>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>

#include "base/assert.h"
#include "base/bytes.h"

namespace rpool::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
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
void rethrow(std::exception_ptr e) {
  if (e) std::rethrow_exception(e);
}

void release_if_large(Bytes& b) {
  if (b.empty() && b.capacity() > buffer_keep_bytes_max) Bytes().swap(b);
}

std::string describe(const error_code& ec) {
  if (ec == asio::error::eof) return "closed by peer";
  return ec.message();
}

}  // namespace

// The sending side of one peer: its one outgoing connection and its queue.
struct Peer {
  enum class Link { connecting, connected, waiting };

  Peer(asio::io_context& io, NodeId id_, std::string host_, std::uint16_t port_)
      : id(id_), host(std::move(host_)), port(port_), socket(io), wake(io), retry(io) {}

  NodeId id;
  std::string host;
  std::uint16_t port;
  tcp::socket socket;
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
      : socket(std::move(s)), handshake_timer(socket.get_executor()), accepted(accepted_) {}

  tcp::socket socket;
  asio::steady_timer handshake_timer;
  std::uint64_t accepted;  // order of acceptance: the oldest waiting one is evicted first
  tcp::endpoint remote;
  NodeId sender;  // valid once handshaken
  bool handshaken = false;
  bool timed_out = false;  // the handshake did not arrive within handshake_timeout
  bool closed = false;     // closed by us (stop, a newer connection from the same sender)
};

struct PeerTransport::State {
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
  std::uint64_t handshakes_rejected = 0;
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
    error_code ignored;
    in.socket.close(ignored);
    in.handshake_timer.cancel();
  }

  // Aborts whatever the peer's coroutine is waiting for (connect, write, idle wait, backoff).
  static void interrupt(Peer& p) {
    error_code ignored;
    p.socket.close(ignored);
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

namespace {

using State = PeerTransport::State;

Bytes make_handshake(const State& st, NodeId receiver) {
  Bytes out(peer_handshake_bytes);
  std::copy(handshake_magic.begin(), handshake_magic.end(), out.begin());
  out[4] = peer_protocol_version;
  store_u64le(out.data() + 5, st.cluster_id);
  store_u64le(out.data() + 13, st.options.self.value());
  store_u64le(out.data() + 21, receiver.value());
  return out;
}

// Empty when the handshake is acceptable; else why not.
std::string check_handshake(State& st, const std::uint8_t* h, NodeId& sender) {
  if (std::memcmp(h, handshake_magic.data(), handshake_magic.size()) != 0) return "bad magic";
  if (h[4] != peer_protocol_version) {
    return fmt::format("protocol version {} (this node speaks {})", h[4], peer_protocol_version);
  }
  const std::uint64_t cluster_id = load_u64le(h + 5);
  const bool adopt = st.cluster_id == 0 && st.options.adopt_cluster_id && cluster_id != 0;
  if (cluster_id != st.cluster_id && !adopt) {
    const NodeId claimed(load_u64le(h + 13));
    if (st.options.on_foreign_cluster && cluster_id != 0 && st.peers.count(claimed) != 0)
      st.options.on_foreign_cluster(claimed, cluster_id);
    return fmt::format("cluster id {} (this cluster is {})", cluster_id, st.cluster_id);
  }
  sender = NodeId(load_u64le(h + 13));
  if (sender == NodeId(0) || sender == st.options.self) {
    return fmt::format("sender id {}", sender);
  }
  const NodeId receiver(load_u64le(h + 21));
  if (receiver != st.options.self) return fmt::format("meant for node {}", receiver);
  if (adopt) {
    st.cluster_id = cluster_id;
    st.log(fmt::format("joined cluster {:016x} (learned from peer {})", cluster_id, sender));
    if (st.options.on_cluster_id) st.options.on_cluster_id(cluster_id);
    for (auto& [id, peer] : st.peers) peer->retry.cancel();  // connect now, not after the backoff
  }
  return {};
}

// Watches the outgoing connection of attempt `attempt`: the receiver never writes, so any read
// completion (EOF, error, or stray bytes) means the connection is over.
asio::awaitable<void> watch_outgoing(std::shared_ptr<State> st, std::shared_ptr<Peer> p,
                                     std::uint64_t attempt) {
  std::array<std::uint8_t, 64> sink{};
  auto [ec, n] = co_await p->socket.async_read_some(asio::buffer(sink), use_tuple);
  if (st->stopped || p->removed || p->attempt != attempt || p->link != Peer::Link::connected) {
    co_return;
  }
  st->end_connection(*p, ec ? describe(ec)
                            : fmt::format("peer sent {} bytes on a send-only connection", n));
}

// One connection attempt; on success the socket is connected (and bound to bind_host).
asio::awaitable<error_code> connect_once(std::shared_ptr<State> st, std::shared_ptr<Peer> p) {
  const std::uint64_t generation = p->address_generation;
  error_code ec;
  tcp::endpoint remote;
  const auto address = asio::ip::make_address(p->host, ec);
  if (!ec) {
    remote = tcp::endpoint(address, p->port);
  } else {
    tcp::resolver resolver(st->io);
    auto [rec, results] =
        co_await resolver.async_resolve(p->host, std::to_string(p->port), use_tuple);
    if (rec) co_return rec;
    if (results.empty()) co_return asio::error::host_not_found;
    remote = results.begin()->endpoint();
  }
  if (st->stopped || p->removed || p->address_generation != generation) {
    co_return asio::error::operation_aborted;
  }

  p->socket.close(ec);
  p->socket.open(remote.protocol(), ec);
  if (ec) co_return ec;
  p->socket.set_option(tcp::no_delay(true), ec);
  if (ec) co_return ec;
  p->socket.set_option(asio::socket_base::keep_alive(true), ec);
  if (ec) co_return ec;
  if (!st->options.bind_host.empty()) {
    const auto local = asio::ip::make_address(st->options.bind_host, ec);
    if (ec) co_return ec;
    p->socket.bind(tcp::endpoint(local, 0), ec);
    if (ec) co_return ec;
  }

  // A connect to a silent host can hang for minutes; give up after connect_timeout.
  auto timed_out = std::make_shared<bool>(false);
  asio::steady_timer deadline(st->io);
  deadline.expires_after(st->options.connect_timeout);
  deadline.async_wait([p, timed_out, attempt = p->attempt](const error_code& e) {
    if (e || p->attempt != attempt) return;
    *timed_out = true;
    error_code ignored;
    p->socket.close(ignored);
  });
  auto [cec] = co_await p->socket.async_connect(remote, use_tuple);
  deadline.cancel();
  if (st->stopped || p->removed || p->address_generation != generation) {
    co_return asio::error::operation_aborted;
  }
  if (*timed_out) co_return asio::error::timed_out;
  co_return cec;
}

// The life of one peer's outgoing side: connect, send, and after a failure wait and retry.
asio::awaitable<void> run_peer(std::shared_ptr<State> st, std::shared_ptr<Peer> p) {
  unsigned failures = 0;  // consecutive failed attempts or short-lived connections
  while (!st->stopped && !p->removed) {
    if (st->cluster_id == 0) {
      // A joining node does not know its cluster yet: every handshake would be refused. It
      // learns the id from the first peer that connects (adopt_cluster_id).
      p->link = Peer::Link::waiting;
      p->retry.expires_after(st->options.reconnect_max);
      co_await p->retry.async_wait(use_tuple);
      continue;
    }
    ++p->attempt;
    p->link = Peer::Link::connecting;
    const std::uint64_t generation = p->address_generation;
    const error_code ec = co_await connect_once(st, p);
    if (st->stopped || p->removed) break;
    if (ec) {
      st->drop_queue(*p);
      p->link = Peer::Link::waiting;
      error_code ignored;
      p->socket.close(ignored);
      if (p->address_generation != generation) continue;  // new address: try it at once
      if (failures == 0) {
        st->log(fmt::format("cannot connect to peer {} at {}:{}: {} (retrying quietly)", p->id,
                            p->host, p->port, describe(ec)));
      }
      ++failures;
      p->retry.expires_after(st->backoff(failures));
      co_await p->retry.async_wait(use_tuple);
      continue;
    }

    p->link = Peer::Link::connected;
    ++p->stats.connects;
    const auto connected_at = std::chrono::steady_clock::now();
    {
      error_code local_ec;
      const auto local = p->socket.local_endpoint(local_ec);
      st->log(fmt::format("connected to peer {} at {}:{} from {}", p->id, p->host, p->port,
                          local_ec ? std::string("?") : local.address().to_string()));
    }
    asio::co_spawn(st->io, watch_outgoing(st, p, p->attempt), rethrow);

    // The handshake goes out in the same write as whatever queued while connecting.
    Bytes writing = make_handshake(*st, p->id);
    std::size_t writing_frames = 0;
    bool handshake_in_writing = true;
    while (!st->stopped && !p->removed && p->link == Peer::Link::connected) {
      if (handshake_in_writing || writing.empty()) {
        if (writing.empty()) {
          if (p->pending.empty()) {
            p->wake.expires_at(asio::steady_timer::time_point::max());
            p->writer_idle = true;
            co_await p->wake.async_wait(use_tuple);
            p->writer_idle = false;
            continue;
          }
          writing.swap(p->pending);
        } else {
          writing.insert(writing.end(), p->pending.begin(), p->pending.end());
          p->pending.clear();
        }
        writing_frames = p->pending_frames;
        p->pending_frames = 0;
        handshake_in_writing = false;
      }
      auto [wec, n] = co_await asio::async_write(p->socket, asio::buffer(writing), use_tuple);
      p->stats.bytes_sent += n;
      if (wec) {
        if (p->close_reason.empty()) p->close_reason = describe(wec);
        break;
      }
      ++p->stats.writes;
      p->stats.frames_sent += writing_frames;
      writing_frames = 0;
      writing.clear();
      release_if_large(writing);
    }

    // The connection is over (or the transport stopped, or the peer went away).
    p->link = Peer::Link::waiting;
    error_code ignored;
    p->socket.close(ignored);
    p->stats.frames_dropped += writing_frames;
    st->drop_queue(*p);
    if (st->stopped || p->removed) break;
    ++p->stats.disconnects;
    const bool reconnect_at_once = p->address_generation != generation;
    st->log(fmt::format("lost connection to peer {} at {}:{}: {}", p->id, p->host, p->port,
                        p->close_reason.empty() ? "closed" : p->close_reason));
    p->close_reason.clear();
    if (reconnect_at_once) {
      failures = 0;
      continue;
    }
    // A connection that lived a while was healthy; one that dies at once (a peer that rejects
    // our handshake, say) keeps backing off like a failed connect.
    if (std::chrono::steady_clock::now() - connected_at >= st->options.reconnect_max) failures = 0;
    ++failures;
    p->retry.expires_after(st->backoff(failures));
    co_await p->retry.async_wait(use_tuple);
  }
  p->link = Peer::Link::waiting;
}

void count_malformed(State& st, const Inbound& in, std::string_view why) {
  ++st.malformed_total;
  ++st.counters_of(in.sender).frames_malformed;
  st.log(fmt::format("malformed frame from node {} at {}: {}; closing the connection", in.sender,
                     in.remote.address().to_string(), why));
}

void count_rejected(State& st, const Inbound& in, std::string_view why) {
  ++st.handshakes_rejected;
  st.log(fmt::format("rejected connection from {}:{}: {}", in.remote.address().to_string(),
                     in.remote.port(), why));
}

// One accepted connection: the handshake, then frames until EOF, an error or a malformed frame.
asio::awaitable<void> run_inbound(std::shared_ptr<State> st, std::shared_ptr<Inbound> in) {
  {
    error_code ec;
    in->remote = in->socket.remote_endpoint(ec);
    in->socket.set_option(tcp::no_delay(true), ec);
    in->socket.set_option(asio::socket_base::keep_alive(true), ec);
  }
  in->handshake_timer.expires_after(st->options.handshake_timeout);
  in->handshake_timer.async_wait([in](const error_code& e) {
    if (e || in->handshaken || in->closed) return;
    in->timed_out = true;
    error_code ignored;
    in->socket.close(ignored);
  });

  const std::size_t frame_bytes_max = st->options.frame_bytes_max;
  Bytes buf(read_chunk_bytes);
  std::size_t begin = 0;  // unparsed bytes are buf[begin, end)
  std::size_t end = 0;
  for (;;) {
    // Parse everything complete in the buffer; `need` is the size of the next incomplete unit.
    std::size_t need = 0;
    for (;;) {
      const std::size_t avail = end - begin;
      const std::uint8_t* at = buf.data() + begin;
      if (!in->handshaken) {
        if (avail < peer_handshake_bytes) {
          need = peer_handshake_bytes;
          break;
        }
        NodeId sender;
        const std::string why = check_handshake(*st, at, sender);
        if (!why.empty()) {
          count_rejected(*st, *in, why);
          st->close_inbound(*in);
          st->inbound.erase(in);
          co_return;
        }
        if (st->count_inbound(true) >= st->options.incoming_connections_max) {
          count_rejected(*st, *in,
                         fmt::format("{} peer connections already open",
                                     st->options.incoming_connections_max));
          st->close_inbound(*in);
          st->inbound.erase(in);
          co_return;
        }
        in->handshaken = true;
        in->sender = sender;
        in->handshake_timer.cancel();
        st->counters_of(sender).bytes_received += peer_handshake_bytes;
        begin += peer_handshake_bytes;
        // The sender keeps one outgoing connection to us; an older one from it is dead.
        std::vector<std::shared_ptr<Inbound>> stale;
        for (const auto& other : st->inbound) {
          if (other != in && other->handshaken && other->sender == sender) stale.push_back(other);
        }
        for (const auto& other : stale) {
          st->close_inbound(*other);
          st->inbound.erase(other);
        }
        st->log(fmt::format("accepted connection from node {} at {}:{}", sender,
                            in->remote.address().to_string(), in->remote.port()));
        // The sender is up (it restarted, or the network healed): if our connection to it is
        // waiting out a backoff, connect now instead of up to reconnect_max later. A restarted
        // node hears from the leader that much sooner.
        if (const auto peer = st->peers.find(sender);
            peer != st->peers.end() && peer->second->link == Peer::Link::waiting) {
          peer->second->retry.cancel();
        }
        continue;
      }
      if (avail < peer_frame_header_bytes) {
        need = peer_frame_header_bytes;
        break;
      }
      const std::uint32_t length = load_u32le(at);
      const std::uint8_t type = at[4];
      std::string why;
      if (length > frame_bytes_max) {
        why = fmt::format("frame of {} bytes, over frame_bytes_max {}", length, frame_bytes_max);
      } else if (type != peer_frame_raft_message) {
        why = fmt::format("unknown frame type {}", type);
      }
      if (why.empty() && avail < peer_frame_header_bytes + length) {
        need = peer_frame_header_bytes + length;
        break;
      }
      raft::Message m;
      if (why.empty()) {
        if (!raft::decode_message(ByteView(at + peer_frame_header_bytes, length), m)) {
          why = "payload does not decode as a raft message";
        } else if (m.to != st->options.self) {
          why = fmt::format("message for node {}", m.to);
        } else if (m.from != in->sender) {
          why = fmt::format("message from node {} on node {}'s connection", m.from, in->sender);
        }
      }
      if (!why.empty()) {
        count_malformed(*st, *in, why);
        st->close_inbound(*in);
        st->inbound.erase(in);
        co_return;
      }
      begin += peer_frame_header_bytes + length;
      PeerStats& counters = st->counters_of(in->sender);
      counters.bytes_received += peer_frame_header_bytes + length;
      ++counters.frames_received;
      st->on_message(std::move(m));
      // on_message may have stopped the transport or closed this connection.
      if (st->stopped || in->closed) co_return;
    }

    // Make room for the next read: move the partial unit to the front, grow toward `need` no
    // faster than data arrives.
    if (begin == end) {
      begin = end = 0;
      if (buf.size() > buffer_keep_bytes_max) Bytes(read_chunk_bytes).swap(buf);
    } else if (begin > 0) {
      std::memmove(buf.data(), buf.data() + begin, end - begin);
      end -= begin;
      begin = 0;
    }
    if (end == buf.size()) {
      RPOOL_ASSERT(need > end);
      buf.resize(std::min(need, std::max(buf.size() * 2, read_chunk_bytes)));
    }
    RPOOL_ASSERT(end < buf.size());

    auto [ec, n] = co_await in->socket.async_read_some(
        asio::buffer(buf.data() + end, buf.size() - end), use_tuple);
    if (st->stopped || in->closed) co_return;
    if (ec) {
      if (!in->handshaken) {
        count_rejected(*st, *in,
                       in->timed_out ? std::string("no handshake within handshake_timeout")
                                     : fmt::format("{} before the handshake", describe(ec)));
      } else if (ec == asio::error::eof && begin != end) {
        count_malformed(
            *st, *in,
            fmt::format("connection ended inside a frame ({} of {} bytes)", end - begin, need));
      } else {
        st->log(fmt::format("connection from node {} at {} ended: {}", in->sender,
                            in->remote.address().to_string(), describe(ec)));
      }
      st->close_inbound(*in);
      st->inbound.erase(in);
      co_return;
    }
    end += n;
  }
}

asio::awaitable<void> accept_loop(std::shared_ptr<State> st) {
  bool failing = false;  // log an accept failure once per streak
  while (!st->stopped) {
    auto [ec, socket] = co_await st->acceptor.async_accept(use_tuple);
    if (st->stopped) co_return;
    if (ec) {
      if (!failing) st->log(fmt::format("accept failed: {} (retrying)", ec.message()));
      failing = true;
      asio::steady_timer pause(st->io);
      pause.expires_after(accept_retry_delay);
      co_await pause.async_wait(use_tuple);
      continue;
    }
    failing = false;
    if (st->count_inbound(false) >= st->options.handshakes_pending_max) {
      // Make room by closing the connection that has waited longest for its handshake.
      std::shared_ptr<Inbound> oldest;
      for (const auto& in : st->inbound) {
        if (!in->handshaken && (!oldest || in->accepted < oldest->accepted)) oldest = in;
      }
      RPOOL_ASSERT(oldest != nullptr);
      count_rejected(*st, *oldest,
                     fmt::format("still no handshake when connection {} arrived, with {} waiting",
                                 st->accepted_total + 1, st->options.handshakes_pending_max));
      st->close_inbound(*oldest);
      st->inbound.erase(oldest);
    }
    auto in = std::make_shared<Inbound>(std::move(socket), ++st->accepted_total);
    st->inbound.insert(in);
    asio::co_spawn(st->io, run_inbound(st, in), rethrow);
  }
}

}  // namespace

PeerTransport::PeerTransport(asio::io_context& io, Options options, OnMessage on_message) {
  RPOOL_ASSERT(options.self != NodeId(0));
  RPOOL_ASSERT(options.reconnect_min.count() > 0);
  RPOOL_ASSERT(options.reconnect_min <= options.reconnect_max);
  RPOOL_ASSERT(options.frame_bytes_max > 0);
  RPOOL_ASSERT(options.frame_bytes_max <= std::numeric_limits<std::uint32_t>::max());
  RPOOL_ASSERT(options.incoming_connections_max > 0);
  RPOOL_ASSERT(options.handshakes_pending_max > 0);
  RPOOL_ASSERT(on_message);
  state_ = std::make_shared<State>(io, std::move(options), std::move(on_message));
}

PeerTransport::~PeerTransport() { stop(); }

std::error_code PeerTransport::start() {
  State& st = *state_;
  RPOOL_ASSERT(!st.started);
  RPOOL_ASSERT(!st.stopped);
  error_code ec;
  const auto address = asio::ip::make_address(st.options.listen_host, ec);
  if (ec) return std::make_error_code(std::errc::invalid_argument);
  const tcp::endpoint endpoint(address, st.options.listen_port);
  tcp::acceptor acceptor(st.io);
  // reuse_address lets a restarted node bind while old connections sit in TIME_WAIT; on Linux it
  // still refuses a port another socket is listening on.
  acceptor.open(endpoint.protocol(), ec);
  if (ec) return ec;
  acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (ec) return ec;
  acceptor.bind(endpoint, ec);
  if (ec) return ec;
  acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return ec;
  const auto local = acceptor.local_endpoint(ec);
  if (ec) return ec;
  st.bound_port = local.port();
  st.acceptor = std::move(acceptor);
  st.started = true;
  asio::co_spawn(st.io, accept_loop(state_), rethrow);
  return {};
}

std::uint16_t PeerTransport::listen_port() const { return state_->bound_port; }

void PeerTransport::stop() {
  State& st = *state_;
  if (st.stopped) return;
  st.stopped = true;
  error_code ignored;
  st.acceptor.close(ignored);
  for (auto& [id, peer] : st.peers) {
    peer->removed = true;
    State::interrupt(*peer);
    st.drop_queue(*peer);
  }
  st.peers.clear();
  for (const auto& in : st.inbound) st.close_inbound(*in);
  st.inbound.clear();
}

void PeerTransport::set_peer(NodeId id, std::string host, std::uint16_t port) {
  State& st = *state_;
  RPOOL_ASSERT(id != NodeId(0));
  RPOOL_ASSERT(id != st.options.self);
  if (st.stopped) return;
  auto it = st.peers.find(id);
  if (it != st.peers.end()) {
    Peer& p = *it->second;
    if (p.host == host && p.port == port) return;
    p.host = std::move(host);
    p.port = port;
    ++p.address_generation;
    // The coroutine connects to the new address at once.
    if (p.link == Peer::Link::connected) {
      st.end_connection(p, "address changed");
    } else {
      State::interrupt(p);
    }
    return;
  }
  auto p = std::make_shared<Peer>(st.io, id, std::move(host), port);
  st.peers.emplace(id, p);
  asio::co_spawn(st.io, run_peer(state_, p), rethrow);
}

void PeerTransport::remove_peer(NodeId id) {
  State& st = *state_;
  auto it = st.peers.find(id);
  if (it == st.peers.end()) return;
  Peer& p = *it->second;
  p.removed = true;
  State::interrupt(p);
  st.drop_queue(p);
  st.peers.erase(it);
  st.by_id.erase(id);
}

void PeerTransport::send(raft::Message m) {
  State& st = *state_;
  if (st.stopped) return;
  auto it = st.peers.find(m.to);
  if (it == st.peers.end()) {
    ++st.strangers.frames_dropped;
    return;
  }
  Peer& p = *it->second;
  if (p.link == Peer::Link::waiting) {
    ++p.stats.frames_dropped;
    return;
  }
  Bytes& frame = st.scratch;
  frame.assign(peer_frame_header_bytes, 0);
  raft::encode_message(m, frame);
  const std::size_t payload_bytes = frame.size() - peer_frame_header_bytes;
  const std::size_t needed = p.pending.size() + frame.size();
  if (payload_bytes > st.options.frame_bytes_max || needed > st.options.queue_bytes_max) {
    if (payload_bytes > st.options.frame_bytes_max) {
      st.log(fmt::format("dropping a {} message of {} bytes to peer {}: over frame_bytes_max",
                         raft::to_string(m.type), payload_bytes, p.id));
    }
    ++p.stats.frames_dropped;
    frame.clear();
    release_if_large(frame);
    return;
  }
  store_u32le(frame.data(), static_cast<std::uint32_t>(payload_bytes));
  frame[4] = peer_frame_raft_message;
  // Grow geometrically but never past the bound, so a full queue costs at most queue_bytes_max.
  if (p.pending.capacity() < needed) {
    p.pending.reserve(
        std::min(std::max(needed, 2 * p.pending.capacity()), st.options.queue_bytes_max));
  }
  p.pending.insert(p.pending.end(), frame.begin(), frame.end());
  ++p.pending_frames;
  frame.clear();
  release_if_large(frame);
  if (p.writer_idle) p.wake.cancel();
}

PeerStats PeerTransport::stats(NodeId id) const {
  const State& st = *state_;
  PeerStats s;
  if (auto it = st.by_id.find(id); it != st.by_id.end()) s = it->second;
  if (auto it = st.peers.find(id); it != st.peers.end()) {
    const Peer& p = *it->second;
    s.connected = p.link == Peer::Link::connected;
    s.bytes_sent = p.stats.bytes_sent;
    s.frames_sent = p.stats.frames_sent;
    s.frames_dropped += p.stats.frames_dropped;
    s.connects = p.stats.connects;
    s.disconnects = p.stats.disconnects;
    s.writes = p.stats.writes;
    s.queued_bytes = p.pending.size();
  }
  return s;
}

PeerStats PeerTransport::stranger_stats() const { return state_->strangers; }

std::vector<NodeId> PeerTransport::peers() const {
  std::vector<NodeId> ids;
  for (const auto& [id, peer] : state_->peers) ids.push_back(id);
  return ids;
}

std::vector<InboundConnection> PeerTransport::inbound_connections() const {
  std::vector<InboundConnection> out;
  for (const auto& in : state_->inbound) {
    if (!in->handshaken || in->closed) continue;
    out.push_back({in->sender, in->remote.address().to_string(), in->remote.port()});
  }
  return out;
}

std::uint64_t PeerTransport::malformed_frames_total() const { return state_->malformed_total; }

std::uint64_t PeerTransport::handshakes_rejected_total() const {
  return state_->handshakes_rejected;
}

void PeerTransport::check_invariants() const {
  const State& st = *state_;
  if (st.stopped) {
    RPOOL_ASSERT(st.peers.empty());
    RPOOL_ASSERT(st.inbound.empty());
  }
  if (st.started) RPOOL_ASSERT(st.bound_port != 0);
  RPOOL_ASSERT_OP(st.count_inbound(false), <=, st.options.handshakes_pending_max);
  RPOOL_ASSERT_OP(st.count_inbound(true), <=, st.options.incoming_connections_max);
  for (const auto& [id, counters] : st.by_id) RPOOL_ASSERT(st.peers.count(id) != 0);
  for (const auto& [id, p] : st.peers) {
    RPOOL_ASSERT_OP(id, ==, p->id);
    RPOOL_ASSERT(!p->removed);
    RPOOL_ASSERT_OP(p->pending.size(), <=, st.options.queue_bytes_max);
    RPOOL_ASSERT(p->pending.capacity() <=
                 std::max(st.options.queue_bytes_max, buffer_keep_bytes_max));
    if (p->pending_frames == 0) RPOOL_ASSERT(p->pending.empty());
    if (!p->pending.empty())
      RPOOL_ASSERT(p->pending.size() >= p->pending_frames * peer_frame_header_bytes);
    if (p->link == Peer::Link::waiting) RPOOL_ASSERT(p->pending.empty());
    if (p->link == Peer::Link::connected) RPOOL_ASSERT(p->socket.is_open());
    if (p->writer_idle) RPOOL_ASSERT(p->link == Peer::Link::connected);
  }
  for (const auto& in : st.inbound) {
    RPOOL_ASSERT(!in->closed);
    if (in->handshaken) RPOOL_ASSERT(in->sender != NodeId(0));
  }
}

}  // namespace rpool::net
