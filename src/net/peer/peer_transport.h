// The Raft peer transport: Raft messages between the nodes of one cluster over TCP.
//
// Connections. Each node keeps ONE outgoing connection per peer and uses it only to send; the
// connections a node accepts are used only to receive. So there is never a race between two
// connections for the same pair of nodes, and ordering per (sender, receiver) pair is the TCP
// order of the sender's one connection. Outgoing sockets are bound to `bind_host` (port 0) before
// connecting, so nodes on 127.0.0.1, 127.0.0.2, ... are told apart by their source address.
// A lost or refused connection is retried with exponential backoff and jitter between
// `reconnect_min` and `reconnect_max`.
//
// Wire format (all integers little-endian), byte by byte:
//
//   handshake, once, first on every connection, from the connecting side (29 bytes):
//     0  4  magic "RPLP"
//     4  1  protocol version (peer_protocol_version = 1)
//     5  8  cluster id
//    13  8  sender node id
//    21  8  receiver node id (whom the sender believes it is talking to)
//
//   then frames, back to back:
//     0  4  payload length in bytes (not counting these 5 header bytes), <= frame_bytes_max
//     4  1  frame type: 1 = raft message
//     5  n  payload: raft::encode_message() bytes
//
// The receiver checks magic, version, cluster id and receiver id (and that the sender is not 0 and
// not itself); a mismatch closes the connection and is counted in handshakes_rejected_total(): a
// node never talks to a stranger's cluster. A frame longer than frame_bytes_max, of an unknown
// type, whose payload does not decode, whose `to` is not this node or whose `from` is not the
// handshake's sender, or a connection that ends in the middle of a frame, closes that connection
// and is counted in frames_malformed. Peer input never crashes the node nor trips an assertion.
// Nothing flows from receiver to sender; the sender treats any byte it reads as a protocol error.
//
// Queues. Each peer has a send queue bounded in bytes (queue_bytes_max, frames included). Frames
// are encoded into one contiguous buffer as they are sent, and a writer takes the whole buffer in
// one async_write, so a burst of messages costs one system call. When a message does not fit it is
// dropped and counted; Raft tolerates loss and retransmits from its own state. While a connection
// is being set up, messages queue (so the first votes of a starting node are not lost); when the
// attempt fails or an established connection is lost, whatever is queued is dropped and counted,
// because by the next attempt it is stale and Raft resends what still matters.
//
// TLS. With Options::tls, every connection is TLS 1.3 with certificates on both sides (see
// net/tls/tls.h for the context). The connecting side verifies that the receiver's certificate
// chains to the CA and covers the host it connects to. The accepting side requires a certificate
// that chains to the CA, then reads the handshake, and accepts the connection only if the sender
// id it claims is a peer (set_peer: a member, a learner being added, the leader) and the
// certificate's subjectAltName covers that peer's host. So a stranger without a certificate, with
// one of another CA, or with a member's certificate claiming another member's id, is closed
// before a single frame is decoded, and counted by reason (rejected_connections()). The TLS
// handshake shares the handshake timeout and the pool of handshakes_pending_max. Without TLS the
// handshake is the only check: the raft port trusts its network.
//
// Threads. Everything runs on the one thread that runs the io_context given to the constructor
// (the node's event-loop thread): every public function must be called from that thread, and
// on_message and log are called on it. Because of that there are no locks here.
//
// Lifetime. stop() (also run by the destructor) closes every socket and timer; after it returns
// neither on_message nor log is called again. Operations still pending in the io_context keep the
// internal state alive until they complete with operation_aborted, so the transport may be
// destroyed while the io_context still holds its handlers. The io_context must outlive the
// transport (its sockets use the io_context's services).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <boost/asio/io_context.hpp>

namespace boost::asio::ssl {
class context;
}

#include "base/types.h"
#include "raft/core.h"
#include "raft/types.h"

namespace rpool::net {

inline constexpr std::uint8_t peer_protocol_version = 1;
inline constexpr std::size_t peer_handshake_bytes = 29;
inline constexpr std::size_t peer_frame_header_bytes = 5;
inline constexpr std::uint8_t peer_frame_raft_message = 1;
inline constexpr std::chrono::milliseconds peer_handshake_timeout_default{2000};

// The largest frame payload a correct node sends, with the raft defaults the node runs with. An
// append carries at most message_bytes_max of entries as counted by raft::entry_bytes (data + 24,
// more than the 21 bytes of per-entry encoding), or one larger entry of up to entry_bytes_max; a
// snapshot chunk carries at most snapshot_chunk_bytes of data. Around that come the message's
// fixed fields and, in a snapshot chunk or a config entry, a membership: the overhead allows
// membership_members_allowance members each with a full-size context.
inline constexpr std::size_t peer_membership_members_allowance = 16;
inline constexpr std::size_t peer_message_overhead_bytes =
    4096 + peer_membership_members_allowance * (8 + 8 + 4 + raft::member_context_bytes_max);
inline constexpr std::size_t peer_frame_bytes_max_default =
    std::max({raft::message_bytes_max_default, raft::entry_bytes_max_default + 24,
              raft::snapshot_chunk_bytes_default}) +
    peer_message_overhead_bytes;
static_assert(peer_frame_bytes_max_default >=
              raft::snapshot_chunk_bytes_default + peer_message_overhead_bytes);
static_assert(peer_frame_bytes_max_default >=
              raft::message_bytes_max_default + peer_message_overhead_bytes);
static_assert(peer_frame_bytes_max_default >=
              raft::entry_bytes_max_default + 24 + peer_message_overhead_bytes);
inline constexpr std::size_t peer_handshakes_pending_max_default = 16;

// Why an accepted connection was closed before its first frame (rejected_connections()).
enum class PeerRejectReason : std::uint8_t {
  handshake,              // bad magic, version, cluster id, receiver or sender id, or EOF before it
  timeout,                // no (TLS) handshake within handshake_timeout
  pool_full,              // handshakes_pending_max or incoming_connections_max reached
  tls_handshake,          // the TLS handshake failed otherwise (plaintext, wrong version, ...)
  no_certificate,         // TLS: the client presented no certificate
  untrusted_certificate,  // TLS: its certificate does not chain to the CA (or is expired, ...)
  unknown_member,         // TLS: the claimed sender id is not a peer of this node
  wrong_identity,         // TLS: the certificate does not cover the claimed sender's raft host
};
inline constexpr std::size_t peer_reject_reason_count = 8;
std::string_view to_string(PeerRejectReason reason);

// Counters of one peer. Sending side (this node's outgoing connection to the peer): connected,
// bytes_sent, frames_sent, frames_dropped, writes, queued_bytes, connects, disconnects. Receiving
// side (connections the peer made to this node): bytes_received, frames_received,
// frames_malformed.
struct PeerStats {
  bool connected = false;              // TCP connected and handshake sent (not yet acknowledged)
  std::uint64_t bytes_sent = 0;        // handshake and frame headers included
  std::uint64_t bytes_received = 0;    // handshake and frame headers included
  std::uint64_t frames_sent = 0;       // written to the socket completely
  std::uint64_t frames_received = 0;   // decoded and delivered to on_message
  std::uint64_t frames_dropped = 0;    // queue full, not connected, unknown peer or too large
  std::uint64_t frames_malformed = 0;  // received from this peer and rejected
  std::uint64_t connects = 0;          // outgoing connections established
  std::uint64_t disconnects = 0;       // established outgoing connections lost
  std::uint64_t writes = 0;            // async_write operations (each carries a batch of frames)
  std::uint64_t queued_bytes = 0;      // waiting to be written, <= queue_bytes_max
};

// One accepted connection whose handshake passed.
struct InboundConnection {
  NodeId sender;
  std::string remote_address;  // the source address the peer connected from
  std::uint16_t remote_port = 0;
};

class PeerTransport {
 public:
  struct Options {
    NodeId self;
    // Every handshake carries it; a peer of another cluster is refused. 0 with adopt_cluster_id:
    // a node joining an existing cluster takes the id of the first peer that connects to it
    // (and reports it through on_cluster_id, to be saved); until then it connects to nobody.
    std::uint64_t cluster_id = 0;
    bool adopt_cluster_id = false;
    std::function<void(std::uint64_t)> on_cluster_id;
    std::string listen_host;
    std::uint16_t listen_port = 0;           // 0: any free port (read it back with listen_port())
    std::string bind_host;                   // source address of outgoing connections; empty: any
    std::size_t queue_bytes_max = 64 << 20;  // per peer
    // Payload bytes, both directions. A larger frame closes the connection before any of it
    // is buffered; raise it together with the raft message and chunk sizes.
    std::size_t frame_bytes_max = peer_frame_bytes_max_default;
    std::chrono::milliseconds reconnect_min{50};
    std::chrono::milliseconds reconnect_max{1000};
    std::chrono::milliseconds connect_timeout{2000};
    // An accepted connection must handshake within this; a peer writes its handshake right
    // after connecting, so only a stranger ever waits for it.
    std::chrono::milliseconds handshake_timeout{peer_handshake_timeout_default};
    // Accepted connections still waiting for their handshake have their own small pool, so
    // that strangers (anyone who can reach the port) hold few sockets and cannot take the
    // places of peers. When it is full, a new connection closes the oldest waiting one: a
    // peer handshakes at once and gets through, a silent stranger is the one that goes.
    std::size_t handshakes_pending_max = peer_handshakes_pending_max_default;
    // Null: plaintext. Else every connection, both ways, is mutual TLS with this context (see
    // TLS above); it must come from net::make_tls_context.
    std::shared_ptr<boost::asio::ssl::context> tls;
    // Connections whose handshake passed (at most one per sender); a handshake beyond it is
    // refused.
    std::size_t incoming_connections_max = 256;
    // Connection events, one line each, sparingly (a failing peer logs once per streak, not
    // per retry). Empty: lines go to stderr.
    std::function<void(std::string_view)> log;
  };
  using OnMessage = std::function<void(raft::Message&&)>;

  // Requires options.self != 0, reconnect_min <= reconnect_max, 0 < frame_bytes_max < 4 GiB.
  PeerTransport(boost::asio::io_context& io, Options options, OnMessage on_message);
  ~PeerTransport();
  PeerTransport(const PeerTransport&) = delete;
  PeerTransport& operator=(const PeerTransport&) = delete;

  // Binds listen_host:listen_port and starts accepting. Returns the error (e.g. address_in_use
  // when the port is taken, or invalid_argument for a listen_host that is not an IP address) and
  // changes nothing on failure. Call at most once, before stop().
  std::error_code start();
  // The port actually bound (useful with listen_port = 0); 0 before a successful start().
  std::uint16_t listen_port() const;
  // Closes the listener and every connection, drops every queue. Idempotent; no callbacks after
  // it returns. The transport cannot be started again.
  void stop();

  // Adds a peer (id != 0 and != self, else an assertion fails), or updates its address (a changed
  // address drops the current connection and connects to the new one at once). Connecting starts
  // immediately, whether or not start() ran.
  void set_peer(NodeId id, std::string host, std::uint16_t port);
  // Forgets a peer: closes its outgoing connection, drops its queue and its counters.
  void remove_peer(NodeId id);

  // Queues `m` for m.to without blocking. Dropped (and counted) when m.to is not a peer, when the
  // frame does not fit in the peer's queue or exceeds frame_bytes_max, or after stop().
  void send(raft::Message m);

  // Counters for one peer; zeros for an id that is not a peer. Per-peer counters are kept only
  // for the ids set with set_peer, so that a stranger (any id a connection claims) cannot grow
  // them without bound.
  PeerStats stats(NodeId id) const;
  // The receiving-side counters of every sender that is not a peer, and the messages dropped
  // because their receiver is not a peer, summed.
  PeerStats stranger_stats() const;
  // The peers set with set_peer, ascending.
  std::vector<NodeId> peers() const;
  // The accepted connections that passed their handshake, in no particular order.
  std::vector<InboundConnection> inbound_connections() const;
  // Malformed frames over all connections (sums frames_malformed of every sender).
  std::uint64_t malformed_frames_total() const;
  // Accepted connections closed because their handshake was wrong (magic, version, cluster id,
  // receiver id, sender id), incomplete at EOF or not done within handshake_timeout, or because
  // a connection pool (handshakes_pending_max, incoming_connections_max) was full.
  std::uint64_t handshakes_rejected_total() const;
  // The same connections by reason; they sum to handshakes_rejected_total().
  std::uint64_t rejected_connections(PeerRejectReason reason) const;

  // Crashes loudly if internal bookkeeping is inconsistent (queue bounds, connection states).
  void check_invariants() const;

  struct State;  // shared with the pending asynchronous operations (see Lifetime above)

 private:
  std::shared_ptr<State> state_;
};

}  // namespace rpool::net
