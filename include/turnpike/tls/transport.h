// The byte stream under a connection: a TCP socket, or TLS over one.
//
// TLS runs OpenSSL straight on the socket's descriptor in non-blocking mode, the way the plain
// socket is used: read_some/write_some try the operation now and report "would block", and the
// caller waits for readiness. So the HTTP/1.1 and HTTP/2 connection code is the same for both, a
// complete small write is still one syscall, and no second copy of the bytes is made through a
// BIO pair (what asio::ssl::stream does). OpenSSL's own records are buffered only while a
// connection is busy (SSL_MODE_RELEASE_BUFFERS), so an idle TLS connection stays small.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/system/error_code.hpp>
#include <span>
#include <string_view>
#include <utility>

typedef struct ssl_st SSL;

namespace turnpike::tls {

class Transport {
 public:
  using tcp = boost::asio::ip::tcp;
  using error_code = boost::system::error_code;

  // Cleartext. Puts the socket in non-blocking mode.
  explicit Transport(tcp::socket socket);
  // TLS over `socket`; takes ownership of `ssl` (accept or connect state already set).
  Transport(tcp::socket socket, SSL* ssl);
  ~Transport();
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // Switches a connected plain transport to TLS (client side: after connect, before handshake).
  void start_tls(SSL* ssl);

  tcp::socket& socket() { return socket_; }
  bool is_tls() const { return ssl_ != nullptr; }
  SSL* ssl() const { return ssl_; }

  // Non-blocking read into [data, data+size). Returns the bytes read. Nothing available now:
  // returns 0 with ec = would_block (then wait_readable). End of stream: ec = eof.
  size_t read_some(void* data, size_t size, error_code& ec);
  // Non-blocking write of as much of `bufs` as goes now; 0 with no error when nothing went.
  // TLS: after a partial or zero write, the next call must start with the same bytes (callers
  // that retry with the unwritten rest of the same buffers satisfy this).
  size_t write_some(std::span<const boost::asio::const_buffer> bufs, error_code& ec);
  // Writes all of `bufs` (edits the span's entries while it goes): write_some first, then waits.
  boost::asio::awaitable<error_code> write_all(std::span<boost::asio::const_buffer> bufs);
  boost::asio::awaitable<error_code> write_all(std::string_view bytes);

  // Readiness. read_some can make progress without touching the socket when TLS holds decrypted
  // bytes already (read_buffered); wait_readable then completes at once.
  bool read_buffered() const;
  boost::asio::awaitable<error_code> wait_readable();
  // What a readiness wait must wait for (TLS: a read may need the socket writable). Hot paths
  // call `if (!read_buffered()) co_await socket().async_wait(read_wait_type(), ...)` themselves:
  // one coroutine frame fewer per wait than wait_readable().
  tcp::socket::wait_type read_wait_type() const {
    return read_wants_write_ ? tcp::socket::wait_write : tcp::socket::wait_read;
  }
  boost::asio::awaitable<error_code> wait_writable();
  // Callback form for connections parked without a coroutine: handler(error_code).
  template <class Handler>
  void async_wait_readable(Handler&& handler) {
    if (read_buffered()) {
      boost::asio::post(socket_.get_executor(), [h = std::forward<Handler>(handler)]() mutable { h(error_code{}); });
      return;
    }
    socket_.async_wait(read_wants_write_ ? tcp::socket::wait_write : tcp::socket::wait_read,
                       std::forward<Handler>(handler));
  }

  // TLS: runs the handshake (server or client, as `ssl` was set up). Plain: no-op. A timeout is
  // the caller's: cancel() makes the pending wait fail.
  boost::asio::awaitable<error_code> handshake();
  // The protocol ALPN picked ("h2", "http/1.1"), or empty.
  std::string_view alpn() const;
  // TLS: whether this connection resumed a session.
  bool resumed() const;

  // Makes the pending wait (if any) complete with operation_aborted.
  void cancel();
  // Ends our sending side: TLS close_notify (best effort, never waits), then a TCP half-close.
  void shutdown_send();
  void close();

 private:
  size_t tls_read(void* data, size_t size, error_code& ec);
  size_t tls_write(std::span<const boost::asio::const_buffer> bufs, error_code& ec);

  tcp::socket socket_;
  SSL* ssl_ = nullptr;
  bool read_wants_write_ = false;  // TLS: the last SSL_read needs the socket writable
  bool read_starved_ = false;      // TLS: the last SSL_read needed more bytes from the socket
  bool write_wants_read_ = false;  // TLS: the last SSL_write needs the socket readable
  size_t retry_len_ = 0;           // TLS: length of a write OpenSSL must be given again
};

// Maps an OpenSSL failure (after SSL_get_error) to an error_code in a category that prints the
// library's reason.
boost::system::error_code tls_error(int ssl_error);

}  // namespace turnpike::tls
