// The connecting side of the peer transport: one coroutine per peer connects (TCP, then TLS when
// configured), writes the handshake and then the peer's queue, and reconnects after a backoff.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>

#include "net/peer/state.h"

namespace rpool::net::peer {

Bytes make_handshake(const State& st, NodeId receiver) {
  Bytes out(peer_handshake_bytes);
  std::copy(handshake_magic.begin(), handshake_magic.end(), out.begin());
  out[4] = peer_protocol_version;
  store_u64le(out.data() + 5, st.cluster_id);
  store_u64le(out.data() + 13, st.options.self.value());
  store_u64le(out.data() + 21, receiver.value());
  return out;
}

// Watches the outgoing connection of attempt `attempt`: the receiver never writes, so any read
// completion (EOF, error, or stray bytes) means the connection is over.
asio::awaitable<void> watch_outgoing(std::shared_ptr<State> st, std::shared_ptr<Peer> p,
                                     std::uint64_t attempt) {
  std::array<std::uint8_t, 64> sink{};
  const auto tls_alive = p->stream.tls_shared();
  auto [ec, n] = co_await p->stream.read_some(asio::buffer(sink));
  if (st->stopped || p->removed || p->attempt != attempt || p->link != Peer::Link::connected) {
    co_return;
  }
  st->end_connection(*p, ec ? describe(ec)
                            : fmt::format("peer sent {} bytes on a send-only connection", n));
}

// One connection attempt; on success the socket is connected (and bound to bind_host) and, with
// TLS, the TLS handshake is done: the receiver's certificate chains to the CA and covers p->host.
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

  p->stream.reset();
  tcp::socket& socket = p->stream.socket();
  socket.open(remote.protocol(), ec);
  if (ec) co_return ec;
  socket.set_option(tcp::no_delay(true), ec);
  if (ec) co_return ec;
  socket.set_option(asio::socket_base::keep_alive(true), ec);
  if (ec) co_return ec;
  if (!st->options.bind_host.empty()) {
    const auto local = asio::ip::make_address(st->options.bind_host, ec);
    if (ec) co_return ec;
    socket.bind(tcp::endpoint(local, 0), ec);
    if (ec) co_return ec;
  }

  // A connect to a silent host can hang for minutes, and so can a TLS handshake with a host that
  // accepts and says nothing: give up on both after connect_timeout.
  auto timed_out = std::make_shared<bool>(false);
  asio::steady_timer deadline(st->io);
  deadline.expires_after(st->options.connect_timeout);
  deadline.async_wait([p, timed_out, attempt = p->attempt](const error_code& e) {
    if (e || p->attempt != attempt) return;
    *timed_out = true;
    p->stream.close();
  });
  auto [cec] = co_await socket.async_connect(remote, use_tuple);
  if (!cec && st->options.tls && !st->stopped && !p->removed &&
      p->address_generation == generation) {
    PeerStream::Tls& tls = p->stream.start_tls(*st->options.tls);
    tls.set_verify_callback(asio::ssl::host_name_verification(p->host));
    std::tie(cec) = co_await tls.async_handshake(asio::ssl::stream_base::client, use_tuple);
  }
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
      p->stream.close();
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
      const auto local = p->stream.socket().local_endpoint(local_ec);
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
      auto [wec, n] = co_await p->stream.write_all(asio::buffer(writing));
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
    p->stream.close();
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

}  // namespace rpool::net::peer
