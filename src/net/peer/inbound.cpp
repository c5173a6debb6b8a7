// The accepting side of the peer transport: accept_loop takes connections, run_inbound runs each
// one: TLS (when configured) and the identity of the certificate, the handshake, then frames to
// on_message. Nothing a connection sends reaches the decoder before all of it passed.
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cstring>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ssl/error.hpp>

#include "net/tls/tls.h"

#include "net/peer/state.h"

namespace rpool::net::peer {

namespace {

// Empty when the handshake is acceptable; else why not. Sets `sender`, and `adopt` when the
// handshake carries the cluster id a joining node waits for (adopted by the caller once every
// other check passed).
std::string check_handshake(State& st, const std::uint8_t* h, NodeId& sender, bool& adopt) {
  if (std::memcmp(h, handshake_magic.data(), handshake_magic.size()) != 0) return "bad magic";
  if (h[4] != peer_protocol_version) {
    return fmt::format("protocol version {} (this node speaks {})", h[4], peer_protocol_version);
  }
  const std::uint64_t cluster_id = load_u64le(h + 5);
  adopt = st.cluster_id == 0 && st.options.adopt_cluster_id && cluster_id != 0;
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
  return {};
}

void adopt_cluster_id(State& st, std::uint64_t cluster_id, NodeId sender) {
  st.cluster_id = cluster_id;
  st.log(fmt::format("joined cluster {:016x} (learned from peer {})", cluster_id, sender));
  if (st.options.on_cluster_id) st.options.on_cluster_id(cluster_id);
  for (auto& [id, peer] : st.peers) peer->retry.cancel();  // connect now, not after the backoff
}

// Why a TLS handshake that this node accepted failed.
PeerRejectReason tls_failure_reason(const error_code& ec) {
  if (ec.category() == asio::error::get_ssl_category()) {
    switch (ERR_GET_REASON(static_cast<unsigned long>(ec.value()))) {
      case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE: return PeerRejectReason::no_certificate;
      case SSL_R_CERTIFICATE_VERIFY_FAILED: return PeerRejectReason::untrusted_certificate;
      default: break;
    }
  }
  return PeerRejectReason::tls_handshake;
}

// With TLS, after the handshake named `sender`: whether the connection's certificate (which
// chains to the CA, or the TLS handshake would have failed) may speak for it. A member's
// certificate covers its own raft host only, so it cannot claim another member's id; and only an
// id this node talks to is accepted at all.
std::optional<PeerRejectReason> check_identity(State& st, Inbound& in, NodeId sender,
                                               std::string& why) {
  const auto peer = st.peers.find(sender);
  if (peer == st.peers.end()) {
    why = fmt::format("node {} is not a member, learner or leader this node talks to", sender);
    return PeerRejectReason::unknown_member;
  }
  RPOOL_ASSERT(in.stream.tls() != nullptr);
  const X509* cert = SSL_get0_peer_certificate(in.stream.tls()->native_handle());
  if (!certificate_covers(cert, peer->second->host)) {
    why = fmt::format("its certificate does not cover {}, the raft host of node {}",
                      peer->second->host, sender);
    return PeerRejectReason::wrong_identity;
  }
  return std::nullopt;
}

void count_malformed(State& st, const Inbound& in, std::string_view why) {
  ++st.malformed_total;
  ++st.counters_of(in.sender).frames_malformed;
  st.log_refusal(in.remote.address(),
                 fmt::format("malformed frame from node {} at {}: {}; closing the connection",
                             in.sender, in.remote.address().to_string(), why));
}

void count_rejected(State& st, const Inbound& in, PeerRejectReason reason, std::string_view why) {
  ++st.handshakes_rejected;
  ++st.rejected_by_reason[static_cast<std::size_t>(reason)];
  st.log_refusal(in.remote.address(),
                 fmt::format("rejected connection from {}:{}: {}",
                             in.remote.address().to_string(), in.remote.port(), why));
}

void reject(State& st, const std::shared_ptr<Inbound>& in, PeerRejectReason reason,
            std::string_view why) {
  count_rejected(st, *in, reason, why);
  st.close_inbound(*in);
  st.inbound.erase(in);
}

}  // namespace

// One accepted connection: TLS (when configured), the handshake and, with TLS, the identity of the
// certificate; then frames until EOF, an error or a malformed frame.
asio::awaitable<void> run_inbound(std::shared_ptr<State> st, std::shared_ptr<Inbound> in) {
  {
    error_code ec;
    tcp::socket& socket = in->stream.socket();
    in->remote = socket.remote_endpoint(ec);
    socket.set_option(tcp::no_delay(true), ec);
    socket.set_option(asio::socket_base::keep_alive(true), ec);
  }
  // One deadline for the TLS handshake and the peer handshake together.
  in->handshake_timer.expires_after(st->options.handshake_timeout);
  in->handshake_timer.async_wait([in](const error_code& e) {
    if (e || in->handshaken || in->closed) return;
    in->timed_out = true;
    in->stream.close();
  });
  if (st->options.tls) {
    PeerStream::Tls& tls = in->stream.start_tls(*st->options.tls);
    auto [ec] = co_await tls.async_handshake(asio::ssl::stream_base::server, use_tuple);
    if (st->stopped || in->closed) co_return;
    if (ec) {
      reject(*st, in, in->timed_out ? PeerRejectReason::timeout : tls_failure_reason(ec),
             in->timed_out ? std::string("no TLS handshake within handshake_timeout")
                           : fmt::format("TLS handshake failed: {}", ec.message()));
      ERR_clear_error();
      co_return;
    }
  }

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
        bool adopt = false;
        std::string why = check_handshake(*st, at, sender, adopt);
        if (!why.empty()) {
          reject(*st, in, PeerRejectReason::handshake, why);
          co_return;
        }
        if (st->options.tls) {
          if (const auto reason = check_identity(*st, *in, sender, why)) {
            reject(*st, in, *reason, why);
            co_return;
          }
        }
        if (st->count_inbound(true) >= st->options.incoming_connections_max) {
          reject(*st, in, PeerRejectReason::pool_full,
                 fmt::format("{} peer connections already open",
                             st->options.incoming_connections_max));
          co_return;
        }
        if (adopt) adopt_cluster_id(*st, load_u64le(at + 5), sender);
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

    auto [ec, n] = co_await in->stream.read_some(asio::buffer(buf.data() + end, buf.size() - end));
    if (st->stopped || in->closed) co_return;
    if (ec) {
      if (!in->handshaken) {
        count_rejected(*st, *in,
                       in->timed_out ? PeerRejectReason::timeout : PeerRejectReason::handshake,
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
      count_rejected(*st, *oldest, PeerRejectReason::pool_full,
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

}  // namespace rpool::net::peer
