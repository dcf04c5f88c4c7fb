// The PDK's HTTP client (turnpike.http.request): one HTTP/1.1 exchange per call, run with
// Boost.Asio on the calling coroutine's executor (the worker's io_context), so the worker serves
// other requests while a plugin waits for the answer.
//
// https URLs speak TLS (1.2 or later) through the gateway's own TLS transport, verifying the
// server's certificate against the system's CA store and its name (SNI sent) unless the call
// says ssl_verify = false.
//
// Connections are kept alive and reused per worker: an io_context service (HttpConnectionPool)
// holds the idle ones by scheme, host and port, bounded in number and idle time. It is tied to the
// io_context rather than to the Vm because a socket must not outlive its io_context, and a
// worker can swap its Vm (changed lua settings) while keeping the io_context.
//
// Cancellation: everything an exchange owns lives in its coroutine frame or in a state its
// deadline timer shares; a frame destroyed mid-exchange (the io_context going away) closes its
// socket, and a cancelled exchange (the caller's cancellation slot) ends with
// HttpError::cancelled without touching the connection again.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct lua_State;

namespace turnpike::lua {

// Defaults of turnpike.http.request; the plugin's arguments override them per call.
inline constexpr std::chrono::milliseconds kHttpDefaultTimeout{1000};
inline constexpr size_t kHttpDefaultMaxBody = 1u << 20;

// What an exchange does with the response body. A mirror (mirror.cc) needs only a digest or
// nothing, and then no memory grows with the body and max_body does not apply.
enum class BodySink : uint8_t {
  keep,     // HttpResult::body, up to max_body
  digest,   // HttpResult::body_crc32 / body_bytes only (zlib's CRC-32, turnpike.hash.crc32's)
  discard,  // read and dropped (the connection stays reusable)
};

struct HttpRequest {
  std::string method = "GET";
  std::string host;    // as in the URL (an IPv6 literal keeps its brackets)
  std::string port;    // "80" ("443" for https) when the URL names none
  bool tls = false;    // https://
  bool verify = true;  // https: verify the server's certificate (system CA store) and name
  std::string target;  // origin-form: path and query
  std::vector<std::pair<std::string, std::string>> headers;  // names and values as given
  std::string body;
  bool has_body = false;  // a body was given (even empty): Content-Length is sent
  std::chrono::nanoseconds timeout = kHttpDefaultTimeout;  // connect + send + read, in all
  size_t max_body = kHttpDefaultMaxBody;  // BodySink::keep only
  BodySink body_sink = BodySink::keep;
};

enum class HttpError : uint8_t {
  none,            // a response arrived (any status)
  bad_request,     // the plugin's arguments are wrong (the PDK raises a Lua error)
  timeout,         // the exchange did not end within the request's timeout
  connect_failed,  // no connection (refused, unreachable, unresolvable)
  bad_response,    // the response is not valid HTTP/1.1, or the connection broke mid-response
  body_too_large,  // the response body is larger than max_body
  cancelled,       // the caller cancelled the exchange (the call is going away)
};
std::string_view to_string(HttpError e) noexcept;

struct HttpResult {
  HttpError error = HttpError::none;
  std::string detail;  // what went wrong, for the message the plugin gets
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // lower-case names, in order
  std::string body;
  uint32_t body_crc32 = 0;  // BodySink::digest: CRC-32 of the whole body
  uint64_t body_bytes = 0;  // BodySink::digest and discard: its length
};

// Reads the values turnpike.http.request yielded, from stack index `first` of the Lua thread
// `co` (method, url, {name, value, ...}, body or nil, timeout, max_body, ssl_verify). Nothing in it calls
// into Lua. An invalid request comes back with `error` set (HttpResult's bad_request message).
HttpRequest read_http_request(lua_State* co, int first, std::string& error);

// Pushes what the plugin's turnpike.http.request returns: the response table
// { status =, headers = { name = value }, body = }, or nil and the error message (and true when
// the plugin's arguments were wrong, so the PDK raises it). Returns the number of values.
int push_http_result(lua_State* co, const HttpResult& result);

// One exchange, ended by `deadline` at the latest (a timeout then). The request's own timeout
// is the caller's to fold into `deadline`.
boost::asio::awaitable<HttpResult> http_exchange(const HttpRequest& request,
                                                 std::chrono::steady_clock::time_point deadline);

}  // namespace turnpike::lua
