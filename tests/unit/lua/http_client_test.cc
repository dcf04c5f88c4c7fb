// turnpike.http.request from a plugin against a scripted HTTP/1.1 server in the test (its own
// thread and io_context): a response with a body and headers, a chunked one, keepalive reuse,
// a timeout, a refused connection, a body over max_body, bad arguments, lua.phase_timeout, and
// a call destroyed or cancelled mid-request (the socket closes, nothing freed is touched: ASan).
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>

#include <atomic>
#include <functional>
#include <mutex>
#include <thread>

#include "lua_test_util.h"

namespace turnpike::lua::test {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

constexpr const char* kHang = "";        // a reply that never comes
constexpr const char* kDrop = "(drop)";  // close the connection without answering

// reply(request head and body, how many requests this connection carried before).
using Reply = std::function<std::string(const std::string&, int)>;

// A server on 127.0.0.1:0 answering each request with reply(...).
class TestServer {
 public:
  explicit TestServer(Reply reply) : reply_(std::move(reply)) {
    acceptor_.open(tcp::v4());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    acceptor_.bind({asio::ip::make_address("127.0.0.1"), 0});
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    asio::co_spawn(io_, accept_loop(), asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~TestServer() {
    asio::post(io_, [this] { io_.stop(); });
    thread_.join();
  }

  std::string url(const std::string& path = "/check") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  int connections() const { return connections_; }
  int requests() const { return requests_; }
  // Connections the client closed while the server had not answered.
  int hung_up() const { return hung_up_; }
  std::string last_request() {
    std::lock_guard lock(mutex_);
    return last_;
  }
  // Waits (bounded) until the server has seen `n` requests.
  bool wait_requests(int n) {
    for (int i = 0; i < 500 && requests_ < n; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return requests_ >= n;
  }
  bool wait_hung_up(int n) {
    for (int i = 0; i < 500 && hung_up_ < n; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return hung_up_ >= n;
  }

 private:
  asio::awaitable<void> accept_loop() {
    for (;;) {
      tcp::socket s = co_await acceptor_.async_accept(asio::use_awaitable);
      ++connections_;
      asio::co_spawn(io_, serve(std::move(s)), asio::detached);
    }
  }

  asio::awaitable<void> serve(tcp::socket s) {
    std::string buf;
    auto ok = asio::as_tuple(asio::use_awaitable);
    for (int nth = 0;; ++nth) {
      auto [ec, n] = co_await asio::async_read_until(s, asio::dynamic_buffer(buf), "\r\n\r\n", ok);
      if (ec) co_return;
      std::string head = buf.substr(0, n);
      buf.erase(0, n);
      size_t length = 0;
      if (auto at = head.find("Content-Length: "); at != std::string::npos) length = std::stoul(head.substr(at + 16));
      while (buf.size() < length) {
        char chunk[4096];
        auto [rec, got] = co_await s.async_read_some(asio::buffer(chunk), ok);
        if (rec) co_return;
        buf.append(chunk, got);
      }
      {
        std::lock_guard lock(mutex_);
        last_ = head + buf.substr(0, length);
      }
      buf.erase(0, length);
      ++requests_;
      std::string answer = reply_(last_request(), nth);
      if (answer == kDrop) co_return;
      if (answer.empty()) {  // hang until the client gives up
        char c;
        auto [rec, got] = co_await s.async_read_some(asio::buffer(&c, 1), ok);
        if (rec) ++hung_up_;
        co_return;
      }
      auto [wec, written] = co_await asio::async_write(s, asio::buffer(answer), ok);
      if (wec || answer.find("Connection: close") != std::string::npos) co_return;
    }
  }

  Reply reply_;
  asio::io_context io_;
  tcp::acceptor acceptor_{io_};
  uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<int> connections_{0}, requests_{0}, hung_up_{0};
  std::mutex mutex_;
  std::string last_;
};

std::string ok_response(const std::string& body, const std::string& extra = "") {
  return "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" + extra + "\r\n" + body;
}

// The plugin's access phase runs `body` and answers with turnpike.exit(200, what it returns).
// `show(res, err)` renders a result as "status|body|x-answer" or "ERR|message".
std::string plugin_with(const std::string& body) {
  return "local turnpike = require 'turnpike'\n"
         "local function show(res, err)\n"
         "  if not res then return 'ERR|' .. tostring(err) end\n"
         "  return res.status .. '|' .. res.body .. '|' .. tostring(res.headers['x-answer'])\n"
         "end\n"
         "return { name = 'p', priority = 1, schema = { type = 'object' },\n"
         "  access = function(conf, ctx)\n" + body + "\nend }\n";
}

class HttpClientTest : public LuaTest {
 protected:
  void TearDown() override {
    gen_.reset();
    LuaTest::TearDown();
  }
  void load_access(const std::string& body) {
    write_plugin("p", plugin_with(body));
    gen_ = load({"p"});
  }
  // Runs the call on `io` until it ends (the server's thread is separate).
  CallResult run(asio::io_context& io) {
    Ref ctx = vm().new_ctx();
    std::optional<CallResult> out;
    asio::co_spawn(io, vm().call(gen_, 0, Phase::access, Ref(), ctx, nullptr),
                   [&](std::exception_ptr, CallResult r) { out = std::move(r); });
    io.run();
    EXPECT_TRUE(out.has_value());
    return out.value_or(CallResult{});
  }
  std::string answer() {
    asio::io_context io;
    CallResult r = run(io);
    EXPECT_EQ(r.status, CallStatus::exit) << r.error;
    return r.exit_body;
  }
  static std::string quoted(const std::string& s) { return "'" + s + "'"; }
  std::shared_ptr<const Generation> gen_;
};

TEST_F(HttpClientTest, ResponseWithBodyAndHeaders) {
  TestServer server([](const std::string&, int) { return ok_response("hello", "X-Answer: yes\r\nX-Answer: again\r\n"); });
  load_access("turnpike.exit(200, show(turnpike.http.request{ method = 'POST', url = " + quoted(server.url("/check?a=1")) +
              ", headers = { ['X-Token'] = 'abc', ['Content-Length'] = '99' }, body = 'payload' }))");
  EXPECT_EQ(answer(), "200|hello|yes, again");
  std::string req = server.last_request();
  EXPECT_EQ(req.rfind("POST /check?a=1 HTTP/1.1\r\nHost: 127.0.0.1:", 0), 0u) << req;
  EXPECT_NE(req.find("X-Token: abc\r\n"), std::string::npos) << req;
  // The client frames the body itself: the plugin's Content-Length is not sent.
  EXPECT_NE(req.find("Content-Length: 7\r\n\r\npayload"), std::string::npos) << req;
  EXPECT_EQ(req.find("Content-Length: 99"), std::string::npos) << req;
}

TEST_F(HttpClientTest, ChunkedResponse) {
  TestServer server([](const std::string&, int) {
    return std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
  });
  load_access("turnpike.exit(200, show(turnpike.http.request{ url = " + quoted(server.url()) + " }))");
  EXPECT_EQ(answer(), "200|hello world|nil");
}

TEST_F(HttpClientTest, InterimResponsesAreSkippedAndHeadHasNoBody) {
  TestServer server([](const std::string& req, int) {
    if (req.rfind("HEAD", 0) == 0) return std::string("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
    return "HTTP/1.1 100 Continue\r\n\r\n" + ok_response("final");
  });
  load_access("local a = show(turnpike.http.request{ url = " + quoted(server.url()) + " })\n"
              "local b = show(turnpike.http.request{ method = 'HEAD', url = " + quoted(server.url()) + " })\n"
              "local c = show(turnpike.http.request{ url = " + quoted(server.url()) + " })\n"
              "turnpike.exit(200, a .. ',' .. b .. ',' .. c)");
  EXPECT_EQ(answer(), "200|final|nil,200||nil,200|final|nil");
  EXPECT_EQ(server.connections(), 1);  // HEAD's Content-Length announced no bytes to wait for
}

TEST_F(HttpClientTest, KeepaliveConnectionIsReusedBetweenRequests) {
  TestServer server([](const std::string&, int) { return ok_response("x"); });
  load_access("local a = show(turnpike.http.request{ url = " + quoted(server.url()) + " })\n"
              "local b = show(turnpike.http.request{ url = " + quoted(server.url()) + " })\n"
              "turnpike.exit(200, a .. ',' .. b)");
  asio::io_context io;
  CallResult r = run(io);
  EXPECT_EQ(r.exit_body, "200|x|nil,200|x|nil");
  EXPECT_EQ(server.requests(), 2);
  EXPECT_EQ(server.connections(), 1);  // the second request went on the first connection
  // A later call on the same worker (io_context) reuses it too.
  io.restart();
  EXPECT_EQ(run(io).exit_body, "200|x|nil,200|x|nil");
  EXPECT_EQ(server.connections(), 1);
}

TEST_F(HttpClientTest, ConnectionCloseIsNotReused) {
  TestServer server([](const std::string&, int) { return ok_response("x", "Connection: close\r\n"); });
  load_access("local a = show(turnpike.http.request{ url = " + quoted(server.url()) + " })\n"
              "local b = show(turnpike.http.request{ url = " + quoted(server.url()) + " })\n"
              "turnpike.exit(200, a .. ',' .. b)");
  EXPECT_EQ(answer(), "200|x|nil,200|x|nil");
  EXPECT_EQ(server.connections(), 2);
}

// RFC 9112 §9.3.1: a server may close a kept-alive connection just as the next request
// arrives. Here every connection's second request is dropped unanswered.
TEST_F(HttpClientTest, DroppedReusedConnectionIsRetriedForIdempotentRequests) {
  TestServer server([](const std::string&, int nth) { return nth == 0 ? ok_response("x") : std::string(kDrop); });
  load_access("local a = show(turnpike.http.request{ url = " + quoted(server.url()) + " })\n"
              "local b = show(turnpike.http.request{ url = " + quoted(server.url()) + " })\n"
              "local c = show(turnpike.http.request{ method = 'POST', url = " + quoted(server.url()) + ", body = '' })\n"
              "turnpike.exit(200, a .. ',' .. b .. ',' .. c)");
  std::string got = answer();
  // GET: sent again on a new connection. POST: not repeated, the plugin hears of it.
  EXPECT_EQ(got.rfind("200|x|nil,200|x|nil,ERR|bad response: the connection closed before a response", 0), 0u) << got;
  EXPECT_EQ(server.connections(), 2);
}

TEST_F(HttpClientTest, TimeoutClosesTheConnection) {
  TestServer server([](const std::string&, int) { return std::string(kHang); });
  load_access("turnpike.exit(200, show(turnpike.http.request{ url = " + quoted(server.url()) + ", timeout = 0.05 }))");
  EXPECT_EQ(answer(), "ERR|timeout");
  EXPECT_TRUE(server.wait_hung_up(1));
}

TEST_F(HttpClientTest, PhaseTimeoutBoundsTheWait) {
  config_.phase_timeout = std::chrono::milliseconds(50);
  TestServer server([](const std::string&, int) { return std::string(kHang); });
  load_access("turnpike.http.request{ url = " + quoted(server.url()) + ", timeout = 3600 }");
  asio::io_context io;
  CallResult r = run(io);
  EXPECT_EQ(r.status, CallStatus::error);
  EXPECT_NE(r.error.find("lua.phase_timeout"), std::string::npos) << r.error;
  EXPECT_TRUE(server.wait_hung_up(1));
}

TEST_F(HttpClientTest, HostNamesAreResolved) {
  TestServer server([](const std::string&, int) { return ok_response("named"); });
  std::string url = server.url();
  url.replace(url.find("127.0.0.1"), 9, "localhost");
  load_access("turnpike.exit(200, show(turnpike.http.request{ url = " + quoted(url) + " }))");
  EXPECT_EQ(answer(), "200|named|nil");
  EXPECT_NE(server.last_request().find("Host: localhost:"), std::string::npos) << server.last_request();
}

TEST_F(HttpClientTest, ConnectionRefused) {
  uint16_t port;
  {
    asio::io_context io;
    tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
    port = a.local_endpoint().port();
  }  // closed: nothing listens there now
  load_access("turnpike.exit(200, show(turnpike.http.request{ url = 'http://127.0.0.1:" + std::to_string(port) + "/' }))");
  std::string got = answer();
  EXPECT_EQ(got.rfind("ERR|connect failed: ", 0), 0u) << got;
}

TEST_F(HttpClientTest, BodyTooLarge) {
  TestServer server([](const std::string& req, int) {
    if (req.find("/chunked") != std::string::npos) {
      return std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    }
    return ok_response("hello");
  });
  load_access("local a = show(turnpike.http.request{ url = " + quoted(server.url()) + ", max_body = 4 })\n"
              "local b = show(turnpike.http.request{ url = " + quoted(server.url("/chunked")) + ", max_body = 4 })\n"
              "local c = show(turnpike.http.request{ url = " + quoted(server.url()) + ", max_body = 5 })\n"
              "turnpike.exit(200, a .. ',' .. b .. ',' .. c)");
  EXPECT_EQ(answer(), "ERR|body too large,ERR|body too large,200|hello|nil");
}

TEST_F(HttpClientTest, BadResponse) {
  TestServer server([](const std::string&, int) { return std::string("HTTP/1.1 two hundred\r\n\r\n"); });
  load_access("turnpike.exit(200, show(turnpike.http.request{ url = " + quoted(server.url()) + " }))");
  std::string got = answer();
  EXPECT_EQ(got.rfind("ERR|bad response", 0), 0u) << got;
}

TEST_F(HttpClientTest, BadArgumentsRaiseInThePlugin) {
  load_access("local ok, err = pcall(turnpike.http.request, { url = 'gopher://example.com/' })\n"
              "local ok2, err2 = pcall(turnpike.http.request, { url = 'ftp:/x' })\n"
              "local ok3, err3 = pcall(turnpike.http.request, { url = 'http://127.0.0.1:1/', headers = { ['a b'] = 'x' } })\n"
              "local ok4, err4 = pcall(turnpike.http.request, { url = 'http://127.0.0.1:1/', timeout = 0 })\n"
              "turnpike.exit(200, table.concat({ tostring(ok), err, tostring(ok2), err2, tostring(ok3), err3, err4 }, '\\n'))");
  std::string got = answer();
  EXPECT_NE(got.find("false\nturnpike.http.request: url: only http:// and https:// are supported"), std::string::npos) << got;
  EXPECT_NE(got.find("false\nturnpike.http.request: url: expected http[s]://host[:port]/path"), std::string::npos) << got;
  EXPECT_NE(got.find("false\nturnpike.http.request: headers: invalid field \"a b\""), std::string::npos) << got;
  EXPECT_NE(got.find("timeout must be a number of seconds > 0"), std::string::npos) << got;
}

TEST_F(HttpClientTest, CallDestroyedMidRequestClosesItsSocket) {
  TestServer server([](const std::string&, int) { return std::string(kHang); });
  load_access("turnpike.http.request{ url = " + quoted(server.url()) + " }\nerror('not reached')");
  {
    asio::io_context io;
    Ref ctx = vm().new_ctx();
    asio::co_spawn(io, vm().call(gen_, 0, Phase::access, Ref(), ctx, nullptr), asio::detached);
    // Run until the server has the request, then drop everything, as a worker going away would.
    for (int i = 0; i < 1000 && server.requests() == 0; ++i) io.run_for(std::chrono::milliseconds(5));
    ASSERT_EQ(server.requests(), 1);
    EXPECT_EQ(vm().live_calls(), 1u);
  }
  EXPECT_TRUE(server.wait_hung_up(1));
  EXPECT_EQ(vm().live_calls(), 0u);
}

TEST_F(HttpClientTest, CancelledCallEndsAndClosesItsSocket) {
  TestServer server([](const std::string&, int) { return std::string(kHang); });
  load_access("turnpike.http.request{ url = " + quoted(server.url()) + " }\nerror('not reached')");
  asio::io_context io;
  asio::cancellation_signal cancel;
  Ref ctx = vm().new_ctx();
  std::optional<CallResult> out;
  asio::co_spawn(io, vm().call(gen_, 0, Phase::access, Ref(), ctx, nullptr),
                 asio::bind_cancellation_slot(cancel.slot(), [&](std::exception_ptr, CallResult r) { out = std::move(r); }));
  for (int i = 0; i < 1000 && server.requests() == 0; ++i) io.run_for(std::chrono::milliseconds(5));
  ASSERT_EQ(server.requests(), 1);
  cancel.emit(asio::cancellation_type::terminal);
  io.run();
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->status, CallStatus::error);
  EXPECT_NE(out->error.find("cancelled"), std::string::npos) << out->error;
  EXPECT_TRUE(server.wait_hung_up(1));
  EXPECT_EQ(vm().live_calls(), 0u);
}

TEST_F(HttpClientTest, WorksWithoutARequest) {
  TestServer server([](const std::string&, int) { return ok_response("timer"); });
  write_plugin("w", "local turnpike = require 'turnpike'\n"
                    "local M = { name = 'w', priority = 1, schema = {} }\n"
                    "function M.init_worker() M.got = turnpike.http.request{ url = " + quoted(server.url()) + " }.body end\n"
                    "return M\n");
  gen_ = load({"w"});
  asio::io_context io;
  std::optional<CallResult> out;
  asio::co_spawn(io, vm().call(gen_, 0, Phase::init_worker, Ref(), Ref(), nullptr),
                 [&](std::exception_ptr, CallResult r) { out = std::move(r); });
  io.run();
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->status, CallStatus::ok) << out->error;
  EXPECT_EQ(eval("return require('w').got"), "timer");
}

}  // namespace
}  // namespace turnpike::lua::test
