// The mirror queues (turnpike/lua/mirror.h) through their C functions, on one io_context that
// also runs a small target server: what a copy carries, comparison counters, a full queue
// dropping, a refused target counted as failed, stop_mirrors dropping what waits, and no queue
// outside a worker. No timing: every check runs the io_context until the queue is idle.
#include "turnpike/lua/mirror.h"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <zlib.h>

#include <cstdio>
#include <cstring>
#include <string_view>
#include <string>
#include <vector>

namespace turnpike::lua::test {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// Answers each request on its connection with `status` and `body` (chunked in two pieces when
// `chunked`), recording the request's bytes.
class Target {
 public:
  Target(asio::io_context& io, int status, std::string body = {}, bool chunked = false)
      : acceptor_(io, {asio::ip::make_address("127.0.0.1"), 0}), status_(status), body_(std::move(body)),
        chunked_(chunked) {
    asio::co_spawn(io, accept_loop(), asio::detached);
  }
  std::string port() const { return std::to_string(acceptor_.local_endpoint().port()); }
  std::vector<std::string> requests;

 private:
  asio::awaitable<void> accept_loop() {
    for (;;) {
      tcp::socket s = co_await acceptor_.async_accept(asio::use_awaitable);
      asio::co_spawn(acceptor_.get_executor(), serve(std::move(s)), asio::detached);
    }
  }
  asio::awaitable<void> serve(tcp::socket s) {
    std::string buf;
    try {
      for (;;) {
        size_t head = co_await asio::async_read_until(s, asio::dynamic_buffer(buf), "\r\n\r\n", asio::use_awaitable);
        size_t length = 0;
        auto at = buf.find("Content-Length: ");
        if (at != std::string::npos && at < head) length = std::stoul(buf.substr(at + 16));
        if (buf.size() < head + length) {
          co_await asio::async_read(s, asio::dynamic_buffer(buf), asio::transfer_exactly(head + length - buf.size()),
                                    asio::use_awaitable);
        }
        requests.push_back(buf.substr(0, head + length));
        buf.erase(0, head + length);
        std::string reply = "HTTP/1.1 " + std::to_string(status_) + " X\r\n";
        if (chunked_) {
          const size_t half = body_.size() / 2;
          reply += "Transfer-Encoding: chunked\r\n\r\n";
          for (std::string_view piece : {std::string_view(body_).substr(0, half), std::string_view(body_).substr(half)}) {
            if (!piece.empty()) reply += to_hex(piece.size()) + "\r\n" + std::string(piece) + "\r\n";
          }
          reply += "0\r\n\r\n";
        } else {
          reply += "Content-Length: " + std::to_string(body_.size()) + "\r\n\r\n" + body_;
        }
        co_await asio::async_write(s, asio::buffer(reply), asio::use_awaitable);
      }
    } catch (const std::exception&) {
      // the client closed the connection
    }
  }
  static std::string to_hex(size_t n) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%zx", n);
    return buf;
  }
  tcp::acceptor acceptor_;
  int status_;
  std::string body_;
  bool chunked_;
};

tp_mirror_stats stats_of(tp_mirror* q) {
  tp_mirror_stats s{};
  tp_mirror_get_stats(q, &s);
  return s;
}

// Runs the loop until the queue has nothing waiting or in flight (bounded in handler count).
void run_until_idle(asio::io_context& io, tp_mirror* q) {
  for (int i = 0; i < 100000; ++i) {
    tp_mirror_stats s = stats_of(q);
    if (s.waiting == 0 && s.in_flight == 0 && s.sent + s.failed >= s.queued) {
      io.poll();  // let finished senders unwind
      return;
    }
    io.run_one();
  }
  FAIL() << "the queue never went idle";
}

tp_mirror* make_queue(const char* name, const std::string& port, int size, int concurrency) {
  return tp_mirror_queue(name, std::strlen(name), "127.0.0.1", 9, port.data(), port.size(), size, concurrency, 5000);
}

struct MirrorTest : ::testing::Test {
  asio::io_context io;
  void SetUp() override { bind_mirror_io_context(&io); }
  void TearDown() override { bind_mirror_io_context(nullptr); }
};

TEST_F(MirrorTest, CopyCarriesMethodTargetHeadersAndBody) {
  Target target(io, 200);
  tp_mirror* q = make_queue("copy", target.port(), 10, 2);
  ASSERT_NE(q, nullptr);
  std::string headers = "X-Custom: v1\nX-Mirrored-By: turnpike\n";
  ASSERT_EQ(tp_mirror_send(q, "POST", 4, "/a?b=1", 6, headers.data(), headers.size(), "hello", 5, 1, 0, 0, 0), 0);
  run_until_idle(io, q);
  ASSERT_EQ(target.requests.size(), 1u);
  const std::string& r = target.requests[0];
  EXPECT_EQ(r.rfind("POST /a?b=1 HTTP/1.1\r\n", 0), 0u) << r;
  EXPECT_NE(r.find("X-Custom: v1\r\n"), std::string::npos) << r;
  EXPECT_NE(r.find("X-Mirrored-By: turnpike\r\n"), std::string::npos) << r;
  EXPECT_NE(r.find("Content-Length: 5\r\n"), std::string::npos) << r;
  EXPECT_EQ(r.substr(r.size() - 5), "hello");
  tp_mirror_stats s = stats_of(q);
  EXPECT_EQ(s.queued, 1u);
  EXPECT_EQ(s.sent, 1u);
  EXPECT_EQ(s.failed, 0u);
  EXPECT_EQ(s.compared, 0u);  // no primary status given
}

TEST_F(MirrorTest, ComparesTheMirrorsStatusWithThePrimarys) {
  Target target(io, 500);
  tp_mirror* q = make_queue("compare", target.port(), 10, 1);
  ASSERT_EQ(tp_mirror_send(q, "GET", 3, "/", 1, "", 0, "", 0, 0, 200, 0, 0), 0);
  ASSERT_EQ(tp_mirror_send(q, "GET", 3, "/", 1, "", 0, "", 0, 0, 500, 0, 0), 0);
  ASSERT_EQ(tp_mirror_send(q, "GET", 3, "/", 1, "", 0, "", 0, 0, 0, 0, 0), 0);
  run_until_idle(io, q);
  tp_mirror_stats s = stats_of(q);
  EXPECT_EQ(s.sent, 3u);
  EXPECT_EQ(s.compared, 2u);
  EXPECT_EQ(s.differed, 1u);
}

// The target's body is digested (never kept) and its CRC-32 compared with the primary's: the
// same bytes count as compared, other bytes as differed, a copy without a CRC is not compared.
TEST_F(MirrorTest, ComparesTheMirrorsBodyWithThePrimarysByCrc) {
  const std::string body(70000, 'x');  // larger than any old response cap
  for (bool chunked : {false, true}) {
    Target target(io, 200, body, chunked);
    tp_mirror* q = make_queue(chunked ? "body-chunked" : "body", target.port(), 10, 1);
    const auto same = static_cast<uint32_t>(::crc32_z(0, reinterpret_cast<const Bytef*>(body.data()), body.size()));
    ASSERT_EQ(tp_mirror_send(q, "GET", 3, "/", 1, "", 0, "", 0, 0, 200, 1, same), 0);
    ASSERT_EQ(tp_mirror_send(q, "GET", 3, "/", 1, "", 0, "", 0, 0, 200, 1, same ^ 1), 0);
    ASSERT_EQ(tp_mirror_send(q, "GET", 3, "/", 1, "", 0, "", 0, 0, 200, 0, 0), 0);
    run_until_idle(io, q);
    tp_mirror_stats s = stats_of(q);
    EXPECT_EQ(s.sent, 3u) << chunked;
    EXPECT_EQ(s.failed, 0u) << chunked;
    EXPECT_EQ(s.compared, 3u) << chunked;
    EXPECT_EQ(s.differed, 0u) << chunked;
    EXPECT_EQ(s.body_compared, 2u) << chunked;
    EXPECT_EQ(s.body_differed, 1u) << chunked;
  }
}

TEST_F(MirrorTest, FullQueueDropsAndCounts) {
  Target target(io, 200);
  tp_mirror* q = make_queue("full", target.port(), 3, 1);
  int queued = 0, dropped = 0;
  for (int i = 0; i < 10; ++i) {  // the loop does not run meanwhile: nothing leaves the queue
    (tp_mirror_send(q, "GET", 3, "/", 1, "", 0, "", 0, 0, 0, 0, 0) == 0 ? queued : dropped)++;
  }
  EXPECT_EQ(queued, 3);
  EXPECT_EQ(dropped, 7);
  EXPECT_EQ(stats_of(q).waiting, 3u);
  EXPECT_EQ(stats_of(q).dropped, 7u);
  run_until_idle(io, q);
  EXPECT_EQ(stats_of(q).sent, 3u);
  EXPECT_EQ(target.requests.size(), 3u);
}

TEST_F(MirrorTest, RefusedTargetCountsFailed) {
  std::string port;
  {
    tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
    port = std::to_string(a.local_endpoint().port());
  }  // closed: nothing listens there now
  tp_mirror* q = make_queue("refused", port, 10, 4);
  for (int i = 0; i < 5; ++i) ASSERT_EQ(tp_mirror_send(q, "GET", 3, "/", 1, "", 0, "", 0, 0, 0, 0, 0), 0);
  run_until_idle(io, q);
  tp_mirror_stats s = stats_of(q);
  EXPECT_EQ(s.failed, 5u);
  EXPECT_EQ(s.sent, 0u);
}

TEST_F(MirrorTest, StopDropsWhatWaitsAndRefusesMore) {
  Target target(io, 200);
  tp_mirror* q = make_queue("stop", target.port(), 10, 1);
  for (int i = 0; i < 4; ++i) ASSERT_EQ(tp_mirror_send(q, "GET", 3, "/", 1, "", 0, "", 0, 0, 0, 0, 0), 0);
  stop_mirrors(io);
  EXPECT_EQ(stats_of(q).waiting, 0u);
  EXPECT_EQ(stats_of(q).dropped, 4u);
  EXPECT_EQ(tp_mirror_send(q, "GET", 3, "/", 1, "", 0, "", 0, 0, 0, 0, 0), -1);
  io.poll();
  EXPECT_TRUE(target.requests.empty());
}

TEST_F(MirrorTest, QueuesAreFoundByNameAndListed) {
  tp_mirror* a = make_queue("a", "1", 10, 1);
  EXPECT_EQ(make_queue("a", "2", 20, 2), a);  // same name: same queue, new settings
  EXPECT_EQ(tp_mirror_find("a", 1), a);
  EXPECT_EQ(tp_mirror_find("b", 1), nullptr);
  ASSERT_EQ(mirror_queue_count(io), 1u);
  EXPECT_EQ(std::string(mirror_queue_at(io, 0).name, mirror_queue_at(io, 0).name_len), "a");
  EXPECT_EQ(make_queue("bad", "1", 0, 1), nullptr);
  EXPECT_EQ(make_queue("bad", "1", 1, 0), nullptr);
}

TEST(MirrorOutsideWorker, NoQueueWithoutAWorkerLoop) {
  bind_mirror_io_context(nullptr);
  EXPECT_EQ(tp_mirror_queue("x", 1, "127.0.0.1", 9, "80", 2, 10, 1, 1000), nullptr);
  EXPECT_EQ(tp_mirror_find("x", 1), nullptr);
  EXPECT_EQ(tp_mirror_send(nullptr, "GET", 3, "/", 1, "", 0, "", 0, 0, 0, 0, 0), -1);
}

}  // namespace
}  // namespace turnpike::lua::test
