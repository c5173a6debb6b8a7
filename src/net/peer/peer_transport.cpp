// The public functions of the peer transport (see the header for the protocol, the queueing
// rules and the threading model; state.h for the coroutines that do the I/O).
#include "net/peer/peer_transport.h"

#include <limits>
#include <utility>

#include <boost/asio/co_spawn.hpp>

#include "net/peer/state.h"

namespace rpool::net {

using peer::buffer_keep_bytes_max;
using peer::Inbound;
using peer::Peer;
using peer::release_if_large;
using peer::rethrow;
std::string_view to_string(PeerRejectReason reason) {
  switch (reason) {
    case PeerRejectReason::handshake: return "handshake";
    case PeerRejectReason::timeout: return "timeout";
    case PeerRejectReason::pool_full: return "pool_full";
    case PeerRejectReason::tls_handshake: return "tls_handshake";
    case PeerRejectReason::no_certificate: return "no_certificate";
    case PeerRejectReason::untrusted_certificate: return "untrusted_certificate";
    case PeerRejectReason::unknown_member: return "unknown_member";
    case PeerRejectReason::wrong_identity: return "wrong_identity";
  }
  return "unknown";
}

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
  asio::co_spawn(st.io, peer::accept_loop(state_), rethrow);
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
  asio::co_spawn(st.io, peer::run_peer(state_, p), rethrow);
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

std::uint64_t PeerTransport::rejected_connections(PeerRejectReason reason) const {
  const auto at = static_cast<std::size_t>(reason);
  RPOOL_ASSERT_OP(at, <, peer_reject_reason_count);
  return state_->rejected_by_reason[at];
}

void PeerTransport::check_invariants() const {
  const State& st = *state_;
  if (st.stopped) {
    RPOOL_ASSERT(st.peers.empty());
    RPOOL_ASSERT(st.inbound.empty());
  }
  if (st.started) RPOOL_ASSERT(st.bound_port != 0);
  std::uint64_t rejected = 0;
  for (const std::uint64_t n : st.rejected_by_reason) rejected += n;
  RPOOL_ASSERT_OP(rejected, ==, st.handshakes_rejected);
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
    if (p->link == Peer::Link::connected) RPOOL_ASSERT(p->stream.socket().is_open());
    if (p->writer_idle) RPOOL_ASSERT(p->link == Peer::Link::connected);
  }
  for (const auto& in : st.inbound) {
    RPOOL_ASSERT(!in->closed);
    if (in->handshaken) RPOOL_ASSERT(in->sender != NodeId(0));
  }
}

}  // namespace rpool::net
