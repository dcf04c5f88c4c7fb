// Reading a connection's PROXY protocol header (proxy_accept.h). Runs once per connection on
// `proxy_protocol` listeners, before TLS or HTTP: a peek, a parse of the peeked bytes, and a
// read of exactly the header's length; no buffer from the pool, one coroutine frame.
#include "proxy_accept.h"

#include "downstream_h1.h"

#include <sys/socket.h>

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <spdlog/spdlog.h>

#include "turnpike/common/coarse_clock.h"
#include "turnpike/proxy/proxy_protocol.h"

namespace turnpike::proxy {

namespace {

constexpr auto nothrow = boost::asio::as_tuple(boost::asio::use_awaitable);
// A header split over several TCP segments: the socket stays readable with the first part, so
// we look again after this pause rather than spin (balancers send the header in one write).
constexpr auto kPartialHeaderPause = std::chrono::milliseconds(2);

IpAddress to_ip(const boost::asio::ip::address& a) {
  IpAddress out;
  if (a.is_v4()) {
    out.family = 4;
    const auto b = a.to_v4().to_bytes();
    std::copy(b.begin(), b.end(), out.bytes.begin());
  } else {
    out.family = 6;
    const auto b = a.to_v6().to_bytes();
    std::copy(b.begin(), b.end(), out.bytes.begin());
  }
  return out;
}

// How reading a header ended.
enum class HeaderRead : unsigned char {
  done,     // a valid header, consumed
  closed,   // the peer closed or reset before a whole header
  invalid,  // not a PROXY header, or a malformed one
  timeout,  // proxy_protocol_timeout passed
};

// A connection whose header is being read: on the worker's connection list, so the deadline sweep
// enforces the timeout and a forced stop closes it, like any client connection.
class ProxyHeaderReader final : public ClientConnection {
 public:
  ProxyHeaderReader(DownstreamWorker& worker, tcp::socket socket, std::string listener, std::chrono::milliseconds timeout)
      : worker_(worker), socket_(std::move(socket)), listener_(std::move(listener)) {
    deadline_ = coarse_now() + timeout;
    worker_.add_connection(*this, listener_);
  }
  ~ProxyHeaderReader() override { worker_.connection_closed(*this); }

  void expire() override {
    timed_out_ = true;
    boost::system::error_code ignored;
    socket_.cancel(ignored);
  }
  // Never on the idle list: drain lets the header arrive (or time out), then serves the request.
  void close_if_idle() override {}

  static boost::asio::awaitable<void> run(std::unique_ptr<ProxyHeaderReader> self);

 private:
  boost::asio::awaitable<HeaderRead> read(ProxyHeader& header);

  DownstreamWorker& worker_;
  tcp::socket socket_;
  std::string listener_;
  bool timed_out_ = false;
  std::array<uint8_t, kProxyMaxLength> bytes_;
};

boost::asio::awaitable<HeaderRead> ProxyHeaderReader::read(ProxyHeader& header) {
  const int fd = socket_.native_handle();
  ssize_t last = 0;
  for (;;) {
    const ssize_t n = ::recv(fd, bytes_.data(), bytes_.size(), MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) co_return HeaderRead::closed;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) co_return HeaderRead::closed;
    if (n > 0) {
      const ProxyParse st = parse_proxy_header({bytes_.data(), static_cast<size_t>(n)}, header);
      if (st == ProxyParse::invalid) co_return HeaderRead::invalid;
      if (st == ProxyParse::done) {
        // The same bytes again, now consumed: whatever follows stays in the socket for TLS/HTTP.
        const ssize_t got = ::recv(fd, bytes_.data(), header.length, MSG_DONTWAIT);
        co_return got == static_cast<ssize_t>(header.length) ? HeaderRead::done : HeaderRead::closed;
      }
    }
    if (timed_out_) co_return HeaderRead::timeout;
    if (n > 0 && n == last) {
      boost::asio::steady_timer pause(worker_.io(), kPartialHeaderPause);
      co_await pause.async_wait(nothrow);
    } else if (n < 0) {
      auto [ec] = co_await socket_.async_wait(tcp::socket::wait_read, nothrow);
      if (timed_out_) co_return HeaderRead::timeout;
      if (ec) co_return HeaderRead::closed;
    }
    last = n;
    if (timed_out_) co_return HeaderRead::timeout;
  }
}

boost::asio::awaitable<void> ProxyHeaderReader::run(std::unique_ptr<ProxyHeaderReader> self) {
  ProxyHeader header;
  const HeaderRead result = co_await self->read(header);
  DownstreamWorker& worker = self->worker_;
  auto& counters = worker.counters();
  if (result != HeaderRead::done) {
    if (result == HeaderRead::invalid) {
      counters.proxy_protocol_invalid.inc();
      spdlog::debug("listener {}: closing a connection without a valid PROXY header: {}", self->listener_,
                    header.error);
    } else if (result == HeaderRead::timeout) {
      counters.proxy_protocol_timeouts.inc();
      spdlog::debug("listener {}: closing a connection: no PROXY header in time", self->listener_);
    }
    co_return;  // `self` closes the socket
  }
  std::string client;
  size_t ip_len = 0;
  if (!header.local) {
    client = to_string(header.source);
    ip_len = client.size();
    client.push_back(':');
    client.append(std::to_string(header.source_port));
  }
  tcp::socket socket = std::move(self->socket_);
  const std::string listener = std::move(self->listener_);
  self.reset();  // off the connection list before the served connection joins it
  serve_client(worker, std::move(socket), listener, std::move(client), ip_len);
}

}  // namespace

void read_proxy_header(DownstreamWorker& worker, tcp::socket socket, const std::string& listener) {
  const ListenerRuntime* lr = worker.snapshot()->find_listener(listener);
  boost::system::error_code ec;
  const auto peer = socket.remote_endpoint(ec);
  if (ec || !lr || !contains_any(lr->config->trusted, to_ip(peer.address()))) {
    worker.counters().proxy_protocol_untrusted.inc();
    if (!ec) spdlog::debug("listener {}: closing a connection from {}: not in trusted", listener, peer.address().to_string());
    return;  // the socket closes as it goes out of scope
  }
  auto reader = std::make_unique<ProxyHeaderReader>(worker, std::move(socket), listener,
                                                    lr->config->proxy_protocol_timeout);
  boost::asio::co_spawn(worker.io(), ProxyHeaderReader::run(std::move(reader)), boost::asio::detached);
}

}  // namespace turnpike::proxy
