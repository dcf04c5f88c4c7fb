// WakeEvent: a one-shot wake-up for one coroutine on the worker's thread, without a timer (the
// HTTP/2 sides use it to hand control between nghttp2's callbacks and the pipeline).
#pragma once

#include <boost/asio/async_result.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <optional>
#include <type_traits>

namespace turnpike::proxy {

// A one-shot wake-up for a single waiting coroutine, without a timer: wait() parks the coroutine's
// completion handler, signal() posts it (never runs it inline, so nghttp2 callbacks never re-enter
// the pipeline). A signal with nobody waiting does nothing: waiters check their condition first,
// and everything runs on one thread, so no wake-up can be lost in between.
//
// The handler is stored by its concrete type (what use_awaitable makes for a void() signature;
// a static_assert checks it) rather than in an any_completion_handler: no allocation per wait,
// and Boost 1.81's any_completion_handler recursively re-wraps itself when posted.
class WakeEvent {
 public:
  using error_code = boost::system::error_code;
  // co_await event.wait(); then event.result() says why it woke.
  auto wait() {
    return boost::asio::async_initiate<const boost::asio::use_awaitable_t<>&, void()>(
        [this](auto handler) {
          static_assert(std::is_same_v<decltype(handler), Handler>, "use_awaitable's handler type changed");
          handler_.emplace(std::move(handler));
        },
        boost::asio::use_awaitable);
  }
  error_code result() const { return result_; }
  bool waiting() const { return handler_.has_value(); }
  // Resumes the waiter now, on the caller's stack (as co_spawn runs a new coroutine up to its
  // first suspension). Only where re-entering the waiter is safe: see H2Connection::start_pipeline.
  void resume_now(error_code ec = {}) {
    if (handler_) take(ec)();
  }
  void signal(boost::asio::io_context& io, error_code ec = {}) {
    if (handler_) boost::asio::post(io, [h = take(ec)]() mutable { std::move(h)(); });
  }

 private:
  using Handler = boost::asio::detail::awaitable_handler<boost::asio::any_io_executor>;
  // The waiter, removed (with the result it will read).
  Handler take(error_code ec) {
    result_ = ec;
    Handler h = std::move(*handler_);
    handler_.reset();
    return h;
  }
  std::optional<Handler> handler_;
  error_code result_;
};

}  // namespace turnpike::proxy
