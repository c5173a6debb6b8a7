// One peer connection's byte stream: a TCP socket, with TLS over it when the transport has a TLS
// context (peer_transport.h, "TLS"). Internal to src/net/peer.
//
// The socket is always the object that is opened, bound, connected, accepted and closed; the TLS
// layer, when present, is created fresh for each connection (an OpenSSL session cannot be
// reused across connections) and refers to the socket. Reads and writes go through the TLS layer
// when there is one. Each I/O function returns the same awaitable type whichever layer carries
// it, so the choice costs a branch, and a plaintext connection neither allocates nor copies more
// than a bare socket would.
#pragma once

#include <cstddef>
#include <memory>
#include <tuple>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace rpool::net::peer {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

inline constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

class PeerStream {
 public:
  using Tls = asio::ssl::stream<tcp::socket&>;
  using IoResult = asio::awaitable<std::tuple<error_code, std::size_t>>;

  explicit PeerStream(tcp::socket socket) : socket_(std::move(socket)) {}
  template <class Executor>
  explicit PeerStream(const Executor& executor) : socket_(executor) {}
  PeerStream(const PeerStream&) = delete;
  PeerStream& operator=(const PeerStream&) = delete;

  tcp::socket& socket() { return socket_; }
  const tcp::socket& socket() const { return socket_; }
  // Null on a plaintext connection.
  Tls* tls() { return tls_.get(); }
  // For a coroutine whose read may still complete after reset() (a watcher): it keeps the TLS
  // layer alive until then, since an aborted TLS read still updates its engine.
  std::shared_ptr<Tls> tls_shared() const { return tls_; }

  // Starts a TLS layer for the connection now on the socket (replacing a previous one's).
  Tls& start_tls(asio::ssl::context& context) {
    tls_ = std::make_shared<Tls>(socket_, context);
    return *tls_;
  }
  // Closes the socket (aborting whatever I/O waits on it) and forgets the TLS layer.
  void close() {
    error_code ignored;
    socket_.close(ignored);
  }
  // Before a new connection on the same socket object.
  void reset() {
    close();
    tls_.reset();
  }

  template <class Buffer>
  IoResult read_some(const Buffer& buffer) {
    return tls_ ? tls_->async_read_some(buffer, use_tuple)
                : socket_.async_read_some(buffer, use_tuple);
  }
  template <class Buffer>
  IoResult write_all(const Buffer& buffer) {
    return tls_ ? asio::async_write(*tls_, buffer, use_tuple)
                : asio::async_write(socket_, buffer, use_tuple);
  }

 private:
  tcp::socket socket_;
  std::shared_ptr<Tls> tls_;  // refers to socket_; one per connection
};

}  // namespace rpool::net::peer
