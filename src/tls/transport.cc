// Transport: plain sockets and OpenSSL on the socket's descriptor, behind one non-blocking API.
#include "turnpike/tls/transport.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace turnpike::tls {

namespace {
constexpr auto nothrow = boost::asio::as_tuple(boost::asio::use_awaitable);
using boost::system::error_code;
namespace aerr = boost::asio::error;

// Plaintext gathered for one SSL_write: at most one full TLS record's worth.
constexpr size_t kTlsWriteChunk = 16384;

// Error category for OpenSSL failures: the value is the packed ERR code of the first error queued.
class TlsCategory final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "tls"; }
  std::string message(int ev) const override {
    char buf[256];
    ERR_error_string_n(static_cast<unsigned long>(static_cast<unsigned>(ev)), buf, sizeof buf);
    return buf;
  }
};
const TlsCategory& tls_category() {
  static const TlsCategory c;
  return c;
}

bool would_block(const error_code& ec) { return ec == aerr::would_block || ec == aerr::try_again; }
}  // namespace

// SSL_get_error needs the thread's error queue empty before the call it explains. Emptying it
// unconditionally (ERR_clear_error) costs OpenSSL 3 about 800 instructions, twice per proxied
// HTTPS request; looking first is a fraction of that, and the queue is almost always empty.
namespace {
void clear_stale_errors() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}
}  // namespace

error_code tls_error(int ssl_error) {
  if (ssl_error == SSL_ERROR_SYSCALL) {
    int e = errno;
    if (e == 0) return aerr::eof;
    return error_code(e, boost::system::system_category());
  }
  if (ssl_error == SSL_ERROR_ZERO_RETURN) return aerr::eof;
  unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return aerr::connection_reset;
  // Keep the library and reason (the low 32 bits are enough for ERR_error_string_n).
  return error_code(static_cast<int>(code & 0x7fffffff), tls_category());
}

Transport::Transport(tcp::socket socket) : socket_(std::move(socket)), reactor_(edge_reactor(socket_)) {
  error_code ec;
  socket_.non_blocking(true, ec);
}

Transport::Transport(tcp::socket socket, SSL* ssl)
    : socket_(std::move(socket)), reactor_(edge_reactor(socket_)), ssl_(ssl) {
  error_code ec;
  socket_.non_blocking(true, ec);
  attach_ssl();
}

void Transport::start_tls(SSL* ssl) {
  if (ssl_) SSL_free(ssl_);
  ssl_ = ssl;
  attach_ssl();
}

// OpenSSL reads and writes the socket itself, through one BIO of this method per connection (one
// BIO and its lock, ~0.2 KiB, is what an idle TLS connection saves over a read and a write socket
// BIO). It does what OpenSSL's socket BIO does (bss_sock.c: retry flags, end of stream for
// BIO_eof, errno for SSL_ERROR_SYSCALL) and one thing more: whether the last read emptied the
// socket (a short read, or would-block), which decides whether the next readiness wait can be an
// edge wait; a successful SSL_read alone does not tell.
struct Transport::SocketBio {
  static Transport* self(BIO* b) { return static_cast<Transport*>(BIO_get_data(b)); }

  static int read(BIO* b, char* out, size_t len, size_t* done) {
    Transport* t = self(b);
    BIO_clear_retry_flags(b);
    errno = 0;
    const ssize_t n = ::recv(t->socket_.native_handle(), out, len, 0);
    if (n > 0) {
      t->tls_socket_empty_ = static_cast<size_t>(n) < len;
      *done = static_cast<size_t>(n);
      return 1;
    }
    *done = 0;
    if (n == 0) {
      BIO_set_flags(b, BIO_FLAGS_IN_EOF);
      t->tls_socket_empty_ = false;
    } else {
      const bool retry = retryable(errno);
      if (retry) BIO_set_retry_read(b);
      t->tls_socket_empty_ = retry;
    }
    return 0;
  }

  static int write(BIO* b, const char* in, size_t len, size_t* done) {
    BIO_clear_retry_flags(b);
    errno = 0;
    const ssize_t n = ::send(self(b)->socket_.native_handle(), in, len, MSG_NOSIGNAL);
    if (n >= 0) {
      *done = static_cast<size_t>(n);
      return 1;
    }
    *done = 0;
    if (retryable(errno)) BIO_set_retry_write(b);
    return 0;
  }

  static long ctrl(BIO* b, int cmd, long, void* ptr) {
    switch (cmd) {
      case BIO_CTRL_FLUSH:  // writes are not buffered here
      case BIO_CTRL_DUP:
        return 1;
      case BIO_CTRL_EOF:
        return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0;
      case BIO_C_GET_FD: {
        const int fd = self(b)->socket_.native_handle();
        if (ptr != nullptr) *static_cast<int*>(ptr) = fd;
        return fd;
      }
      default:  // pending byte counts (none), kTLS (not offered), and the rest
        return 0;
    }
  }

  static int create(BIO* b) {
    BIO_set_init(b, 1);
    return 1;
  }

  // What bss_sock.c's BIO_sock_should_retry counts as "try again".
  static bool retryable(int e) {
    return e == EAGAIN || e == EWOULDBLOCK || e == EINTR || e == EINPROGRESS || e == EALREADY || e == ENOTCONN ||
           e == EPROTO;
  }

  // Made once for the process (OpenSSL's method tables are read-only once built).
  static const BIO_METHOD* method() {
    static BIO_METHOD* const m = [] {
      BIO_METHOD* bm = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR, "turnpike socket");
      if (bm == nullptr) return bm;
      BIO_meth_set_read_ex(bm, &read);
      BIO_meth_set_write_ex(bm, &write);
      BIO_meth_set_ctrl(bm, &ctrl);
      BIO_meth_set_create(bm, &create);
      return bm;
    }();
    return m;
  }
};

void Transport::attach_ssl() {
  const BIO_METHOD* m = SocketBio::method();
  BIO* bio = m != nullptr ? BIO_new(m) : nullptr;
  if (bio == nullptr) {
    SSL_set_fd(ssl_, socket_.native_handle());  // out of memory: OpenSSL's socket BIO, no edge waits for reads
    return;
  }
  BIO_set_data(bio, this);
  SSL_set_bio(ssl_, bio, bio);  // one reference for both directions
}

Transport::~Transport() {
  if (ssl_) SSL_free(ssl_);
}

// ---- reads ----

size_t Transport::read_some(void* data, size_t size, error_code& ec) {
  if (ssl_) return tls_read(data, size, ec);
  size_t n = socket_.read_some(boost::asio::buffer(data, size), ec);
  // A stream socket's read returns less than asked only when it emptied the receive queue.
  socket_empty_ = ec ? would_block(ec) : n < size;
  return n;
}

size_t Transport::tls_read(void* data, size_t size, error_code& ec) {
  ec = {};
  read_wants_write_ = false;
  read_starved_ = false;
  socket_empty_ = false;
  tls_socket_empty_ = false;  // unless a socket read below comes back short or would block
  clear_stale_errors();
  size_t got = 0;
  if (SSL_read_ex(ssl_, data, size, &got) == 1) {
    socket_empty_ = tls_socket_empty_;
    return got;
  }
  int err = SSL_get_error(ssl_, 0);
  switch (err) {
    case SSL_ERROR_WANT_READ:
      read_starved_ = true;  // what OpenSSL holds (if anything) is a partial record
      socket_empty_ = true;  // its read from the socket would have blocked
      ec = aerr::would_block;
      return 0;
    case SSL_ERROR_WANT_WRITE:
      read_wants_write_ = true;
      ec = aerr::would_block;
      return 0;
    default:
      ec = tls_error(err);
      return 0;
  }
}

// Decrypted bytes count; so do records OpenSSL read ahead but has not processed yet, unless the
// last read already found them to be an incomplete record (then only the socket can help).
bool Transport::read_buffered() const {
  return ssl_ && (SSL_pending(ssl_) > 0 || (!read_starved_ && SSL_has_pending(ssl_) == 1));
}

boost::asio::awaitable<error_code> Transport::wait_readable() {
  if (read_buffered()) co_return error_code{};
  auto [ec] = co_await async_wait_readable(nothrow);
  co_return ec;
}

Transport::SocketPeek Transport::peek_socket() {
  char byte;
  const ssize_t r = ::recv(socket_.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (r > 0) return SocketPeek::bytes;
  if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    if (errno != EINTR) socket_empty_ = true;
    return SocketPeek::nothing;
  }
  return SocketPeek::closed;  // end of stream, or an error
}

bool Transport::has_input() { return read_buffered() || peek_socket() != SocketPeek::nothing; }

bool Transport::peer_gone() {
  if (!ssl_) return peek_socket() == SocketPeek::closed;
  // SSL_peek processes records into OpenSSL's buffer without handing them over, so a
  // close_notify shows while application data stays for the next SSL_read.
  if (SSL_pending(ssl_) > 0) return false;
  char byte;
  size_t n = 0;
  clear_stale_errors();
  if (SSL_peek_ex(ssl_, &byte, 1, &n) == 1) return false;
  const int err = SSL_get_error(ssl_, 0);
  ERR_clear_error();
  return err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE;
}

// ---- writes ----

size_t Transport::write_some(std::span<const boost::asio::const_buffer> bufs, error_code& ec) {
  if (ssl_) return tls_write(bufs, ec);
  // One buffer (a request head without body, the usual upstream write) goes out with send(2):
  // Asio sends any other sequence with sendmsg(2), whose message header and iovec the kernel
  // copies in and checks first.
  size_t n = bufs.size() == 1 ? socket_.write_some(bufs[0], ec) : socket_.write_some(bufs, ec);
  if (ec && would_block(ec)) {
    ec = {};
    return 0;
  }
  return n;
}

size_t Transport::tls_write(std::span<const boost::asio::const_buffer> bufs, error_code& ec) {
  ec = {};
  write_wants_read_ = false;
  // OpenSSL takes one buffer per call. A large buffer goes as is; smaller ones are gathered into
  // one record-sized chunk. Without partial-write mode SSL_write_ex writes all it is given or
  // reports would-block, and must then be given the same bytes again: we pass exactly the length
  // it saw last time (retry_len_), and the caller's buffers start with the same bytes.
  static thread_local char gather[kTlsWriteChunk];
  size_t written_total = 0;
  size_t i = 0;    // current buffer
  size_t off = 0;  // offset into it
  while (i < bufs.size()) {
    const char* first = static_cast<const char*>(bufs[i].data()) + off;
    size_t first_len = bufs[i].size() - off;
    if (first_len == 0) {
      ++i, off = 0;
      continue;
    }
    const char* data = first;
    size_t len = first_len;
    if (first_len < kTlsWriteChunk && i + 1 < bufs.size()) {
      len = 0;
      size_t j = i, o = off;
      while (j < bufs.size() && len < kTlsWriteChunk) {
        size_t take = std::min(bufs[j].size() - o, kTlsWriteChunk - len);
        std::memcpy(gather + len, static_cast<const char*>(bufs[j].data()) + o, take);
        len += take;
        ++j, o = 0;
      }
      data = gather;
    }
    if (retry_len_ != 0) len = std::min(len, retry_len_);
    clear_stale_errors();
    size_t written = 0;
    if (SSL_write_ex(ssl_, data, len, &written) != 1) {
      int err = SSL_get_error(ssl_, 0);
      if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
        write_wants_read_ = err == SSL_ERROR_WANT_READ;
        retry_len_ = len;
        return written_total;
      }
      ec = tls_error(err);
      return written_total;
    }
    retry_len_ = 0;
    written_total += written;
    // Advance (i, off) past what went.
    size_t n = written;
    while (n > 0 && i < bufs.size()) {
      size_t rest = bufs[i].size() - off;
      if (n < rest) {
        off += n;
        n = 0;
      } else {
        n -= rest;
        ++i, off = 0;
      }
    }
  }
  return written_total;
}

boost::asio::awaitable<error_code> Transport::wait_writable() {
  auto [ec] = co_await socket_.async_wait(write_wants_read_ ? tcp::socket::wait_read : tcp::socket::wait_write,
                                          nothrow);
  co_return ec;
}

boost::asio::awaitable<error_code> Transport::write_all(std::span<boost::asio::const_buffer> bufs) {
  for (;;) {
    error_code ec;
    size_t n = write_some(bufs, ec);
    if (ec) co_return ec;
    size_t left = 0;
    size_t skip = n;
    while (!bufs.empty() && skip >= bufs[0].size()) {
      skip -= bufs[0].size();
      bufs = bufs.subspan(1);
    }
    if (!bufs.empty()) bufs[0] += skip;
    for (const auto& b : bufs) left += b.size();
    if (left == 0) co_return error_code{};
    auto wec = co_await wait_writable();
    if (wec) co_return wec;
  }
}

boost::asio::awaitable<error_code> Transport::write_all(std::string_view bytes) {
  boost::asio::const_buffer b(bytes.data(), bytes.size());
  co_return co_await write_all(std::span<boost::asio::const_buffer>(&b, 1));
}

// ---- handshake and the rest ----

boost::asio::awaitable<error_code> Transport::handshake() {
  if (!ssl_) co_return error_code{};
  for (;;) {
    ERR_clear_error();
    int r = SSL_do_handshake(ssl_);
    if (r == 1) co_return error_code{};
    int err = SSL_get_error(ssl_, r);
    if (err == SSL_ERROR_WANT_READ) {
      auto [ec] = co_await socket_.async_wait(tcp::socket::wait_read, nothrow);
      if (ec) co_return ec;
    } else if (err == SSL_ERROR_WANT_WRITE) {
      auto [ec] = co_await socket_.async_wait(tcp::socket::wait_write, nothrow);
      if (ec) co_return ec;
    } else {
      co_return tls_error(err);
    }
  }
}

std::string_view Transport::alpn() const {
  if (!ssl_) return {};
  const unsigned char* p = nullptr;
  unsigned len = 0;
  SSL_get0_alpn_selected(ssl_, &p, &len);
  return p ? std::string_view(reinterpret_cast<const char*>(p), len) : std::string_view();
}

bool Transport::resumed() const { return ssl_ && SSL_session_reused(ssl_) == 1; }

void Transport::cancel() {
  error_code ignored;
  socket_.cancel(ignored);
}

void Transport::shutdown_send() {
  if (ssl_ && SSL_is_init_finished(ssl_)) {
    ERR_clear_error();
    SSL_shutdown(ssl_);  // queues and tries to send close_notify; never waits
    ERR_clear_error();
  }
  error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_send, ignored);
}

void Transport::close() {
  // A TLS connection closed without close_notify has its session marked not resumable by
  // OpenSSL; send one (best effort, never waits) so tickets stay usable.
  if (ssl_ && SSL_is_init_finished(ssl_) && !(SSL_get_shutdown(ssl_) & SSL_SENT_SHUTDOWN)) {
    ERR_clear_error();
    SSL_shutdown(ssl_);
    ERR_clear_error();
  }
  error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
}

}  // namespace turnpike::tls
