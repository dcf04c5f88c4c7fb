// A read-readiness wait that costs no system call.
//
// Asio's socket.async_wait() re-arms the descriptor with epoll_ctl(EPOLL_CTL_MOD) on every call:
// it cannot know whether the readiness edge it waits for was already delivered, so it asks the
// kernel to report the current state again. That is one system call per wait, two per proxied
// request (client side and upstream side), which nginx and HAProxy do not pay.
//
// The caller often does know: its last read found the socket empty (EAGAIN, or a short read of a
// stream socket). Any byte arriving after that raises a new edge, which the reactor delivers to a
// queued operation, or records (try_speculative_) when none is queued. The operation below is
// queued through the reactor's speculative path: if an edge was recorded, it completes at once
// (the caller reads, and finds data or waits again); otherwise it is queued with no epoll_ctl.
// Its perform step reports "exhausted" so the reactor forgets the edge it consumed.
//
// Rules for callers (tls::Transport enforces them): use it only when the last read found the
// socket empty, and read until empty again before the next one. Completions may be spurious.
//
// This uses Asio's reactor interface (boost/asio/detail), which is not public API; it is
// compiled only for the Boost version and reactor it was written against (Debian 12's Boost
// 1.81 with epoll) and falls back to socket.async_wait() anywhere else.
#pragma once

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/version.hpp>
#include <utility>

#if BOOST_VERSION == 108100 && defined(BOOST_ASIO_HAS_EPOLL) && !defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT) && \
    !defined(BOOST_ASIO_ENABLE_HANDLER_TRACKING)
#define TURNPIKE_EDGE_WAIT 1
#include <boost/asio/detail/bind_handler.hpp>
#include <boost/asio/detail/fenced_block.hpp>
#include <boost/asio/detail/handler_alloc_helpers.hpp>
#include <boost/asio/detail/handler_cont_helpers.hpp>
#include <boost/asio/detail/handler_work.hpp>
#include <boost/asio/detail/memory.hpp>
#include <boost/asio/detail/op_queue.hpp>
#include <boost/asio/detail/reactor.hpp>
#include <boost/asio/detail/reactor_op.hpp>
#include <boost/asio/detail/socket_ops.hpp>
#else
#define TURNPIKE_EDGE_WAIT 0
#endif

namespace turnpike::tls {

#if TURNPIKE_EDGE_WAIT
namespace edge_detail {

namespace ad = boost::asio::detail;

// The socket's reactor state (descriptor, flags, per-descriptor reactor data) lives in a
// protected member of basic_socket; a pointer to member named through a derived class reaches it.
struct SocketAccess : boost::asio::ip::tcp::socket {
  static auto& impl(boost::asio::ip::tcp::socket& s) { return s.*(&SocketAccess::impl_); }
};

template <class Handler, class IoExecutor>
class EdgeReadOp : public ad::reactor_op {
 public:
  BOOST_ASIO_DEFINE_HANDLER_PTR(EdgeReadOp);

  EdgeReadOp(Handler& handler, const IoExecutor& io_ex, bool* empty)
      : reactor_op(boost::system::error_code(), &EdgeReadOp::do_perform, &EdgeReadOp::do_complete),
        handler_(std::move(handler)),
        work_(handler_, io_ex),
        empty_(empty) {}

 private:
  // Runs when the reactor saw the descriptor readable (or speculatively at start, when it had
  // recorded an edge nobody waited for). Last in the queue: the edge is used up. Other waiters
  // behind it: let them run too.
  static status do_perform(reactor_op* base) {
    auto* o = static_cast<EdgeReadOp*>(base);
    *o->empty_ = false;
    return ad::op_queue_access::next(base) ? done : done_and_exhausted;
  }

  static void do_complete(void* owner, ad::operation* base, const boost::system::error_code&, std::size_t) {
    auto* o = static_cast<EdgeReadOp*>(base);
    ptr p = {ad::addressof(o->handler_), o, o};
    ad::handler_work<Handler, IoExecutor> w(std::move(o->work_));
    // The handler is moved out before the operation's memory is released, and called after.
    ad::binder1<Handler, boost::system::error_code> handler(o->handler_, o->ec_);
    p.h = ad::addressof(handler.handler_);
    p.reset();
    if (owner) {
      ad::fenced_block b(ad::fenced_block::half);
      w.complete(handler, handler.handler_);
    }
  }

  Handler handler_;
  ad::handler_work<Handler, IoExecutor> work_;
  bool* empty_;  // the owner's "last read found the socket empty"
};

// Queues `op` on `socket`'s descriptor as Asio's socket services do: the socket made non-blocking
// first (the operation completes at once with the error when that fails).
inline void start_socket_op(boost::asio::ip::tcp::socket& socket, ad::reactor& reactor, int op_type,
                            ad::reactor_op* op, bool is_continuation, bool speculative) {
  auto& data = SocketAccess::impl(socket).get_implementation();
  if ((data.state_ & ad::socket_ops::non_blocking) == 0 &&
      !ad::socket_ops::set_internal_non_blocking(data.socket_, data.state_, true, op->ec_)) {
    reactor.post_immediate_completion(op, is_continuation);
  } else {
    reactor.start_op(op_type, data.socket_, data.reactor_data_, op, is_continuation, speculative);
  }
}

template <class Handler>
void start_edge_read_wait(boost::asio::ip::tcp::socket& socket, ad::reactor& reactor, bool* empty, Handler& handler) {
  auto& impl = SocketAccess::impl(socket);
  using IoExecutor = std::decay_t<decltype(impl.get_executor())>;
  using Op = EdgeReadOp<Handler, IoExecutor>;
  const bool is_continuation = boost_asio_handler_cont_helpers::is_continuation(handler);
  typename Op::ptr p = {ad::addressof(handler), Op::ptr::allocate(handler), nullptr};
  p.p = new (p.v) Op(handler, impl.get_executor(), empty);
  start_socket_op(socket, reactor, ad::reactor::read_op, p.p, is_continuation, true);
  p.v = p.p = nullptr;
}

}  // namespace edge_detail

using EdgeReactor = boost::asio::detail::reactor;
#else
struct EdgeReactor;
#endif

// The reactor behind `socket`'s io_context (a service lookup: look it up once per socket).
inline EdgeReactor* edge_reactor(boost::asio::ip::tcp::socket& socket) {
#if TURNPIKE_EDGE_WAIT
  return &boost::asio::use_service<EdgeReactor>(edge_detail::SocketAccess::impl(socket).get_service().context());
#else
  (void)socket;
  return nullptr;
#endif
}

// Waits for `socket` to become readable, given that the last read found it empty (*empty is
// true). Clears *empty when the wait uses up a readiness edge: the caller must then read until
// the socket is empty again before it may wait this way again. Completion: void(error_code).
template <class Token>
auto async_wait_read_edge(boost::asio::ip::tcp::socket& socket, EdgeReactor* reactor, bool* empty, Token&& token) {
  return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
      [&socket, reactor, empty](auto handler) {
#if TURNPIKE_EDGE_WAIT
        // Per-operation cancellation needs the reactor's cancellation hook; nothing here uses
        // it, but a handler that asks for it gets the regular wait.
        if (reactor && !boost::asio::get_associated_cancellation_slot(handler).is_connected()) {
          edge_detail::start_edge_read_wait(socket, *reactor, empty, handler);
          return;
        }
#endif
        *empty = false;
        socket.async_wait(boost::asio::ip::tcp::socket::wait_read, std::move(handler));
      },
      token);
}

// A readiness wait for a connection at rest (parked: no coroutine, no buffer), whose operation is
// a member of the connection instead of a block allocated per wait: a parked connection holds
// nothing else, and Asio's wait operation (144 bytes, most of it the executor twice) would cost
// more than this one (88).
//
// Owner provides two static functions: parked_ready(Owner*, error_code), called on the owner's
// io_context when the wait completes (success, or operation_aborted after cancel()/close(), or
// another error), and parked_gone(Owner*), called when the io_context is destroyed with the wait
// pending: it frees the owner, without I/O. One wait at a time; start it again only after it
// completed.
template <class Owner>
class ParkedWait
#if TURNPIKE_EDGE_WAIT
    : public edge_detail::ad::reactor_op
#endif
{
 public:
  enum class Mode : unsigned char {
    now,       // bytes are buffered above the socket: complete at once
    edge,      // the last read found the socket empty: like async_wait_read_edge
    readable,  // like socket.async_wait(wait_read)
    writable,  // like socket.async_wait(wait_write) (a TLS read that needs to write first)
  };

#if TURNPIKE_EDGE_WAIT
  explicit ParkedWait(Owner* owner)
      : reactor_op(boost::system::error_code(), &ParkedWait::do_perform, &ParkedWait::do_complete), owner_(owner) {}
  ~ParkedWait() = default;
  ParkedWait(const ParkedWait&) = delete;
  ParkedWait& operator=(const ParkedWait&) = delete;

  // `*empty`: the owner's "last read found the socket empty", cleared when an edge is used up.
  void start(boost::asio::ip::tcp::socket& socket, EdgeReactor* reactor, Mode mode, bool* empty) {
    namespace ad = edge_detail::ad;
    ec_ = boost::system::error_code();
    empty_ = mode == Mode::edge ? empty : nullptr;
    if (mode == Mode::now) {
      reactor->post_immediate_completion(this, false);
      return;
    }
    edge_detail::start_socket_op(socket, *reactor, mode == Mode::writable ? ad::reactor::write_op : ad::reactor::read_op,
                                 this, false, empty_ != nullptr);
  }

 private:
  // As EdgeReadOp's: an edge wait uses up the edge (unless other waiters are queued behind it); a
  // plain wait is done, as Asio's own.
  static status do_perform(reactor_op* base) {
    auto* o = static_cast<ParkedWait*>(base);
    if (!o->empty_) return done;
    *o->empty_ = false;
    return edge_detail::ad::op_queue_access::next(base) ? done : done_and_exhausted;
  }

  // No memory to release: the operation is the owner's. The owner may be freed by the call.
  static void do_complete(void* scheduler, edge_detail::ad::operation* base, const boost::system::error_code&,
                          std::size_t) {
    auto* o = static_cast<ParkedWait*>(base);
    Owner* owner = o->owner_;
    if (!scheduler) {
      Owner::parked_gone(owner);
      return;
    }
    const boost::system::error_code ec = o->ec_;
    edge_detail::ad::fenced_block b(edge_detail::ad::fenced_block::half);
    Owner::parked_ready(owner, ec);
  }

  Owner* owner_;
  bool* empty_ = nullptr;  // an edge wait: the flag start() was given; a plain one: null
#else
  // Elsewhere: Asio's own wait, whose handler frees the owner if it is destroyed uncalled.
  explicit ParkedWait(Owner* owner) : owner_(owner) {}

  void start(boost::asio::ip::tcp::socket& socket, EdgeReactor*, Mode mode, bool* empty) {
    struct Call {
      Owner* owner;
      explicit Call(Owner* o) : owner(o) {}
      Call(Call&& other) noexcept : owner(std::exchange(other.owner, nullptr)) {}
      ~Call() {
        if (owner) Owner::parked_gone(owner);
      }
      void operator()(boost::system::error_code ec) { Owner::parked_ready(std::exchange(owner, nullptr), ec); }
    };
    if (mode == Mode::now) {
      boost::asio::post(socket.get_executor(), [c = Call(owner_)]() mutable { c({}); });
      return;
    }
    if (mode == Mode::edge) *empty = false;  // as async_wait_read_edge's fallback
    socket.async_wait(mode == Mode::writable ? boost::asio::ip::tcp::socket::wait_write
                                             : boost::asio::ip::tcp::socket::wait_read,
                      Call(owner_));
  }

 private:
  Owner* owner_;
#endif
};

}  // namespace turnpike::tls
