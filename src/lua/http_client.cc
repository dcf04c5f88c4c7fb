// The PDK's HTTP client: the worker's keepalive pool (an io_context service) and one HTTP/1.1
// exchange over it (RFC 9112), parsed with tp_http's response-head parser and chunked decoder.
//
// Not the request path of the gateway: a plugin's call to a side service (forward-auth). One
// exchange allocates its request bytes, a read buffer and the response it returns.
#include "http_client.h"

#include <sys/socket.h>

#include <cerrno>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <deque>
#include <memory>
#include <optional>

#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <zlib.h>

#include "turnpike/common/strings.h"
#include "turnpike/http/chunked.h"
#include "turnpike/http/parser.h"
#include "turnpike/tls/transport.h"

namespace turnpike::lua {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

std::string_view to_string(HttpError e) noexcept {
  switch (e) {
    case HttpError::none: return "none";
    case HttpError::bad_request: return "bad request";
    case HttpError::timeout: return "timeout";
    case HttpError::connect_failed: return "connect failed";
    case HttpError::bad_response: return "bad response";
    case HttpError::body_too_large: return "body too large";
    case HttpError::cancelled: return "cancelled";
  }
  return "unknown";
}

namespace {

constexpr auto kAsTuple = asio::as_tuple(asio::use_awaitable);

// ---- The worker's idle connections ---------------------------------------------------------

// Bounds of the pool: a plugin talks to a few side services, not to many hosts.
constexpr size_t kMaxIdlePerHost = 8;
constexpr size_t kMaxIdle = 32;
// Shorter than the keepalive timeout of most servers (nginx 75 s, Go 90 s); a server that
// closes earlier (Node's 5 s) is caught by the liveness check in take(), or its close races
// the request and the exchange is retried once on a new connection. Expired connections are
// closed when the pool is next used: a sweep timer would be pending work that keeps a stopping
// worker's io_context running.
constexpr auto kIdleTimeout = std::chrono::seconds(10);

class HttpConnectionPool : public asio::execution_context::service {
 public:
  static asio::execution_context::id id;
  explicit HttpConnectionPool(asio::execution_context& ctx) : service(ctx) {}
  ~HttpConnectionPool() override {
    idle_.clear();
    SSL_CTX_free(tls_);
  }

  // The newest idle connection to `key` that is still open; null when none.
  std::unique_ptr<tls::Transport> take(std::string_view key) {
    close_expired();
    for (size_t i = idle_.size(); i-- > 0;) {
      if (idle_[i].key != key) continue;
      std::unique_ptr<tls::Transport> t = std::move(idle_[i].io);
      idle_.erase(idle_.begin() + static_cast<ptrdiff_t>(i));
      if (still_open(t->socket())) return t;
    }
    return nullptr;
  }

  // A client TLS session for `host`: SNI (names only), and unless `verify` is false the
  // certificate checked against the system's CA store and for `host` (a name or an IP literal).
  // Null when OpenSSL cannot make one.
  SSL* new_tls(const std::string& host, bool verify) {
    if (!tls_) {
      tls_ = SSL_CTX_new(TLS_client_method());
      if (!tls_) return nullptr;
      SSL_CTX_set_min_proto_version(tls_, TLS1_2_VERSION);
      SSL_CTX_set_default_verify_paths(tls_);
      SSL_CTX_set_verify(tls_, SSL_VERIFY_PEER, nullptr);
      static const unsigned char kAlpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
      SSL_CTX_set_alpn_protos(tls_, kAlpn, sizeof(kAlpn));
    }
    SSL* ssl = SSL_new(tls_);
    if (!ssl) return nullptr;
    error_code ec;
    asio::ip::make_address(host, ec);
    const bool literal = !ec;  // an IP address: no SNI (RFC 6066 §3); verified as an address
    if (!literal) SSL_set_tlsext_host_name(ssl, host.c_str());
    if (!verify) {
      SSL_set_verify(ssl, SSL_VERIFY_NONE, nullptr);
    } else if (literal) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str());
    } else {
      SSL_set1_host(ssl, host.c_str());
    }
    SSL_set_connect_state(ssl);
    return ssl;
  }

  // Keeps a connection whose last response ended cleanly, dropping the oldest beyond the bounds.
  void put(std::string_view key, std::unique_ptr<tls::Transport> io) {
    close_expired();
    size_t same = 0;
    for (const Idle& c : idle_) same += c.key == key;
    if (same >= kMaxIdlePerHost) {
      for (size_t i = 0; i < idle_.size(); ++i) {
        if (idle_[i].key == key) {
          idle_.erase(idle_.begin() + static_cast<ptrdiff_t>(i));
          break;
        }
      }
    }
    if (idle_.size() >= kMaxIdle) idle_.pop_front();
    idle_.push_back({std::string(key), std::move(io), Clock::now()});
  }

 private:
  struct Idle {
    std::string key;  // scheme, host and port (https: and whether verified)
    std::unique_ptr<tls::Transport> io;
    Clock::time_point since;
  };

  // An idle connection is usable when the server has neither closed it nor sent anything
  // unasked (a peek that would block).
  static bool still_open(tcp::socket& s) {
    char c;
    ssize_t n = ::recv(s.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }

  void close_expired() {
    const auto now = Clock::now();
    while (!idle_.empty() && idle_.front().since + kIdleTimeout <= now) idle_.pop_front();
  }

  // The io_context is going away: close everything now, while the socket service exists.
  void shutdown() override { idle_.clear(); }

  std::deque<Idle> idle_;  // oldest first
  SSL_CTX* tls_ = nullptr; // made on the first https request
};

asio::execution_context::id HttpConnectionPool::id;

// ---- One exchange ------------------------------------------------------------------------------

// What the deadline timer shares with the exchange: the connection it closes when the time is
// up. Shared, because the timer's handler may already be queued when the exchange ends.
struct Line {
  explicit Line(const asio::any_io_executor& ex) : socket(ex), resolver(ex) {}
  tcp::socket socket;                   // while connecting
  std::unique_ptr<tls::Transport> io;   // once connected (or taken from the pool)
  tcp::resolver resolver;
  bool expired = false;   // the deadline closed the connection
  bool finished = false;  // the exchange is over: the timer must not touch the connection
};

// RFC 9112 §3: request line, Host first, the plugin's fields, our framing.
std::string serialize(const HttpRequest& r) {
  std::string out;
  out.reserve(64 + r.target.size() + r.body.size());
  out.append(r.method).append(" ").append(r.target).append(" HTTP/1.1\r\n");
  bool host = false;
  for (const auto& [name, value] : r.headers) host = host || iequals(name, "host");
  if (!host) {
    out.append("Host: ").append(r.host);
    if (r.port != (r.tls ? "443" : "80")) out.append(":").append(r.port);
    out.append("\r\n");
  }
  for (const auto& [name, value] : r.headers) {
    // The client frames the message and manages the connection itself.
    if (iequals(name, "content-length") || iequals(name, "transfer-encoding") ||
        iequals(name, "connection") || http::is_hop_by_hop(name)) {
      continue;
    }
    out.append(name).append(": ").append(value).append("\r\n");
  }
  if (r.has_body) out.append("Content-Length: ").append(std::to_string(r.body.size())).append("\r\n");
  out.append("\r\n").append(r.body);
  return out;
}

enum class Outcome : uint8_t {
  done,       // a whole response: `result` holds it
  reusable,   // a whole response, and the connection may carry the next request
  retry,      // a reused connection broke before any response byte: try a new one
  failed,     // result.error says why
};

HttpResult failure(HttpError e, std::string detail) {
  HttpResult r;
  r.error = e;
  r.detail = std::move(detail);
  return r;
}

class Exchange {
 public:
  Exchange(const HttpRequest& req, Line& line, HttpResult& result)
      : req_(req), line_(line), result_(result), method_(http::parse_method(req.method)) {}

  asio::awaitable<Outcome> run(std::string_view wire, bool reused) {
    error_code wec = co_await line_.io->write_all(wire);
    if (wec) {
      if (reused && !line_.expired) co_return Outcome::retry;
      co_return fail(HttpError::bad_response, "sending the request failed", wec);
    }
    received_any_ = false;
    Outcome head = co_await read_head();
    if (head != Outcome::done) {
      // RFC 9112 §9.3.1: a server may close an idle connection as our request arrives; only a
      // request that is safe to repeat is sent again.
      if (head == Outcome::retry && !(reused && http::is_idempotent(method_))) {
        co_return fail(HttpError::bad_response, "the connection closed before a response", {});
      }
      co_return head;
    }
    co_return co_await read_body();
  }

 private:
  // Appends what the connection has now to buf_; false (and the result set) when it fails.
  asio::awaitable<bool> read_more() {
    size_t old = buf_.size();
    buf_.resize(old + kReadSize);
    error_code ec;
    size_t n = 0;
    for (;;) {
      n = line_.io->read_some(buf_.data() + old, kReadSize, ec);
      if (ec != asio::error::would_block) break;
      ec = co_await line_.io->wait_readable();
      if (ec) break;
    }
    buf_.resize(old + n);
    if (n > 0) received_any_ = true;
    ec_ = ec;
    co_return !ec;
  }

  Outcome fail(HttpError e, std::string_view what, error_code ec) {
    if (line_.expired) {
      e = HttpError::timeout;  // the deadline closed the connection under the read
      what = {};
    } else if (ec == asio::error::operation_aborted) {
      e = HttpError::cancelled;
    }
    result_ = failure(e, std::string(what));
    if (ec && e == HttpError::bad_response) result_.detail.append(" (").append(ec.message()).append(")");
    return Outcome::failed;
  }

  asio::awaitable<Outcome> read_head() {
    http::ParseState state;
    http::ResponseHead head;
    std::vector<http::Header> fields;
    http::ParseError perr = http::ParseError::none;
    for (;;) {
      auto st = http::parse_response_head(buf_.data(), buf_.size(), limits_, state, method_, head, fields, perr);
      if (st == http::ParseStatus::error) co_return fail(HttpError::bad_response, http::to_string(perr), {});
      if (st == http::ParseStatus::complete) {
        if (head.status == 101) co_return fail(HttpError::bad_response, "unexpected 101 switching protocols", {});
        if (head.status >= 200) break;
        // RFC 9110 §15.2: an interim response; the final one follows.
        buf_.erase(0, head.head_length);
        state = {};
        continue;
      }
      if (!co_await read_more()) {
        if (!received_any_ && ec_ == asio::error::eof && !line_.expired) co_return Outcome::retry;
        co_return fail(HttpError::bad_response, "the connection closed before the response head", ec_);
      }
    }
    result_.status = head.status;
    result_.headers.reserve(fields.size());
    for (const auto& f : fields) result_.headers.emplace_back(to_lower_copy(f.name), std::string(f.value));
    framing_ = head.framing;
    length_ = head.content_length;
    keep_alive_ = head.keep_alive;
    buf_.erase(0, head.head_length);
    co_return Outcome::done;
  }

  asio::awaitable<Outcome> read_body() {
    switch (framing_) {
      case http::BodyFraming::none: break;
      case http::BodyFraming::content_length: {
        if (req_.body_sink == BodySink::keep && length_ > req_.max_body) co_return too_large();
        uint64_t left = length_;
        for (;;) {
          const size_t n = static_cast<size_t>(std::min<uint64_t>(left, buf_.size()));
          take(std::string_view(buf_).substr(0, n));
          buf_.erase(0, n);
          left -= n;
          if (left == 0) break;
          if (!co_await read_more()) co_return fail(HttpError::bad_response, "the connection closed mid-body", ec_);
        }
        break;
      }
      case http::BodyFraming::chunked: {
        http::ChunkedDecoder decoder;
        std::vector<std::string_view> pieces;
        for (;;) {
          pieces.clear();
          size_t used = decoder.feed(buf_, pieces);
          bool fits = true;
          for (std::string_view p : pieces) fits = take(p) && fits;
          buf_.erase(0, used);
          if (decoder.failed()) co_return fail(HttpError::bad_response, decoder.error(), {});
          if (!fits) co_return too_large();
          if (decoder.done()) break;
          if (!co_await read_more()) co_return fail(HttpError::bad_response, "the connection closed mid-body", ec_);
        }
        break;
      }
      case http::BodyFraming::until_close: {
        for (;;) {
          const bool fits = take(buf_);
          buf_.clear();
          if (!fits) co_return too_large();
          if (co_await read_more()) continue;
          if (ec_ == asio::error::eof) break;
          co_return fail(HttpError::bad_response, "the connection broke mid-body", ec_);
        }
        co_return Outcome::done;
      }
    }
    // Bytes after the response were not asked for: the connection's framing is in doubt.
    co_return keep_alive_ && buf_.empty() ? Outcome::reusable : Outcome::done;
  }

  // One piece of the body, as the request's sink wants it. False when a kept body has grown
  // past max_body.
  bool take(std::string_view piece) {
    switch (req_.body_sink) {
      case BodySink::keep:
        result_.body.append(piece);
        return result_.body.size() <= req_.max_body;
      case BodySink::digest:
        result_.body_crc32 = static_cast<uint32_t>(
            ::crc32_z(result_.body_crc32, reinterpret_cast<const Bytef*>(piece.data()), piece.size()));
        break;
      case BodySink::discard: break;
    }
    result_.body_bytes += piece.size();
    return true;
  }

  Outcome too_large() {
    result_ = failure(HttpError::body_too_large, "more than " + std::to_string(req_.max_body) + " bytes");
    return Outcome::failed;
  }

  static constexpr size_t kReadSize = 16384;
  const HttpRequest& req_;
  Line& line_;
  HttpResult& result_;
  http::Method method_;
  http::ParserLimits limits_{};
  std::string buf_;
  error_code ec_;
  bool received_any_ = false;
  http::BodyFraming framing_ = http::BodyFraming::none;
  uint64_t length_ = 0;
  bool keep_alive_ = false;
};

// The TLS handshake on a new https connection, under the exchange's deadline.
asio::awaitable<HttpResult> start_tls(const HttpRequest& req, Line& line, HttpConnectionPool& pool) {
  std::string_view host = req.host;
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  SSL* ssl = pool.new_tls(std::string(host), req.verify);
  if (!ssl) co_return failure(HttpError::connect_failed, "cannot start TLS");
  line.io->start_tls(ssl);
  error_code ec = co_await line.io->handshake();
  if (line.expired) co_return failure(HttpError::timeout, {});
  if (ec == asio::error::operation_aborted) co_return failure(HttpError::cancelled, {});
  if (ec) {
    const long verify = SSL_get_verify_result(ssl);
    std::string why = verify != X509_V_OK ? X509_verify_cert_error_string(verify) : ec.message();
    co_return failure(HttpError::connect_failed, "TLS handshake failed: " + why);
  }
  co_return HttpResult{};
}

// A new connection to the request's host: an IP literal directly, a name through the resolver.
asio::awaitable<HttpResult> connect(const HttpRequest& req, Line& line, HttpConnectionPool& pool) {
  std::string_view host = req.host;
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  auto port = static_cast<uint16_t>(parse_decimal(req.port).value_or(80));
  error_code ec;
  asio::ip::address addr = asio::ip::make_address(host, ec);
  if (!ec) {
    line.socket = tcp::socket(line.socket.get_executor());
    std::tie(ec) = co_await line.socket.async_connect(tcp::endpoint(addr, port), kAsTuple);
  } else {
    auto [rec, found] = co_await line.resolver.async_resolve(std::string(host), req.port, kAsTuple);
    if (rec) {
      if (line.expired) co_return failure(HttpError::timeout, {});
      co_return failure(HttpError::connect_failed, "cannot resolve " + std::string(host) + ": " + rec.message());
    }
    tcp::endpoint ep;
    std::tie(ec, ep) = co_await asio::async_connect(line.socket, found, kAsTuple);
  }
  if (line.expired) co_return failure(HttpError::timeout, {});
  if (ec == asio::error::operation_aborted) co_return failure(HttpError::cancelled, {});
  if (ec) co_return failure(HttpError::connect_failed, ec.message());
  line.socket.set_option(tcp::no_delay(true), ec);
  line.io = std::make_unique<tls::Transport>(std::move(line.socket));
  line.socket = tcp::socket(line.io->socket().get_executor());
  if (req.tls) co_return co_await start_tls(req, line, pool);
  co_return HttpResult{};
}

}  // namespace

asio::awaitable<HttpResult> http_exchange(const HttpRequest& req, Clock::time_point deadline) {
  auto ex = co_await asio::this_coro::executor;
  auto& pool = asio::use_service<HttpConnectionPool>(asio::query(ex, asio::execution::context));
  std::string key = req.tls ? (req.verify ? "https://" : "https-unverified://") : "http://";
  key.append(req.host).append(":").append(req.port);
  const std::string wire = serialize(req);

  auto line = std::make_shared<Line>(ex);
  asio::steady_timer timer(ex, deadline);
  timer.async_wait([line](error_code ec) {
    if (ec || line->finished) return;
    line->expired = true;
    line->resolver.cancel();
    line->socket.close(ec);
    if (line->io) line->io->close();
  });

  HttpResult result;
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::unique_ptr<tls::Transport> idle;
    if (attempt == 0) idle = pool.take(key);
    const bool reused = idle != nullptr;
    if (reused) {
      line->io = std::move(idle);
    } else {
      line->io.reset();
      result = co_await connect(req, *line, pool);
      if (result.error != HttpError::none) break;
    }
    result = HttpResult{};
    Exchange exchange(req, *line, result);
    Outcome out = co_await exchange.run(wire, reused);
    if (out == Outcome::retry) continue;
    if (out == Outcome::reusable && !line->expired) pool.put(key, std::move(line->io));
    break;
  }
  line->finished = true;
  timer.cancel();
  co_return result;
}

}  // namespace turnpike::lua
