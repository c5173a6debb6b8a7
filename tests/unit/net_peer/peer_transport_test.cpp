// PeerTransport over real sockets on 127.0.0.1, 127.0.0.2 and 127.0.0.3. Every transport in a
// test shares one io_context driven by run_until(), which runs handlers until a condition holds or
// a deadline passes: no sleep stands in for an event.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include "base/bytes.h"
#include "net/peer/peer_transport.h"
#include "raft/types.h"

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using rpool::Bytes;
using rpool::LogIndex;
using rpool::NodeId;
using rpool::Term;
using rpool::net::PeerTransport;
using rpool::raft::Entry;
using rpool::raft::EntryType;
using rpool::raft::Message;
using rpool::raft::MessageType;

constexpr std::uint64_t test_cluster_id = 0x5eed'c1a5'7e00'0001;

// Runs the io_context until pred() holds; false if `timeout` passes first.
bool run_until(asio::io_context& io, const std::function<bool()>& pred,
               std::chrono::milliseconds timeout = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    if (io.stopped()) io.restart();
    io.run_one_for(std::min<std::chrono::steady_clock::duration>(deadline - now, 20ms));
  }
  return true;
}

// One transport and what it received and logged.
struct Node {
  Node(asio::io_context& io, std::uint64_t id, std::string host, std::uint16_t port = 0,
       const std::function<void(PeerTransport::Options&)>& tweak = {}) {
    PeerTransport::Options o;
    o.self = NodeId(id);
    o.cluster_id = test_cluster_id;
    o.listen_host = host;
    o.listen_port = port;
    o.bind_host = host;
    o.reconnect_min = 5ms;
    o.reconnect_max = 50ms;
    o.log = [this](std::string_view line) { log.emplace_back(line); };
    if (tweak) tweak(o);
    transport = std::make_unique<PeerTransport>(io, std::move(o), [this](Message&& m) {
      received.push_back(std::move(m));
      if (on_message) on_message();
    });
    const std::error_code ec = transport->start();
    REQUIRE_MESSAGE(!ec, ec.message());
  }
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  PeerTransport& operator*() { return *transport; }
  PeerTransport* operator->() { return transport.get(); }
  std::uint16_t port() const { return transport->listen_port(); }
  bool logged(std::string_view needle) const {
    return std::any_of(log.begin(), log.end(),
                       [&](const std::string& l) { return l.find(needle) != std::string::npos; });
  }

  std::vector<Message> received;
  std::vector<std::string> log;
  std::function<void()> on_message;
  std::unique_ptr<PeerTransport> transport;
};

Bytes pattern(std::size_t n, std::uint8_t seed) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(seed + i * 31 + (i >> 8));
  return b;
}

// A message of `type` with every field set to something distinctive.
Message sample(MessageType type, std::uint64_t from, std::uint64_t to, std::uint64_t k) {
  Message m;
  m.type = type;
  m.from = NodeId(from);
  m.to = NodeId(to);
  m.term = Term(30 + k);
  m.log_term = Term(20 + k);
  m.index = LogIndex(1000 + k);
  m.commit = LogIndex(900 + k);
  m.reject_hint = LogIndex(70 + k);
  m.reject = k % 2 == 1;
  m.context = 0xfeed'face'0000'0000 + k;
  if (type == MessageType::append) {
    m.entries.push_back({Term(5), LogIndex(1001), EntryType::normal, pattern(300, 1)});
    m.entries.push_back({Term(5), LogIndex(1002), EntryType::noop, {}});
    m.entries.push_back(
        {Term(6), LogIndex(1003), EntryType::config,
         rpool::raft::encode_membership({{NodeId(1), NodeId(2)}, {NodeId(3)}, {}})});
  }
  if (type == MessageType::snapshot) {
    m.snapshot.index = LogIndex(5000);
    m.snapshot.term = Term(9);
    m.snapshot.membership = {{NodeId(1), NodeId(2), NodeId(3)}, {NodeId(4)}, {{NodeId(4), "ctx"}}};
    m.offset = 1u << 20;
    m.snapshot_bytes = 3u << 20;
    m.data = pattern(1u << 20, 7);  // a full 1 MiB chunk
    m.done = true;
  }
  return m;
}

void check_same(const Message& got, const Message& want) {
  CHECK(got.type == want.type);
  CHECK(got.from == want.from);
  CHECK(got.to == want.to);
  CHECK(got.term == want.term);
  CHECK(got.log_term == want.log_term);
  CHECK(got.index == want.index);
  CHECK(got.commit == want.commit);
  CHECK(got.reject_hint == want.reject_hint);
  CHECK(got.reject == want.reject);
  CHECK(got.context == want.context);
  CHECK(got.entries == want.entries);
  CHECK(got.snapshot == want.snapshot);
  CHECK(got.offset == want.offset);
  CHECK(got.snapshot_bytes == want.snapshot_bytes);
  CHECK(got.data == want.data);
  CHECK(got.done == want.done);
}

Message heartbeat(std::uint64_t from, std::uint64_t to, std::uint64_t context) {
  Message m;
  m.type = MessageType::heartbeat;
  m.from = NodeId(from);
  m.to = NodeId(to);
  m.term = Term(1);
  m.context = context;
  return m;
}

// A port on `host` that nothing listens on right now.
std::uint16_t free_port(asio::io_context& io, const std::string& host) {
  tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address(host), 0));
  return a.local_endpoint().port();
}

Bytes handshake(std::uint64_t cluster_id, std::uint64_t sender, std::uint64_t receiver,
                std::uint8_t version = rpool::net::peer_protocol_version) {
  Bytes b(rpool::net::peer_handshake_bytes);
  b[0] = 'R';
  b[1] = 'P';
  b[2] = 'L';
  b[3] = 'P';
  b[4] = version;
  rpool::store_u64le(b.data() + 5, cluster_id);
  rpool::store_u64le(b.data() + 13, sender);
  rpool::store_u64le(b.data() + 21, receiver);
  return b;
}

Bytes frame(std::uint32_t length, std::uint8_t type, const Bytes& payload) {
  Bytes b;
  rpool::ByteWriter w(b);
  w.u32(length);
  w.u8(type);
  w.raw(payload);
  return b;
}

Bytes encoded(const Message& m) {
  Bytes b;
  rpool::raft::encode_message(m, b);
  return b;
}

Bytes concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// A hand-driven TCP client speaking (or mangling) the peer protocol.
struct RawClient {
  RawClient(asio::io_context& io, std::uint16_t port, const std::string& host = "127.0.0.1")
      : socket(io) {
    socket.connect(tcp::endpoint(asio::ip::make_address(host), port));
    socket.async_read_some(asio::buffer(sink), [this](const boost::system::error_code& ec,
                                                      std::size_t) { closed = !!ec; });
  }
  void write(const Bytes& b) {
    boost::system::error_code ignored;  // the far side may close before we finish
    asio::write(socket, asio::buffer(b), ignored);
  }
  void shutdown_send() {
    boost::system::error_code ignored;
    socket.shutdown(tcp::socket::shutdown_send, ignored);
  }
  tcp::socket socket;
  std::array<std::uint8_t, 64> sink{};
  bool closed = false;
};

}  // namespace

TEST_CASE("messages of every type arrive intact, in both directions") {
  asio::io_context io;
  Node a(io, 1, "127.0.0.1");
  Node b(io, 2, "127.0.0.2");
  a->set_peer(NodeId(2), "127.0.0.2", b.port());
  b->set_peer(NodeId(1), "127.0.0.1", a.port());

  std::vector<Message> sent;
  for (int t = 1; t <= static_cast<int>(MessageType::read_index_resp); ++t) {
    sent.push_back(sample(static_cast<MessageType>(t), 1, 2, static_cast<std::uint64_t>(t)));
    a->send(sent.back());
  }
  REQUIRE(run_until(io, [&] { return b.received.size() == sent.size(); }));
  for (std::size_t i = 0; i < sent.size(); ++i) {
    CAPTURE(i);
    check_same(b.received[i], sent[i]);
  }

  const Message reply = sample(MessageType::append_resp, 2, 1, 99);
  b->send(reply);
  REQUIRE(run_until(io, [&] { return a.received.size() == 1; }));
  check_same(a.received[0], reply);

  const auto sa = a->stats(NodeId(2));
  const auto sb = b->stats(NodeId(1));
  CHECK(sa.connected);
  CHECK(sa.connects == 1);
  CHECK(sa.frames_sent == sent.size());
  CHECK(sa.frames_dropped == 0);
  CHECK(sb.frames_received == sent.size());
  CHECK(sb.bytes_received == sa.bytes_sent);
  CHECK(sb.bytes_received > (1u << 20));
  CHECK(a.received.size() == 1);
  CHECK(a->malformed_frames_total() == 0);
  CHECK(b->malformed_frames_total() == 0);
  a->check_invariants();
  b->check_invariants();
}

TEST_CASE("many messages arrive in order on one connection, a burst in one write") {
  asio::io_context io;
  Node a(io, 1, "127.0.0.1");
  Node b(io, 2, "127.0.0.2");
  a->set_peer(NodeId(2), "127.0.0.2", b.port());
  a->send(heartbeat(1, 2, 0));
  REQUIRE(run_until(io, [&] {
    return b.received.size() == 1 && a->stats(NodeId(2)).frames_sent == 1;  // writer idle again
  }));

  constexpr std::uint64_t burst = 5000;
  const auto writes_before = a->stats(NodeId(2)).writes;
  for (std::uint64_t i = 1; i <= burst; ++i) a->send(heartbeat(1, 2, i));
  a->check_invariants();
  REQUIRE(run_until(io, [&] { return b.received.size() == burst + 1; }));
  // The writer was idle when the burst began and ran only after it was all queued.
  CHECK(a->stats(NodeId(2)).writes == writes_before + 1);

  // Then sends interleaved with the event loop.
  for (std::uint64_t i = burst + 1; i <= 3 * burst; ++i) {
    a->send(heartbeat(1, 2, i));
    if (i % 97 == 0) io.poll();
  }
  REQUIRE(run_until(io, [&] { return b.received.size() == 3 * burst + 1; }));
  bool in_order = true;
  for (std::uint64_t i = 0; i < b.received.size(); ++i) in_order &= b.received[i].context == i;
  CHECK(in_order);
  CHECK(a->stats(NodeId(2)).frames_dropped == 0);
  CHECK(a->stats(NodeId(2)).frames_sent == 3 * burst + 1);
  CHECK(a->stats(NodeId(2)).connects == 1);
}

TEST_CASE("outgoing connections come from bind_host") {
  asio::io_context io;
  Node a(io, 1, "127.0.0.2");  // listens on and binds outgoing sockets to 127.0.0.2
  Node b(io, 2, "127.0.0.3");
  a->set_peer(NodeId(2), "127.0.0.3", b.port());
  a->send(heartbeat(1, 2, 1));
  REQUIRE(run_until(io, [&] { return b.received.size() == 1; }));
  const auto inbound = b->inbound_connections();
  REQUIRE(inbound.size() == 1);
  CHECK(inbound[0].sender == NodeId(1));
  CHECK(inbound[0].remote_address == "127.0.0.2");
  CHECK(inbound[0].remote_port != a.port());  // an ephemeral port, not the listener's
}

TEST_CASE("a peer that starts later is connected to once it is up") {
  asio::io_context io;
  Node a(io, 1, "127.0.0.1");
  const std::uint16_t port = free_port(io, "127.0.0.2");
  a->set_peer(NodeId(2), "127.0.0.2", port);
  a->send(heartbeat(1, 2, 1));  // queued while connecting, dropped when the attempt fails
  REQUIRE(run_until(io, [&] { return a->stats(NodeId(2)).frames_dropped == 1; }));
  CHECK(!a->stats(NodeId(2)).connected);
  CHECK(a.logged("cannot connect to peer 2"));

  Node b(io, 2, "127.0.0.2", port);
  REQUIRE(run_until(io, [&] { return a->stats(NodeId(2)).connected; }));
  a->send(heartbeat(1, 2, 2));
  REQUIRE(run_until(io, [&] { return b.received.size() == 1; }));
  CHECK(b.received[0].context == 2);
}

TEST_CASE("a peer waiting out a backoff is dialed at once when that peer connects to us") {
  asio::io_context io;
  auto long_backoff = [](PeerTransport::Options& o) {
    o.reconnect_min = 60s;
    o.reconnect_max = 60s;
  };
  Node a(io, 1, "127.0.0.1", 0, long_backoff);
  const std::uint16_t port = free_port(io, "127.0.0.2");
  a->set_peer(NodeId(2), "127.0.0.2", port);
  REQUIRE(
      run_until(io, [&] { return a.logged("cannot connect to peer 2"); }));  // now 60 s of backoff

  Node b(io, 2, "127.0.0.2", port, long_backoff);
  b->set_peer(NodeId(1), "127.0.0.1", a.port());
  b->send(heartbeat(2, 1, 1));  // b connects to a; a learns that b is up
  REQUIRE(run_until(io, [&] { return a.received.size() == 1; }));
  REQUIRE(run_until(
      io, [&] { return a->stats(NodeId(2)).connected; }, 5s));
  a->send(heartbeat(1, 2, 2));
  REQUIRE(run_until(
      io, [&] { return b.received.size() == 1; }, 5s));
  CHECK(b.received[0].context == 2);
}

TEST_CASE("a restarted peer is reconnected") {
  asio::io_context io;
  Node a(io, 1, "127.0.0.1");
  auto b = std::make_unique<Node>(io, 2, "127.0.0.2");
  const std::uint16_t port = b->port();
  a->set_peer(NodeId(2), "127.0.0.2", port);
  a->send(heartbeat(1, 2, 1));
  REQUIRE(run_until(io, [&] { return b->received.size() == 1; }));

  (*b)->stop();
  (*b)->stop();  // idempotent
  b.reset();
  REQUIRE(run_until(io, [&] { return a->stats(NodeId(2)).disconnects == 1; }));
  CHECK(!a->stats(NodeId(2)).connected);

  b = std::make_unique<Node>(io, 2, "127.0.0.2", port);
  REQUIRE(run_until(io, [&] { return a->stats(NodeId(2)).connected; }));
  CHECK(a->stats(NodeId(2)).connects == 2);
  a->send(heartbeat(1, 2, 2));
  REQUIRE(run_until(io, [&] { return b->received.size() == 1; }));
  CHECK(b->received[0].context == 2);
}

TEST_CASE("a handshake for another cluster is rejected and nothing is delivered") {
  asio::io_context io;
  Node a(io, 1, "127.0.0.1");
  Node stranger(io, 2, "127.0.0.2", 0,
                [](PeerTransport::Options& o) { o.cluster_id = test_cluster_id + 1; });
  stranger->set_peer(NodeId(1), "127.0.0.1", a.port());
  // Every message makes the stranger connect again (after its backoff), and each connection is
  // refused.
  std::uint64_t sent = 0;
  REQUIRE(run_until(io, [&] {
    stranger->send(heartbeat(2, 1, ++sent));
    return a->handshakes_rejected_total() >= 4;
  }));
  CHECK(a.received.empty());
  // Refusals are logged at most once a minute per address: a stranger cannot flood the log.
  const auto refusal_lines = std::count_if(a.log.begin(), a.log.end(), [](const std::string& l) {
    return l.find("rejected connection from 127.0.0.2") != std::string::npos;
  });
  CHECK(refusal_lines == 1);
  CHECK(a->stats(NodeId(2)).frames_received == 0);
  CHECK(a->inbound_connections().empty());
  CHECK(a.logged("cluster id"));
  CHECK(stranger->stats(NodeId(1)).disconnects >= 1);
  CHECK(a->malformed_frames_total() == 0);
}

TEST_CASE(
    "a joining node adopts the cluster id of the first peer that connects, then talks back and "
    "refuses others") {
  asio::io_context io;
  Node leader(io, 1, "127.0.0.1");
  std::uint64_t adopted = 0;
  Node joiner(io, 4, "127.0.0.4", 0, [&adopted](PeerTransport::Options& o) {
    o.cluster_id = 0;
    o.adopt_cluster_id = true;
    o.on_cluster_id = [&adopted](std::uint64_t id) { adopted = id; };
  });
  joiner->set_peer(NodeId(1), "127.0.0.1", leader.port());
  joiner->send(heartbeat(4, 1, 99));  // before it knows its cluster it connects to nobody
  leader->set_peer(NodeId(4), "127.0.0.4", joiner.port());
  leader->send(heartbeat(1, 4, 1));
  REQUIRE(run_until(io, [&] { return !joiner.received.empty(); }));
  CHECK(adopted == test_cluster_id);
  CHECK(joiner.logged("joined cluster"));
  // Messages to a peer that is not connected are dropped (Raft resends): send until one arrives.
  std::uint64_t sent = 1;
  REQUIRE(run_until(io, [&] {
    if (!leader.received.empty()) return true;
    joiner->send(heartbeat(4, 1, ++sent));
    return false;
  }));
  CHECK(leader.received.front().from == NodeId(4));
  CHECK(leader->handshakes_rejected_total() == 0);  // no handshake ever went out with id 0
  // Now it belongs to a cluster: another one is refused.
  Node stranger(io, 2, "127.0.0.2", 0,
                [](PeerTransport::Options& o) { o.cluster_id = test_cluster_id + 1; });
  stranger->set_peer(NodeId(4), "127.0.0.4", joiner.port());
  stranger->send(heartbeat(2, 4, 3));
  REQUIRE(run_until(io, [&] { return joiner->handshakes_rejected_total() >= 1; }));
  CHECK(joiner.received.size() == 1);
}

TEST_CASE("a handshake meant for another node is rejected and nothing is delivered") {
  asio::io_context io;
  Node a(io, 1, "127.0.0.1");
  Node confused(io, 3, "127.0.0.3");
  confused->set_peer(NodeId(5), "127.0.0.1", a.port());  // thinks node 5 lives at a's address
  confused->send(heartbeat(3, 5, 1));
  REQUIRE(run_until(io, [&] { return a->handshakes_rejected_total() >= 2; }));
  CHECK(a.received.empty());
  CHECK(a.logged("meant for node 5"));
}

TEST_CASE("malformed input closes that connection, is counted, and good peers carry on") {
  asio::io_context io;
  Node a(io, 1, "127.0.0.1", 0, [](PeerTransport::Options& o) {
    o.frame_bytes_max = 1 << 20;
    o.handshake_timeout = 200ms;
  });
  const Bytes hello = handshake(test_cluster_id, 9, 1);
  const Bytes good = encoded(heartbeat(9, 1, 42));
  const Bytes good_frame = frame(static_cast<std::uint32_t>(good.size()), 1, good);

  struct Case {
    const char* name;
    Bytes bytes;
    bool shutdown_after;      // half-close after writing (the peer sees EOF)
    bool handshake_rejected;  // counted as a rejected handshake rather than a malformed frame
    std::size_t delivered;    // good frames before the bad input
  };
  const Bytes half =
      Bytes(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(good.size() / 2));
  const std::vector<Case> cases = {
      {"garbage instead of a handshake", pattern(64, 3), false, true, 0},
      {"wrong protocol version", handshake(test_cluster_id, 9, 1, 2), false, true, 0},
      {"sender claims to be the receiver", handshake(test_cluster_id, 1, 1), false, true, 0},
      {"handshake cut short by EOF", Bytes(hello.begin(), hello.begin() + 10), true, true, 0},
      {"no handshake before the deadline", {}, false, true, 0},
      {"garbage after the handshake", concat({hello, Bytes(16, 0xff)}), false, false, 0},
      {"length over frame_bytes_max", concat({hello, frame((1 << 20) + 1, 1, {})}), false, false,
       0},
      {"unknown frame type", concat({hello, frame(3, 2, {1, 2, 3})}), false, false, 0},
      {"payload that does not decode", concat({hello, frame(10, 1, Bytes(10, 0xab))}), false, false,
       0},
      {"empty payload", concat({hello, frame(0, 1, {})}), false, false, 0},
      {"truncated message inside a whole frame",
       concat({hello, frame(static_cast<std::uint32_t>(half.size()), 1, half)}), false, false, 0},
      {"frame cut short by EOF", concat({hello, frame(100, 1, Bytes(10, 0))}), true, false, 0},
      {"header cut short by EOF", concat({hello, Bytes{5, 0}}), true, false, 0},
      {"message addressed to another node",
       concat({hello,
               [] {
                 const Bytes p = encoded(heartbeat(9, 4, 1));
                 return frame(static_cast<std::uint32_t>(p.size()), 1, p);
               }()}),
       false, false, 0},
      {"message whose sender is not the handshake's",
       concat({hello,
               [] {
                 const Bytes p = encoded(heartbeat(8, 1, 1));
                 return frame(static_cast<std::uint32_t>(p.size()), 1, p);
               }()}),
       false, false, 0},
      {"garbage after a good frame", concat({hello, good_frame, Bytes(16, 0xff)}), false, false, 1},
  };

  for (const Case& c : cases) {
    CAPTURE(std::string(c.name));
    const auto malformed_before = a->malformed_frames_total();
    const auto rejected_before = a->handshakes_rejected_total();
    const auto delivered_before = a.received.size();
    RawClient raw(io, a.port());
    raw.write(c.bytes);
    if (c.shutdown_after) raw.shutdown_send();
    REQUIRE(run_until(io, [&] { return raw.closed; }));
    CHECK(a.received.size() == delivered_before + c.delivered);
    CHECK(a->malformed_frames_total() == malformed_before + (c.handshake_rejected ? 0 : 1));
    CHECK(a->handshakes_rejected_total() == rejected_before + (c.handshake_rejected ? 1 : 0));
    CHECK(a->inbound_connections().empty());
    a->check_invariants();
  }
  CHECK(a->stranger_stats().frames_malformed == a->malformed_frames_total());  // 9 is no peer

  // A well-behaved peer is unaffected.
  Node b(io, 2, "127.0.0.2");
  b->set_peer(NodeId(1), "127.0.0.1", a.port());
  const auto delivered_before = a.received.size();
  b->send(sample(MessageType::append, 2, 1, 1));
  REQUIRE(run_until(io, [&] { return a.received.size() == delivered_before + 1; }));
  check_same(a.received.back(), sample(MessageType::append, 2, 1, 1));
  CHECK(a->stats(NodeId(2)).frames_malformed == 0);
}

TEST_CASE("a newer connection from the same sender replaces the older one") {
  asio::io_context io;
  Node a(io, 1, "127.0.0.1");
  RawClient old_link(io, a.port());
  old_link.write(handshake(test_cluster_id, 2, 1));
  REQUIRE(run_until(io, [&] { return a->inbound_connections().size() == 1; }));

  Node b(io, 2, "127.0.0.2");
  b->set_peer(NodeId(1), "127.0.0.1", a.port());
  b->send(heartbeat(2, 1, 1));
  REQUIRE(run_until(io, [&] { return a.received.size() == 1 && old_link.closed; }));
  const auto inbound = a->inbound_connections();
  REQUIRE(inbound.size() == 1);
  CHECK(inbound[0].remote_address == "127.0.0.2");
}

TEST_CASE("the queue to an unreachable peer is bounded: beyond it messages are dropped") {
  asio::io_context io;
  constexpr std::size_t bound = 64 << 10;
  Node a(io, 1, "127.0.0.1", 0, [](PeerTransport::Options& o) { o.queue_bytes_max = bound; });
  a->set_peer(NodeId(2), "127.0.0.3", free_port(io, "127.0.0.3"));

  Message m = heartbeat(1, 2, 0);
  m.type = MessageType::append;
  m.entries.push_back({Term(1), LogIndex(1), EntryType::normal, pattern(1000, 5)});
  const std::size_t frame_bytes = rpool::net::peer_frame_header_bytes + encoded(m).size();
  const std::size_t fit = bound / frame_bytes;

  // Queued while the first connection attempt is under way, up to the bound.
  for (int i = 0; i < 1000; ++i) a->send(m);
  auto s = a->stats(NodeId(2));
  CHECK(s.queued_bytes == fit * frame_bytes);
  CHECK(s.frames_dropped == 1000 - fit);
  a->check_invariants();

  // The attempt fails: what was queued is dropped too.
  REQUIRE(run_until(io, [&] { return a->stats(NodeId(2)).frames_dropped == 1000; }));
  CHECK(a->stats(NodeId(2)).queued_bytes == 0);

  // Sending on while the peer stays away never holds more than the bound.
  std::uint64_t sent = 1000;
  for (int round = 0; round < 50; ++round) {
    for (int i = 0; i < 200; ++i, ++sent) a->send(m);
    CHECK(a->stats(NodeId(2)).queued_bytes <= bound);
    a->check_invariants();
    io.poll();
  }
  REQUIRE(run_until(io, [&] { return a->stats(NodeId(2)).frames_dropped == sent; }));
  CHECK(a->stats(NodeId(2)).frames_sent == 0);
  CHECK(a->stats(NodeId(2)).connects == 0);

  // A single frame bigger than the whole queue (a snapshot chunk) is dropped, not queued.
  a->send(sample(MessageType::snapshot, 1, 2, 1));
  CHECK(a->stats(NodeId(2)).queued_bytes <= bound);
}

TEST_CASE("a frame over frame_bytes_max and a message to an unknown peer are dropped") {
  asio::io_context io;
  Node a(io, 1, "127.0.0.1", 0, [](PeerTransport::Options& o) { o.frame_bytes_max = 1000; });
  Node b(io, 2, "127.0.0.2");
  a->set_peer(NodeId(2), "127.0.0.2", b.port());
  a->send(sample(MessageType::snapshot, 1, 2, 1));
  CHECK(a->stats(NodeId(2)).frames_dropped == 1);
  CHECK(a->stats(NodeId(2)).queued_bytes == 0);
  CHECK(a.logged("over frame_bytes_max"));

  a->send(heartbeat(1, 7, 1));
  CHECK(a->stats(NodeId(7)).frames_dropped == 0);  // 7 is no peer: counted with the strangers
  CHECK(a->stranger_stats().frames_dropped == 1);

  a->send(heartbeat(1, 2, 1));
  REQUIRE(run_until(io, [&] { return b.received.size() == 1; }));
}

TEST_CASE("set_peer with a new address moves the connection; remove_peer forgets the peer") {
  asio::io_context io;
  Node a(io, 1, "127.0.0.1");
  Node b(io, 2, "127.0.0.2");
  Node c(io, 2, "127.0.0.3");  // node 2 "moved" to another address
  a->set_peer(NodeId(2), "127.0.0.2", b.port());
  a->send(heartbeat(1, 2, 1));
  REQUIRE(run_until(io, [&] { return b.received.size() == 1; }));

  a->set_peer(NodeId(2), "127.0.0.3", c.port());
  REQUIRE(run_until(
      io, [&] { return a->stats(NodeId(2)).connects == 2 && a->stats(NodeId(2)).connected; }));
  a->send(heartbeat(1, 2, 2));
  REQUIRE(run_until(io, [&] { return c.received.size() == 1; }));
  CHECK(b.received.size() == 1);
  CHECK(a->peers() == std::vector<NodeId>{NodeId(2)});

  a->remove_peer(NodeId(2));
  CHECK(a->peers().empty());
  CHECK(!a->stats(NodeId(2)).connected);
  a->send(heartbeat(1, 2, 3));
  CHECK(a->stats(NodeId(2)).frames_dropped == 0);  // no longer a peer: counted with strangers
  CHECK(a->stranger_stats().frames_dropped == 1);
  // c sees the connection end.
  REQUIRE(run_until(io, [&] { return c->inbound_connections().empty(); }));
  a->check_invariants();
}

TEST_CASE("stop from inside on_message: no callback after it, and it is idempotent") {
  asio::io_context io;
  Node a(io, 1, "127.0.0.1");
  Node b(io, 2, "127.0.0.2");
  b->set_peer(NodeId(1), "127.0.0.1", a.port());
  a.on_message = [&] { a->stop(); };
  for (std::uint64_t i = 0; i < 100; ++i) b->send(heartbeat(2, 1, i));
  REQUIRE(run_until(io, [&] { return b->stats(NodeId(1)).disconnects >= 1; }));
  CHECK(a.received.size() == 1);
  const auto lines = a.log.size();
  a->stop();
  b->send(heartbeat(2, 1, 100));
  io.poll();
  CHECK(a.received.size() == 1);
  CHECK(a.log.size() == lines);
  a->check_invariants();
}

TEST_CASE("start reports a port that is taken, and a listen host that is not an address") {
  asio::io_context io;
  Node a(io, 1, "127.0.0.1");
  PeerTransport::Options o;
  o.self = NodeId(2);
  o.listen_host = "127.0.0.1";
  o.listen_port = a.port();
  o.log = [](std::string_view) {};
  PeerTransport clash(io, o, [](Message&&) {});
  const std::error_code ec = clash.start();
  CHECK(ec);
  CHECK(ec.message().find("in use") != std::string::npos);

  o.listen_host = "not-an-address";
  o.listen_port = 0;
  PeerTransport bad(io, o, [](Message&&) {});
  CHECK(bad.start() == std::errc::invalid_argument);
}

TEST_CASE(
    "strangers waiting to handshake hold only their own small pool: a peer still gets through") {
  asio::io_context io;
  constexpr std::size_t pending_max = 4;
  Node a(io, 1, "127.0.0.1", 0, [](PeerTransport::Options& o) {
    o.handshakes_pending_max = pending_max;
    o.handshake_timeout = 60s;  // the pool, not the timeout, makes room here
  });
  std::vector<std::unique_ptr<RawClient>> silent;
  for (std::size_t i = 0; i < pending_max; ++i) {
    silent.push_back(std::make_unique<RawClient>(io, a.port()));
  }
  // One more: the pool is full, so the one that has waited longest goes.
  silent.push_back(std::make_unique<RawClient>(io, a.port()));
  REQUIRE(run_until(io, [&] { return silent[0]->closed; }));
  CHECK(a->handshakes_rejected_total() == 1);
  CHECK(a.logged("still no handshake"));

  // A peer connects while strangers fill the pool: its handshake comes at once and it is served.
  Node b(io, 2, "127.0.0.2");
  b->set_peer(NodeId(1), "127.0.0.1", a.port());
  b->send(heartbeat(2, 1, 7));
  REQUIRE(run_until(io, [&] { return a.received.size() == 1; }));
  CHECK(a.received[0].context == 7);
  CHECK(run_until(io, [&] { return silent[1]->closed; }));  // made room for b
  for (std::size_t i = 2; i < silent.size(); ++i) CHECK_FALSE(silent[i]->closed);
  CHECK(a->inbound_connections().size() == 1);
  a->check_invariants();
}

TEST_CASE("a connection that does not handshake is closed within the default timeout of 2 s") {
  static_assert(rpool::net::peer_handshake_timeout_default <= 2s);
  asio::io_context io;
  Node a(io, 1, "127.0.0.1");
  CHECK(PeerTransport::Options{}.handshake_timeout == rpool::net::peer_handshake_timeout_default);
  const auto started = std::chrono::steady_clock::now();
  RawClient silent(io, a.port());
  REQUIRE(run_until(
      io, [&] { return silent.closed; }, 4s));
  const auto waited = std::chrono::steady_clock::now() - started;
  CHECK(waited >= rpool::net::peer_handshake_timeout_default);
  CHECK(waited < rpool::net::peer_handshake_timeout_default + 1s);
  CHECK(a->handshakes_rejected_total() == 1);
  CHECK(a.logged("no handshake within handshake_timeout"));
}

TEST_CASE(
    "the largest messages raft sends fit the default frame bound, and a frame one byte over it is "
    "refused") {
  using rpool::net::peer_frame_bytes_max_default;
  asio::io_context io;
  Node a(io, 1, "127.0.0.1");
  Node b(io, 2, "127.0.0.2");
  b->set_peer(NodeId(1), "127.0.0.1", a.port());
  CHECK(PeerTransport::Options{}.frame_bytes_max == peer_frame_bytes_max_default);
  CHECK(peer_frame_bytes_max_default < (4u << 20));  // not the 64 MiB it used to be

  // An append with message_bytes_max worth of entries, as raft counts them.
  Message full_append = heartbeat(2, 1, 0);
  full_append.type = MessageType::append;
  std::size_t counted = 0;
  for (std::uint64_t i = 1;; ++i) {
    Entry e{Term(1), LogIndex(i), EntryType::normal, pattern(1000, static_cast<std::uint8_t>(i))};
    if (counted + rpool::raft::entry_bytes(e) > rpool::raft::message_bytes_max_default) break;
    counted += rpool::raft::entry_bytes(e);
    full_append.entries.push_back(std::move(e));
  }
  // An append with one entry as large as a proposal may be.
  Message big_entry = heartbeat(2, 1, 1);
  big_entry.type = MessageType::append;
  big_entry.entries.push_back(
      {Term(1), LogIndex(1), EntryType::normal, pattern(rpool::raft::entry_bytes_max_default, 3)});
  // A full snapshot chunk whose metadata holds the allowance of members with full contexts.
  Message chunk = sample(MessageType::snapshot, 2, 1, 2);
  chunk.data = pattern(rpool::raft::snapshot_chunk_bytes_default, 9);
  chunk.snapshot.membership = {};
  for (std::uint64_t id = 1; id <= rpool::net::peer_membership_members_allowance; ++id) {
    chunk.snapshot.membership.voters.push_back(NodeId(id));
    chunk.snapshot.membership.context[NodeId(id)] =
        std::string(rpool::raft::member_context_bytes_max, 'c');
  }
  for (const Message* m : {&full_append, &big_entry, &chunk}) {
    CHECK(encoded(*m).size() <= peer_frame_bytes_max_default);
    b->send(*m);
  }
  REQUIRE(run_until(io, [&] { return a.received.size() == 3; }));
  check_same(a.received[0], full_append);
  check_same(a.received[1], big_entry);
  check_same(a.received[2], chunk);
  CHECK(b->stats(NodeId(1)).frames_dropped == 0);

  // A header announcing one byte more is refused before anything else arrives.
  RawClient raw(io, a.port());
  raw.write(concat({handshake(test_cluster_id, 9, 1),
                    frame(static_cast<std::uint32_t>(peer_frame_bytes_max_default + 1), 1, {})}));
  REQUIRE(run_until(io, [&] { return raw.closed; }));
  CHECK(a->malformed_frames_total() == 1);
  CHECK(a.logged("over frame_bytes_max"));
}

TEST_CASE(
    "counters are kept per peer only: a stranger naming itself after ever new ids adds no "
    "entries") {
  asio::io_context io;
  Node a(io, 1, "127.0.0.1");
  Node b(io, 2, "127.0.0.2");
  a->set_peer(NodeId(2), "127.0.0.2", b.port());
  b->set_peer(NodeId(1), "127.0.0.1", a.port());
  b->send(heartbeat(2, 1, 1));
  REQUIRE(run_until(io, [&] { return a.received.size() == 1; }));

  constexpr std::uint64_t strangers = 50;
  for (std::uint64_t id = 1000; id < 1000 + strangers; ++id) {
    RawClient raw(io, a.port());
    const Bytes p = encoded(heartbeat(id, 1, id));
    raw.write(concat(
        {handshake(test_cluster_id, id, 1), frame(static_cast<std::uint32_t>(p.size()), 1, p)}));
    REQUIRE(run_until(io, [&] { return a.received.size() == 1 + (id - 1000 + 1); }));
    a->send(heartbeat(1, id, 0));  // the node answers it (raft replies to whoever asked)
  }
  for (std::uint64_t id = 1000; id < 1000 + strangers; ++id) {
    const auto s = a->stats(NodeId(id));
    CHECK(s.frames_received == 0);
    CHECK(s.bytes_received == 0);
    CHECK(s.frames_dropped == 0);
  }
  const auto summed = a->stranger_stats();
  CHECK(summed.frames_received == strangers);
  CHECK(summed.frames_dropped == strangers);
  CHECK(a->stats(NodeId(2)).frames_received == 1);
  a->check_invariants();  // no per-id counters for anyone but the peers

  // Forgetting a peer forgets its counters.
  a->remove_peer(NodeId(2));
  CHECK(a->stats(NodeId(2)).frames_received == 0);
  a->check_invariants();
}
