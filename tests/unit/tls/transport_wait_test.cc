// Readiness waits on a real loopback TCP connection: the edge wait (tls/edge_wait.h) and the
// bookkeeping in Transport that decides when it may be used. The failure these guard against is
// a wait that never completes although bytes are waiting: it would hang a client connection.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <memory>
#include <optional>
#include <string>

#include "turnpike/tls/edge_wait.h"
#include "turnpike/tls/transport.h"

namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;
using turnpike::tls::Transport;

// A connected pair on 127.0.0.1 (port 0): `peer` writes, `transport` reads.
struct Pair {
  asio::io_context ioc{1};
  tcp::socket peer{ioc};
  std::unique_ptr<Transport> transport;

  Pair() {
    tcp::acceptor acc(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    peer.connect(acc.local_endpoint());
    transport = std::make_unique<Transport>(acc.accept());
  }
  void send(const std::string& bytes) { asio::write(peer, asio::buffer(bytes)); }
  // Runs every handler that is ready now, without blocking.
  void settle() {
    ioc.restart();
    ioc.poll();
  }
  // Starts a wait on a socket that holds nothing. A completion before any byte is sent is the
  // one spurious wakeup edge waits allow (a readiness edge recorded earlier): the socket reads
  // empty, and the wait is made again.
  void wait_on_empty(std::optional<error_code>& done) {
    transport->async_wait_readable([&done](error_code ec) { done = ec; });
    settle();
    if (done) {
      EXPECT_EQ(drain(), "");
      done.reset();
      transport->async_wait_readable([&done](error_code ec) { done = ec; });
      settle();
    }
  }
  // Runs until `done` is set (bounded: 2000 one-millisecond slices).
  bool run_until(const std::optional<error_code>& done) {
    for (int i = 0; i < 2000 && !done; ++i) {
      ioc.restart();
      ioc.run_for(std::chrono::milliseconds(1));
    }
    return done.has_value();
  }
  // Brings the connection to the steady state of a served connection: a wait has consumed a
  // readiness edge and the socket was read empty afterwards. From here a wait must not complete
  // before new bytes arrive.
  void prime() {
    drain();
    std::optional<error_code> done;
    wait_on_empty(done);
    send("p");
    run_until(done);
    drain();
  }
  // A pending wait (`done` not set yet) must complete once `bytes` are sent, and they read back.
  void expect_woken_by(std::optional<error_code>& done, const std::string& bytes) {
    ASSERT_FALSE(done) << "the wait completed before anything was sent";
    send(bytes);
    ASSERT_TRUE(run_until(done)) << "sending did not complete the wait";
    EXPECT_FALSE(*done);
    EXPECT_EQ(drain(), bytes);
  }
  // Reads until the socket is empty; returns what was read.
  std::string drain() {
    std::string out;
    char buf[64];
    for (;;) {
      error_code ec;
      size_t n = transport->read_some(buf, sizeof buf, ec);
      if (ec) break;
      out.append(buf, n);
    }
    return out;
  }
};

TEST(TransportWait, WaitAfterEmptyReadCompletesWhenBytesArrive) {
  Pair p;
  EXPECT_EQ(p.drain(), "");  // EAGAIN: the socket is known empty
  std::optional<error_code> done;
  p.wait_on_empty(done);
  p.expect_woken_by(done, "hello");
}

TEST(TransportWait, WaitAfterPartialReadCompletesWithoutNewBytes) {
  // The last read filled the caller's buffer, so more may be waiting: the wait must report it
  // although no new byte (no new readiness edge) will come.
  Pair p;
  p.prime();
  p.send(std::string(100, 'x'));
  std::optional<error_code> done;
  p.transport->async_wait_readable([&](error_code ec) { done = ec; });
  ASSERT_TRUE(p.run_until(done));
  char buf[10];
  error_code ec;
  size_t n = p.transport->read_some(buf, sizeof buf, ec);  // a full buffer: 90 bytes still queued
  ASSERT_FALSE(ec);
  ASSERT_EQ(n, sizeof buf);
  done.reset();
  p.transport->async_wait_readable([&](error_code e) { done = e; });
  ASSERT_TRUE(p.run_until(done)) << "bytes left in the socket after a full read were not reported";
  EXPECT_EQ(p.drain().size(), 90u);
}

TEST(TransportWait, PrimedWaitDoesNotCompleteWithoutBytes) {
  Pair p;
  p.prime();
  std::optional<error_code> done;
  p.transport->async_wait_readable([&](error_code ec) { done = ec; });
  for (int i = 0; i < 20; ++i) p.settle();
  p.expect_woken_by(done, "n");
}

TEST(TransportWait, StaleReadinessCompletesOnceThenWaitsForNewBytes) {
  // Bytes arrive while nobody waits; the reactor records the edge. They are read directly. The
  // next wait may complete once (nothing to read), and the one after must wait for new bytes.
  Pair p;
  EXPECT_EQ(p.drain(), "");
  p.send("abc");
  for (int i = 0; i < 50; ++i) p.settle();  // let the reactor see the edge with no waiter
  std::string got;
  for (int i = 0; i < 2000 && got.size() < 3; ++i) {
    got += p.drain();
    p.settle();
  }
  ASSERT_EQ(got, "abc");
  std::optional<error_code> done;
  p.wait_on_empty(done);
  p.expect_woken_by(done, "d");
}

TEST(TransportWait, TwoWaitersBothCompleteOnOneArrival) {
  // The upstream pool's idle watch stays queued while a response wait is queued behind it.
  Pair p;
  p.prime();
  std::optional<error_code> first, second;
  p.transport->async_wait_readable([&](error_code ec) { first = ec; });
  p.transport->async_wait_readable([&](error_code ec) { second = ec; });
  p.settle();
  ASSERT_FALSE(first || second) << "completed with nothing sent";
  p.send("z");
  ASSERT_TRUE(p.run_until(second));
  ASSERT_TRUE(p.run_until(first));
  EXPECT_FALSE(*first);
  EXPECT_FALSE(*second);
}

TEST(TransportWait, CancelAbortsAQueuedWait) {
  Pair p;
  p.prime();
  std::optional<error_code> done;
  p.transport->async_wait_readable([&](error_code ec) { done = ec; });
  p.settle();
  ASSERT_FALSE(done);
  p.transport->cancel();
  ASSERT_TRUE(p.run_until(done));
  EXPECT_EQ(*done, asio::error::operation_aborted);
}

TEST(TransportWait, PeerCloseCompletesTheWait) {
  Pair p;
  p.prime();
  std::optional<error_code> done;
  p.transport->async_wait_readable([&](error_code ec) { done = ec; });
  p.settle();
  ASSERT_FALSE(done);
  p.peer.close();
  ASSERT_TRUE(p.run_until(done));
  char buf[4];
  error_code ec;
  p.transport->read_some(buf, sizeof buf, ec);
  EXPECT_EQ(ec, asio::error::eof);
}

TEST(TransportWait, HasInputSeesBytesAndEndOfStreamWithoutConsuming) {
  Pair p;
  EXPECT_FALSE(p.transport->has_input());
  p.send("q");
  for (int i = 0; i < 2000 && !p.transport->has_input(); ++i) p.settle();
  EXPECT_TRUE(p.transport->has_input());
  EXPECT_EQ(p.drain(), "q");
  EXPECT_FALSE(p.transport->has_input());
  p.peer.close();
  for (int i = 0; i < 2000 && !p.transport->has_input(); ++i) p.settle();
  EXPECT_TRUE(p.transport->has_input());
}

// ---- The parked wait (tls::ParkedWait): its operation is the owner's, reused wait after wait ----

// A parked connection stand-in: records how its wait ended.
struct ParkedOwner {
  std::optional<error_code> ready;
  int gone = 0;
  turnpike::tls::ParkedWait<ParkedOwner> wait{this};
  static void parked_ready(ParkedOwner* o, error_code ec) { o->ready = ec; }
  static void parked_gone(ParkedOwner* o) { ++o->gone; }
};

TEST(TransportWait, ParkedWaitCompletesWhenBytesArriveAndCanBeMadeAgain) {
  Pair p;
  p.prime();
  ParkedOwner owner;
  for (const std::string bytes : {"first", "second", "third"}) {
    owner.ready.reset();
    p.transport->park_wait(owner.wait);
    p.settle();
    ASSERT_FALSE(owner.ready) << "completed before " << bytes << " was sent";
    p.send(bytes);
    ASSERT_TRUE(p.run_until(owner.ready)) << bytes << " did not complete the wait";
    EXPECT_FALSE(*owner.ready);
    EXPECT_EQ(p.drain(), bytes);
  }
  EXPECT_EQ(owner.gone, 0);
}

TEST(TransportWait, ParkedWaitOnUnreadBytesCompletesAtOnce) {
  Pair p;
  p.send("waiting");
  ParkedOwner owner;  // the socket is not known empty: a plain readiness wait
  p.transport->park_wait(owner.wait);
  ASSERT_TRUE(p.run_until(owner.ready));
  EXPECT_FALSE(*owner.ready);
  EXPECT_EQ(p.drain(), "waiting");
}

TEST(TransportWait, CancelAbortsAParkedWait) {
  Pair p;
  p.prime();
  ParkedOwner owner;
  p.transport->park_wait(owner.wait);
  p.settle();
  ASSERT_FALSE(owner.ready);
  p.transport->cancel();
  ASSERT_TRUE(p.run_until(owner.ready));
  EXPECT_EQ(*owner.ready, asio::error::operation_aborted);
}

TEST(TransportWait, AParkedWaitPendingWhenItsContextGoesTellsTheOwnerOnce) {
  // The owner is then freed by parked_gone (a parked connection would leak otherwise) and never
  // told it is ready.
  ParkedOwner owner;
  {
    Pair p;
    p.prime();
    p.transport->park_wait(owner.wait);
    p.settle();
    ASSERT_FALSE(owner.ready);
  }
  EXPECT_FALSE(owner.ready);
  EXPECT_EQ(owner.gone, 1);
}

}  // namespace
