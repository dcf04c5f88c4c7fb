// The admin listener (admin.h): accepting, reading one request head, routing it to the server's
// hooks, answering and closing. Main thread only; not on the data path.
#include "admin.h"

#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <array>
#include <chrono>

#include "turnpike/common/strings.h"
#include "turnpike/proxy/readiness.h"

namespace turnpike::proxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
constexpr size_t kMaxHead = 16 << 10;
constexpr auto kReadTimeout = std::chrono::seconds(5);

std::string_view reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 503: return "Service Unavailable";
    default: return "Error";
  }
}

AdminResponse json_error(int status, std::string_view code, std::string_view message) {
  return {status, "application/json", "{\"error\":" + json_string(code) + ",\"message\":" + json_string(message) + "}\n"};
}

// A header field's value from a request head ("" when absent).
std::string_view field(std::string_view head, std::string_view name) {
  size_t pos = head.find("\r\n");
  while (pos != std::string_view::npos && pos + 2 < head.size()) {
    const size_t start = pos + 2;
    const size_t end = head.find("\r\n", start);
    std::string_view line = head.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    const size_t colon = line.find(':');
    if (colon != std::string_view::npos && iequals(line.substr(0, colon), name)) {
      std::string_view v = line.substr(colon + 1);
      while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
      while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
      return v;
    }
    pos = end;
  }
  return {};
}

bool token_matches(std::string_view authorization, const std::string& token) {
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.size() != kBearer.size() + token.size() || !iequals(authorization.substr(0, 7), kBearer)) {
    return false;
  }
  return CRYPTO_memcmp(authorization.data() + kBearer.size(), token.data(), token.size()) == 0;
}

}  // namespace

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          static const char* hex = "0123456789abcdef";
          out += "\\u00";
          out += hex[(c >> 4) & 0xF];
          out += hex[c & 0xF];
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

AdminListener::AdminListener(asio::io_context& io, config::AdminConfig cfg, AdminHooks hooks)
    : io_(io), cfg_(std::move(cfg)), hooks_(std::move(hooks)), acceptor_(io) {}

bool AdminListener::start(std::string& error, int inherited_fd) {
  boost::system::error_code ec;
  const auto addr = asio::ip::make_address(cfg_.address, ec);
  if (ec) {
    error = "invalid address " + cfg_.address;
    return false;
  }
  tcp::endpoint ep(addr, cfg_.port);
  if (inherited_fd >= 0) {
    acceptor_.assign(ep.protocol(), inherited_fd, ec);
  } else {
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(64, ec);
  }
  if (ec) {
    error = "cannot listen on " + cfg_.address + ":" + std::to_string(cfg_.port) + ": " + ec.message();
    acceptor_.close(ec);
    return false;
  }
  const auto local = acceptor_.local_endpoint(ec);
  bound_ = (addr.is_v6() ? "[" + cfg_.address + "]" : cfg_.address) + ":" + std::to_string(local.port());
  asio::co_spawn(io_, accept_loop(), asio::detached);
  return true;
}

void AdminListener::stop() {
  boost::system::error_code ec;
  acceptor_.close(ec);
}

asio::awaitable<void> AdminListener::accept_loop() {
  for (;;) {
    auto [ec, socket] = co_await acceptor_.async_accept(nothrow);
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
    if (ec) {
      asio::steady_timer t(io_, std::chrono::milliseconds(50));  // out of descriptors: back off
      co_await t.async_wait(nothrow);
      continue;
    }
    asio::co_spawn(io_, serve(std::move(socket)), asio::detached);
  }
}

asio::awaitable<void> AdminListener::serve(tcp::socket socket) {
  std::string head;
  char buf[4096];
  asio::steady_timer deadline(io_, kReadTimeout);
  deadline.async_wait([&socket](boost::system::error_code ec) {
    boost::system::error_code ignored;
    if (!ec) socket.close(ignored);  // too slow: the pending read fails
  });
  while (head.find("\r\n\r\n") == std::string::npos) {
    auto [ec, n] = co_await socket.async_read_some(asio::buffer(buf), nothrow);
    if (ec || head.size() + n > kMaxHead) co_return;
    head.append(buf, n);
  }
  deadline.cancel();
  // Request line: METHOD SP target SP version.
  const std::string_view line = std::string_view(head).substr(0, head.find("\r\n"));
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  AdminResponse r;
  if (sp2 == std::string_view::npos) {
    r = json_error(400, "bad_request", "malformed request line");
  } else {
    std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    target = target.substr(0, target.find('?'));
    r = handle(line.substr(0, sp1), target, field(head, "authorization"));
  }
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + std::string(reason(r.status)) +
                    "\r\nContent-Type: " + r.content_type + "\r\nContent-Length: " + std::to_string(r.body.size()) +
                    "\r\nConnection: close\r\n";
  if (r.status == 401) out += "WWW-Authenticate: Bearer\r\n";
  out += "\r\n";
  const std::array<asio::const_buffer, 2> buffers = {asio::buffer(out), asio::buffer(r.body)};
  co_await asio::async_write(socket, buffers, nothrow);
  boost::system::error_code ignored;
  socket.shutdown(tcp::socket::shutdown_send, ignored);
  if (r.body.capacity() >= (64u << 10) && spare_bodies_.size() < 2) {
    r.body.clear();
    spare_bodies_.push_back(std::move(r.body));
  }
}

AdminResponse AdminListener::handle(std::string_view method, std::string_view path, std::string_view authorization) {
  // Probes first: for balancers and orchestrators, never behind the token.
  if (path == "/healthz") return {200, "application/json", "{\"status\":\"alive\"}\n"};
  if (path == "/ready") {
    const Readiness state = readiness().load(std::memory_order_relaxed);
    return {state == Readiness::ready ? 200 : 503, "application/json",
            "{\"status\":" + json_string(to_string(state)) + "}\n"};
  }
  if (!cfg_.token.empty() && !token_matches(authorization, cfg_.token)) {
    return json_error(401, "unauthorized", "this endpoint needs \"Authorization: Bearer <admin.token>\"");
  }
  const bool get = method == "GET" || method == "HEAD";
  const bool post = method == "POST";
  if (path == "/metrics" && cfg_.metrics) {
    if (!get) return json_error(405, "method_not_allowed", "use GET");
    AdminResponse r{200, "text/plain; version=0.0.4; charset=utf-8", {}};
    if (!spare_bodies_.empty()) {
      r.body = std::move(spare_bodies_.back());
      spare_bodies_.pop_back();
    }
    hooks_.metrics(r.body);
    return r;
  }
  if (path == "/status" || path == "/upstreams" || path == "/config") {
    if (!get) return json_error(405, "method_not_allowed", "use GET");
    if (path == "/status") return {200, "application/json", hooks_.status()};
    if (path == "/upstreams") return {200, "application/json", hooks_.upstreams()};
    return {200, "application/json", hooks_.config()};
  }
  if (path == "/reload" || path == "/upgrade" || path == "/maintenance/on" || path == "/maintenance/off") {
    if (!post) return json_error(405, "method_not_allowed", "use POST");
    if (path == "/reload") return hooks_.reload();
    if (path == "/upgrade") return hooks_.upgrade ? hooks_.upgrade() : json_error(404, "not_found", "no upgrades here");
    return hooks_.maintenance(path == "/maintenance/on");
  }
  return json_error(404, "not_found", "no such admin endpoint");
}

}  // namespace turnpike::proxy
