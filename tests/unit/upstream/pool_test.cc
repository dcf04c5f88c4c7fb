// The per-worker keepalive pool on real loopback connections: a released connection is parked
// and handed out again (last in, first out), the limits decide what is parked and what is
// closed, a parked connection the node closed is never handed out, a retired pool hands its
// returning connections to the pool now serving their node, and a failed connect comes back as
// an error and a rate-limited warning.
#include <gtest/gtest.h>
#include <poll.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <sstream>

#include "upstream_test_util.h"

namespace turnpike::upstream {
namespace {

using testing::make_config;
using testing::make_upstream;
using testing::NodeSpec;

// One node: a listening socket on 127.0.0.1 (port 0) whose accepted ends the test holds.
class PoolTest : public ::testing::Test {
 protected:
  void SetUp() override { make_pool(); }
  void TearDown() override {
    pool.reset();
    next_pool.reset();
    ioc.restart();
    ioc.poll();  // the pool frees connections in posted handlers
  }

  void make_pool() {
    specs = {{acceptor.local_endpoint().port(), 1}};
    cfg = make_config(specs);
    cfg.keepalive_max_idle = 4;
    cfg.keepalive_max_requests = 3;
    pool.reset();
    pool = std::make_unique<UpstreamPool>(ioc, buffers, make_upstream(cfg, specs));
  }

  // A fresh connection from the pool, its far end accepted into `far`.
  UpstreamConnection* connect() {
    auto got = testing::run(ioc, pool->connect(0));
    EXPECT_TRUE(got && got->conn && !got->ec);
    if (!got || !got->conn) return nullptr;
    far.push_back(acceptor.accept());
    got->conn->requests = 1;  // as the forwarder counts a request sent
    return got->conn;
  }

  // As a reload that changed the node list leaves it: `pool` retired, handing over to a new pool
  // whose first node is another one, followed by the pool's node when `keep_node`.
  UpstreamPool& retire_pool(bool keep_node) {
    next_specs = {{other.local_endpoint().port(), 1}};
    if (keep_node) next_specs.push_back(specs[0]);
    next_cfg = make_config(next_specs);
    next_cfg.keepalive_max_idle = 4;
    next_pool = std::make_unique<UpstreamPool>(ioc, buffers, make_upstream(next_cfg, next_specs));
    pool->hand_over_to(next_pool.get());
    return *next_pool;
  }

  // Waits (bounded) until the pool's end of `conn` sees the node's close.
  static bool wait_readable(UpstreamConnection* conn) {
    pollfd p{conn->io.socket().native_handle(), POLLIN, 0};
    return ::poll(&p, 1, 2000) == 1;
  }

  asio::io_context ioc{1};
  BufferPool buffers;
  tcp::acceptor acceptor{ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
  std::vector<tcp::socket> far;
  std::vector<NodeSpec> specs;
  config::UpstreamConfig cfg;
  std::unique_ptr<UpstreamPool> pool;
  // retire_pool()'s: another node, and the pool serving the upstream after the "reload".
  tcp::acceptor other{ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
  std::vector<NodeSpec> next_specs;
  config::UpstreamConfig next_cfg;
  std::unique_ptr<UpstreamPool> next_pool;
};

TEST_F(PoolTest, ReleasedConnectionIsParkedAndReusedLastInFirstOut) {
  UpstreamConnection* a = connect();
  UpstreamConnection* b = connect();
  ASSERT_TRUE(a && b);
  EXPECT_FALSE(a->reused);
  EXPECT_EQ(pool->active(), 2u);
  pool->release(a, true);
  pool->release(b, true);
  EXPECT_EQ(pool->idle(), 2u);
  EXPECT_EQ(pool->active(), 0u);

  auto first = pool->take_idle(0);
  EXPECT_EQ(first.conn, b);  // the warmest one
  EXPECT_TRUE(first.conn->reused);
  auto second = testing::run(ioc, pool->acquire(0));  // acquire prefers a parked one too
  ASSERT_TRUE(second);
  EXPECT_EQ(second->conn, a);
  EXPECT_EQ(pool->take_idle(0).conn, nullptr);
  EXPECT_EQ(pool->active(), 2u);
  EXPECT_EQ(far.size(), 2u);  // no new connection was made
  pool->release(a, false);
  pool->release(b, false);
}

TEST_F(PoolTest, ConnectNeverHandsOutAParkedConnection) {
  UpstreamConnection* a = connect();
  ASSERT_TRUE(a);
  pool->release(a, true);
  UpstreamConnection* b = connect();
  ASSERT_TRUE(b);
  EXPECT_NE(b, a);
  EXPECT_FALSE(b->reused);
  EXPECT_EQ(pool->idle(), 1u);
  pool->release(b, false);
}

TEST_F(PoolTest, NotReusableIsClosed) {
  UpstreamConnection* a = connect();
  ASSERT_TRUE(a);
  pool->release(a, false);
  EXPECT_EQ(pool->idle(), 0u);
  EXPECT_EQ(pool->active(), 0u);
  // The node sees the close.
  pollfd p{far[0].native_handle(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 2000), 1);
  char byte;
  EXPECT_EQ(::recv(far[0].native_handle(), &byte, 1, MSG_DONTWAIT), 0);
}

TEST_F(PoolTest, NoMoreThanMaxIdleConnectionsAreParked) {
  std::vector<UpstreamConnection*> conns;
  for (int i = 0; i < 6; ++i) conns.push_back(connect());
  for (auto* c : conns) pool->release(c, true);
  EXPECT_EQ(pool->idle(), cfg.keepalive_max_idle);
}

TEST_F(PoolTest, ConnectionAtMaxRequestsIsClosedNotParked) {
  UpstreamConnection* a = connect();
  UpstreamConnection* b = connect();
  ASSERT_TRUE(a && b);
  a->requests = cfg.keepalive_max_requests - 1;
  b->requests = cfg.keepalive_max_requests;
  pool->release(a, true);
  pool->release(b, true);
  EXPECT_EQ(pool->idle(), 1u);
  EXPECT_EQ(pool->take_idle(0).conn, a);
  pool->release(a, false);
}

TEST_F(PoolTest, ARetiredPoolHandsAReleasedConnectionToThePoolNowServingItsNode) {
  // A reload changed the node list (another node first): the connection of the request in flight
  // parks in the new pool, on its node's new index, rather than being closed.
  UpstreamConnection* a = connect();
  ASSERT_TRUE(a);
  UpstreamPool& next = retire_pool(/*keep_node=*/true);
  pool->release(a, true);
  EXPECT_EQ(pool->active(), 0u);
  EXPECT_EQ(pool->idle(), 0u);
  EXPECT_EQ(next.idle(), 1u);
  EXPECT_EQ(next.take_idle(0).conn, nullptr);
  auto got = next.take_idle(1);
  EXPECT_EQ(got.conn, a);
  ASSERT_TRUE(got.conn);
  EXPECT_TRUE(got.conn->reused);
  EXPECT_EQ(next.active(), 1u);
  next.release(a, false);
}

TEST_F(PoolTest, ARetiredPoolClosesAReleasedConnectionWhoseNodeIsGone) {
  UpstreamConnection* a = connect();
  ASSERT_TRUE(a);
  UpstreamPool& next = retire_pool(/*keep_node=*/false);
  pool->release(a, true);
  EXPECT_EQ(pool->active(), 0u);
  EXPECT_EQ(pool->idle(), 0u);
  EXPECT_EQ(next.idle(), 0u);
  pollfd p{far[0].native_handle(), POLLIN, 0};  // the node sees the close
  ASSERT_EQ(::poll(&p, 1, 2000), 1);
  char byte;
  EXPECT_EQ(::recv(far[0].native_handle(), &byte, 1, MSG_DONTWAIT), 0);
}

TEST_F(PoolTest, ConnectionWithUnreadBytesOrATimeoutIsClosed) {
  UpstreamConnection* a = connect();
  UpstreamConnection* b = connect();
  ASSERT_TRUE(a && b);
  a->buffer.ensure(buffers);
  a->buffer.tail()[0] = 'x';
  a->buffer.commit(1);  // bytes after the response: the stream is out of step
  b->timed_out = true;
  pool->release(a, true);
  pool->release(b, true);
  EXPECT_EQ(pool->idle(), 0u);
}

TEST_F(PoolTest, VerifiedTakeSkipsAConnectionTheNodeClosed) {
  UpstreamConnection* alive = connect();
  UpstreamConnection* dead = connect();
  ASSERT_TRUE(alive && dead);
  pool->release(alive, true);
  pool->release(dead, true);  // parked last: handed out first
  far[1].close();
  ASSERT_TRUE(wait_readable(dead));
  auto got = pool->take_idle(0, /*verify=*/true);
  EXPECT_EQ(got.conn, alive);
  EXPECT_EQ(pool->idle(), 0u);  // the dead one is gone
  pool->release(alive, false);
}

TEST_F(PoolTest, SweepDiscardsAParkedConnectionTheNodeClosed) {
  UpstreamConnection* a = connect();
  UpstreamConnection* b = connect();
  ASSERT_TRUE(a && b);
  pool->release(a, true);
  pool->release(b, true);
  far[0].close();
  ASSERT_TRUE(wait_readable(a));
  pool->sweep(Clock::now());
  EXPECT_EQ(pool->idle(), 1u);
  EXPECT_EQ(pool->take_idle(0).conn, b);
  pool->release(b, false);
}

TEST_F(PoolTest, SweepClosesConnectionsIdleLongerThanTheIdleTimeout) {
  UpstreamConnection* a = connect();
  ASSERT_TRUE(a);
  pool->release(a, true);
  pool->sweep(Clock::now() + cfg.keepalive_idle_timeout / 2);
  EXPECT_EQ(pool->idle(), 1u);
  pool->sweep(Clock::now() + cfg.keepalive_idle_timeout + std::chrono::seconds(1));
  EXPECT_EQ(pool->idle(), 0u);
}

TEST_F(PoolTest, CloseIdleClosesEveryParkedConnection) {
  UpstreamConnection* a = connect();
  UpstreamConnection* b = connect();
  pool->release(a, true);
  pool->release(b, true);
  pool->close_idle();
  EXPECT_EQ(pool->idle(), 0u);
  EXPECT_EQ(pool->take_idle(0).conn, nullptr);
}

// The error log goes to a string for the test's duration.
class CapturedLog {
 public:
  CapturedLog() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    sink->set_pattern("[%l] %v");
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("captured", sink));
  }
  ~CapturedLog() { spdlog::set_default_logger(previous_); }
  std::vector<std::string> lines() const {
    std::vector<std::string> v;
    std::istringstream in(out_.str());
    for (std::string line; std::getline(in, line);) v.push_back(line);
    return v;
  }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> previous_;
};

TEST_F(PoolTest, RefusedConnectIsAnErrorAndOneWarningForABurst) {
  CapturedLog log;
  const uint16_t port = acceptor.local_endpoint().port();
  acceptor.close();  // nothing listens there now
  for (int i = 0; i < 3; ++i) {
    auto got = testing::run(ioc, pool->connect(0));
    ASSERT_TRUE(got);
    EXPECT_EQ(got->conn, nullptr);
    EXPECT_EQ(got->ec, asio::error::connection_refused);
    EXPECT_FALSE(got->timed_out);
  }
  EXPECT_EQ(pool->active(), 0u);
  // The other two fall within the first one's interval (10 s): counted, not written.
  const auto lines = log.lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], "[warning] upstream demo: 127.0.0.1:" + std::to_string(port) +
                          ": connect_failed: Connection refused");
}

TEST_F(PoolTest, ReportedFailuresOfDifferentNodesAreLimitedSeparately) {
  CapturedLog log;
  pool.reset();
  specs = {{1, 1}, {2, 1}};
  cfg = make_config(specs);
  pool = std::make_unique<UpstreamPool>(ioc, buffers, make_upstream(cfg, specs));
  pool->report_failure(0, NodeFailure::timeout);
  pool->report_failure(1, NodeFailure::reset);
  pool->report_failure(0, NodeFailure::timeout);
  const auto lines = log.lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "[warning] upstream demo: 127.0.0.1:1: timeout");
  EXPECT_EQ(lines[1], "[warning] upstream demo: 127.0.0.1:2: reset");
}

// A reload that changes only the nodes or the health checks lets the new pool take the old one's
// connections; any other setting makes every connection new.
TEST(SameButNodes, OnlyTheNodesAndTheHealthChecksMayDiffer) {
  config::UpstreamConfig a;
  a.name = "app";
  a.nodes.push_back({.host = "127.0.0.1", .port = 8001});
  config::UpstreamConfig b = a;
  b.nodes = {{.host = "127.0.0.2", .port = 8002}, {.host = "127.0.0.3", .port = 8003}};
  b.health.active.type = config::HealthCheckType::http;
  b.health.max_ejected_percent = 20;
  EXPECT_TRUE(UpstreamPool::same_but_nodes(a, b));
  EXPECT_TRUE(UpstreamPool::same_but_nodes(b, a));

  auto differs = [&](auto change) {
    config::UpstreamConfig c = b;
    change(c);
    return !UpstreamPool::same_but_nodes(b, c);
  };
  EXPECT_TRUE(differs([](auto& c) { c.name = "other"; }));
  EXPECT_TRUE(differs([](auto& c) { c.keepalive_max_idle = 3; }));
  EXPECT_TRUE(differs([](auto& c) { c.connect_timeout = config::Duration{10}; }));
  EXPECT_TRUE(differs([](auto& c) { c.retries = 0; }));
  EXPECT_TRUE(differs([](auto& c) { c.tls.enabled = true; }));
  EXPECT_TRUE(differs([](auto& c) { c.balancing.balancer = config::BalancerKind::random; }));
  EXPECT_TRUE(differs([](auto& c) { c.resolve_interval = config::Duration{1000}; }));
  // HTTP/2 pools keep their connections another way (never handed over).
  config::UpstreamConfig h2 = a;
  h2.protocol = config::UpstreamProtocol::h2c;
  EXPECT_FALSE(UpstreamPool::same_but_nodes(h2, h2));
}

}  // namespace
}  // namespace turnpike::upstream
