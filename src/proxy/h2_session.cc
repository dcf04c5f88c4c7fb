// HTTP/2 client connections, the nghttp2 side: session setup (SETTINGS and options from the
// listener's http2 section), the callbacks that decode requests and enforce RFC 9113 §8 and the
// attack limits, and the translation of a header block into a RequestContext.
//
// Hot path: header fields are copied once into the stream's arena; the context gets views into
// it. Response header lists are built in connection scratch storage that nghttp2 copies on submit.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <spdlog/spdlog.h>

#include <charconv>

#include "h2_connection.h"
#include "headers.h"
#include "pipeline.h"
#include "turnpike/common/strings.h"
#include "turnpike/http/uri.h"
#include "turnpike/proxy/snapshot.h"

namespace turnpike::proxy {

using namespace std::string_view_literals;

namespace {

// H2Stream::pseudo_seen_ bits.
enum : uint8_t { kMethod = 1, kScheme = 2, kAuthority = 4, kPath = 8, kHost = 16 };

// A header block far beyond the advertised limit is an HPACK bomb (a few bytes on the wire that
// decode to megabytes): the connection is cut off instead of answering 431.
constexpr uint64_t kBombFactor = 4;
constexpr int kMalformed = -1;  // fill_context: reset the stream with PROTOCOL_ERROR
constexpr int kRefused = -2;    // fill_context: reset with REFUSED_STREAM (listener gone)

std::string_view sv(const uint8_t* p, size_t n) { return {reinterpret_cast<const char*>(p), n}; }

// RFC 9113 §8.2.2: these are connection-specific in HTTP/1.1 and malformed in HTTP/2.
bool connection_specific(std::string_view name) {
  return name == "connection"sv || name == "keep-alive"sv || name == "proxy-connection"sv ||
         name == "transfer-encoding"sv || name == "upgrade"sv;
}

// RFC 9113 §8.2.1: lower-case names of token characters; values without CR, LF or NUL.
bool valid_name(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    if ((c >= 'A' && c <= 'Z') || c == '\r' || c == '\n' || c == '\0' || c == ':' ||
        static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
      return false;
    }
  }
  return true;
}
bool valid_value(std::string_view value) {
  for (char c : value) {
    if (c == '\r' || c == '\n' || c == '\0') return false;
  }
  return true;
}

}  // namespace

// The nghttp2 callbacks, as static members of a friend so they reach the connection's state.
struct H2Callbacks {
  static H2Connection& conn(void* user) { return *static_cast<H2Connection*>(user); }
  static H2Stream* stream(nghttp2_session* session, int32_t id) {
    return static_cast<H2Stream*>(nghttp2_session_get_stream_user_data(session, id));
  }

  static int on_begin_frame(nghttp2_session*, const nghttp2_frame_hd* hd, void* user) {
    H2Connection& c = conn(user);
    if (c.now_ - c.rate_window_start_ >= std::chrono::seconds(1)) {
      c.rate_window_start_ = c.now_;
      c.resets_in_window_ = 0;
      c.control_in_window_ = 0;
    }
    switch (hd->type) {
      case NGHTTP2_HEADERS:
        c.continuations_ = 0;
        c.header_stream_ = hd->stream_id;
        c.header_deadline_ = c.now_ + c.limits().header_timeout;
        c.note_deadline(c.header_deadline_);
        break;
      case NGHTTP2_CONTINUATION:
        // CVE-2024-28182: an endless header block costs CPU and memory while nothing is
        // answered. nghttp2 has the same limit one frame later, as a backstop.
        if (++c.continuations_ > c.cfg_->max_continuations) {
          c.calm_down(NGHTTP2_ENHANCE_YOUR_CALM, &WorkerCounters::h2_continuation_floods, "CONTINUATION flood");
          return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        break;
      case NGHTTP2_DATA:
        c.header_deadline_ = Clock::time_point::max();
        // Empty DATA without END_STREAM does nothing but cost us work.
        if (hd->length == 0 && !(hd->flags & NGHTTP2_FLAG_END_STREAM) && !c.count_control_frame()) {
          return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        break;
      case NGHTTP2_SETTINGS:
      case NGHTTP2_PING:
      case NGHTTP2_PRIORITY:
      case NGHTTP2_WINDOW_UPDATE:
        c.header_deadline_ = Clock::time_point::max();
        if (!c.count_control_frame()) return NGHTTP2_ERR_CALLBACK_FAILURE;
        break;
      default:
        c.header_deadline_ = Clock::time_point::max();
        break;
    }
    return 0;
  }

  static int on_begin_headers(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    H2Connection& c = conn(user);
    const int32_t id = frame->hd.stream_id;
    if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
      // Streams the client reset still hold a pipeline until the upstream answers: without this
      // bound, Rapid Reset below the rate limit would still pile up upstream work.
      if (c.pipelines_ >= 2 * static_cast<size_t>(c.cfg_->max_concurrent_streams)) {
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
        return 0;  // no stream object: its fields are ignored
      }
      if (c.worker_.draining() && c.goaway_ == H2Goaway::none) c.start_graceful("drain");
      H2Stream* s = c.new_stream(id);
      nghttp2_session_set_stream_user_data(session, id, s);
      return 0;
    }
    if (H2Stream* s = stream(session, id)) {
      s->in_trailers_ = true;  // request trailers: decoded (HPACK state) and dropped
      s->header_list_size_ = 0;
    }
    return 0;
  }

  static int malformed(nghttp2_session* session, H2Connection& c, H2Stream* s, std::string_view why) {
    if (!s->malformed_) {
      s->malformed_ = true;
      c.worker_.counters().h2_malformed.inc();
      spdlog::debug("h2 client {}: stream {}: malformed request: {}", c.remote_, s->id_, why);
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, s->id_, NGHTTP2_PROTOCOL_ERROR);
    }
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }

  static int on_header(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name_p, size_t namelen,
                       const uint8_t* value_p, size_t valuelen, uint8_t, void* user) {
    H2Connection& c = conn(user);
    H2Stream* s = stream(session, frame->hd.stream_id);
    if (!s || s->malformed_) return 0;
    // RFC 9113 §6.5.2 counts 32 bytes of overhead per field.
    s->header_list_size_ += namelen + valuelen + 32;
    const uint64_t limit = c.cfg_->max_header_list_size;
    if (s->header_list_size_ > limit) {
      if (s->header_list_size_ > kBombFactor * limit) {
        c.calm_down(NGHTTP2_ENHANCE_YOUR_CALM, &WorkerCounters::h2_hpack_bombs, "decoded header list bomb");
        return NGHTTP2_ERR_CALLBACK_FAILURE;
      }
      if (!s->too_large_ && !s->in_trailers_) {
        s->too_large_ = true;
        c.worker_.counters().h2_header_lists_too_large.inc();
        spdlog::debug("h2 client {}: stream {}: header list above {} bytes", c.remote_, s->id_, limit);
      }
      return 0;  // stop storing; the request is answered 431 when the block ends
    }
    if (s->too_large_) return 0;
    const std::string_view name = sv(name_p, namelen), value = sv(value_p, valuelen);
    if (!valid_value(value)) return malformed(session, c, s, "CR, LF or NUL in a field value");
    if (s->in_trailers_) return 0;  // request trailers are not forwarded (docs/configuration.md)

    auto store = [s](std::string_view n, std::string_view v) {
      H2Stream::FieldRef f;
      f.name_off = static_cast<uint32_t>(s->arena_.size());
      f.name_len = static_cast<uint32_t>(n.size());
      s->arena_.append(n);
      f.value_off = static_cast<uint32_t>(s->arena_.size());
      f.value_len = static_cast<uint32_t>(v.size());
      s->arena_.append(v);
      return f;
    };
    if (!name.empty() && name[0] == ':') {
      // nghttp2 already refused duplicates, unknown pseudo-headers and pseudo after regular.
      uint8_t bit = 0;
      H2Stream::FieldRef* slot = nullptr;
      if (name == ":method"sv) bit = kMethod, slot = &s->method_;
      else if (name == ":scheme"sv) bit = kScheme, slot = &s->scheme_;
      else if (name == ":authority"sv) bit = kAuthority, slot = &s->authority_;
      else if (name == ":path"sv) bit = kPath, slot = &s->path_;
      else return malformed(session, c, s, "unknown pseudo-header");
      if (s->pseudo_seen_ & bit) return malformed(session, c, s, "duplicate pseudo-header");
      if (!s->fields_.empty() || (s->pseudo_seen_ & kHost)) return malformed(session, c, s, "pseudo-header after a regular field");
      s->pseudo_seen_ |= bit;
      *slot = store({}, value);
      return 0;
    }
    if (!valid_name(name)) return malformed(session, c, s, "invalid field name");
    if (connection_specific(name)) return malformed(session, c, s, "connection-specific field");
    // RFC 9113 §8.2.2: TE may only carry "trailers".
    if (name == "te"sv && value != "trailers"sv) return malformed(session, c, s, "te other than trailers");
    if (name == "host"sv) {
      if (s->pseudo_seen_ & kHost) return malformed(session, c, s, "duplicate host");
      s->pseudo_seen_ |= kHost;
      s->host_ = store({}, value);
      return 0;  // the gateway writes Host from the authority
    }
    if (name == "content-length"sv) {
      uint64_t n = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || end != value.data() + value.size() || value.empty() ||
          (s->content_length_ >= 0 && static_cast<uint64_t>(s->content_length_) != n) || n > INT64_MAX) {
        return malformed(session, c, s, "invalid content-length");
      }
      s->content_length_ = static_cast<int64_t>(n);
    } else if (name == "expect"sv) {
      if (iequals(value, "100-continue")) s->expect_continue_ = true;
      else s->unknown_expectation_ = true;
    }
    s->fields_.push_back(store(name, value));
    return 0;
  }

  // Fields nghttp2 found invalid (RFC 9113 §8.2.1): never dropped and forwarded, the stream is reset.
  static int on_invalid_header(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t*, size_t,
                               const uint8_t*, size_t, uint8_t, void* user) {
    H2Connection& c = conn(user);
    H2Stream* s = stream(session, frame->hd.stream_id);
    if (!s) {
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_PROTOCOL_ERROR);
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return malformed(session, c, s, "invalid field");
  }

  static int on_frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    H2Connection& c = conn(user);
    switch (frame->hd.type) {
      case NGHTTP2_HEADERS: {
        c.header_deadline_ = Clock::time_point::max();
        H2Stream* s = stream(session, frame->hd.stream_id);
        if (!s) break;
        const bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
        if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
          c.begin_request(s, end);
        } else if (end) {
          s->remote_closed_ = true;
          s->event_.signal(c.worker_.io());
        }
        break;
      }
      case NGHTTP2_DATA:
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
          if (H2Stream* s = stream(session, frame->hd.stream_id)) {
            s->remote_closed_ = true;
            s->event_.signal(c.worker_.io());
          }
        }
        break;
      case NGHTTP2_RST_STREAM:
        c.worker_.counters().h2_client_resets.inc();
        // CVE-2023-44487 (Rapid Reset): requests opened and reset at once cost us an upstream
        // request each while never counting against max_concurrent_streams.
        if (++c.resets_in_window_ > c.cfg_->max_resets_per_second) {
          c.calm_down(NGHTTP2_ENHANCE_YOUR_CALM, &WorkerCounters::h2_rapid_resets, "RST_STREAM rate (Rapid Reset)");
          return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        break;
      default:
        break;
    }
    return 0;
  }

  static int on_data_chunk(nghttp2_session* session, uint8_t, int32_t id, const uint8_t* data, size_t len, void* user) {
    H2Connection& c = conn(user);
    H2Stream* s = stream(session, id);
    if (!s || s->closed_ || s->malformed_ || !s->pipeline_running_) {
      nghttp2_session_consume(session, id, len);  // nobody will read it: window back at once
      return 0;
    }
    // Bounded by the stream's window: it reopens only as the pipeline takes the bytes.
    s->body_in_.append(reinterpret_cast<const char*>(data), len);
    s->event_.signal(c.worker_.io());
    return 0;
  }

  static int on_stream_close(nghttp2_session* session, int32_t id, uint32_t error_code, void* user) {
    H2Connection& c = conn(user);
    // A header block nghttp2 or we rejected gets no on_frame_recv: its reset ends the wait.
    if (id == c.header_stream_) c.header_deadline_ = Clock::time_point::max();
    if (H2Stream* s = stream(session, id)) {
      nghttp2_session_set_stream_user_data(session, id, nullptr);
      c.stream_closed(s, error_code);
    }
    return 0;
  }

  static int on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    H2Connection& c = conn(user);
    if (frame->hd.type == NGHTTP2_RST_STREAM && frame->rst_stream.error_code == NGHTTP2_REFUSED_STREAM) {
      c.worker_.counters().h2_refused_streams.inc();
    } else if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR) {
      if (c.calm_code_ == 0) {
        // nghttp2 found a connection error itself (RFC 9113 §5.4.1).
        c.worker_.counters().h2_protocol_errors.inc();
        spdlog::debug("h2 client {}: connection error: GOAWAY {}", c.remote_,
                      nghttp2_http2_strerror(frame->goaway.error_code));
      }
      c.goaway_ = H2Goaway::calm;
    }
    return 0;
  }

  static int on_error(nghttp2_session*, int lib_error_code, const char* msg, size_t len, void* user) {
    spdlog::debug("h2 client {}: nghttp2: {} ({})", conn(user).remote_, std::string_view(msg, len),
                  nghttp2_strerror(lib_error_code));
    return 0;
  }

  static nghttp2_session_callbacks* make() {
    nghttp2_session_callbacks* cbs = nullptr;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, on_begin_frame);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_invalid_header_callback(cbs, on_invalid_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_session_callbacks_set_error_callback2(cbs, on_error);
    return cbs;
  }
};

// ---------------------------------------------------------------------------------------------
// Session setup
// ---------------------------------------------------------------------------------------------

bool H2Connection::start(std::string_view already_read) {
  snapshot_ = worker_.snapshot();
  const ListenerRuntime* lr = snapshot_->find_listener(listener_);
  if (!lr) return false;
  cfg_ = &lr->config->http2;
  // Built once; nghttp2 copies the table into each session.
  static nghttp2_session_callbacks* const callbacks = H2Callbacks::make();

  nghttp2_option* opt = nullptr;
  if (nghttp2_option_new(&opt) != 0) return false;
  // Request-body window is given back only as the pipeline takes bytes: backpressure.
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
  nghttp2_option_set_max_settings(opt, 32);
  nghttp2_option_set_max_outbound_ack(opt, std::max<uint32_t>(cfg_->max_control_frames_per_second, 16));
  // nghttp2's own limits are backstops; ours fire first and are counted (h2_session.cc callbacks).
  nghttp2_option_set_stream_reset_rate_limit(opt, 2ull * cfg_->max_resets_per_second, cfg_->max_resets_per_second);
  nghttp2_option_set_max_continuations(opt, cfg_->max_continuations + 1);
  nghttp2_option_set_no_closed_streams(opt, 1);
  int rv = nghttp2_session_server_new2(&session_, callbacks, this, opt);
  nghttp2_option_del(opt);
  if (rv != 0) return false;

  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, cfg_->max_concurrent_streams},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, cfg_->max_header_list_size},
      {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, cfg_->header_table_size},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, cfg_->initial_window_size},
      {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, cfg_->max_frame_size},
      {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 0},
      {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  // The connection window bounds request-body bytes buffered for all streams together; each
  // stream's is initial_window_size.
  const uint64_t conn_window = std::clamp<uint64_t>(
      uint64_t{cfg_->initial_window_size} * cfg_->max_concurrent_streams, cfg_->initial_window_size, 16u << 20);
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, static_cast<int32_t>(conn_window));
  update_idle();

  if (!already_read.empty()) {
    now_ = Clock::now();
    ssize_t n = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(already_read.data()),
                                         already_read.size());
    if (n < 0) on_recv_error(n);
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// A request: header block → RequestContext → pipeline
// ---------------------------------------------------------------------------------------------

void H2Connection::begin_request(H2Stream* s, bool end_stream) {
  if (s->malformed_ || s->closed_) return;
  if (end_stream) s->remote_closed_ = true;
  auto& counters = worker_.counters();
  RequestContext& ctx = *worker_.acquire_context();
  s->ctx_ = &ctx;
  int status = 0;
  std::string_view code, message;
  if (s->too_large_) {
    status = 431, code = "header_list_too_large", message = "the request header list exceeds the limit";
    ctx.snapshot = s->snapshot_;
    ctx.listener = s->snapshot_->find_listener(listener_);
    ctx.protocol = "HTTP/2.0";
    ctx.remote_addr = remote_;
    ctx.client_ip = std::string_view(remote_).substr(0, ip_len_);
    ctx.start = Clock::now();
  } else if (!fill_context(s, ctx, status, code, message)) {
    if (status == kMalformed || status == kRefused) {
      s->ctx_ = nullptr;
      worker_.release_context(&ctx);
      if (status == kMalformed) {
        s->malformed_ = true;
        counters.h2_malformed.inc();
        spdlog::debug("h2 client {}: stream {}: malformed request: {}", remote_, s->id_, message);
      }
      reset_stream(s, status == kMalformed ? NGHTTP2_PROTOCOL_ERROR : NGHTTP2_REFUSED_STREAM);
      return;
    }
    counters.bad_requests.inc();
  }
  ++requests_;
  counters.requests.inc();
  if (requests_ >= cfg_->max_requests_per_connection && goaway_ == H2Goaway::none) {
    counters.max_requests_reached.inc();
    start_graceful("max_requests_per_connection");
  }
  s->pipeline_running_ = true;
  ++pipelines_;
  idle_deadline_ = Clock::time_point::max();
  boost::asio::co_spawn(worker_.io(), run_stream(s, status, code, message), boost::asio::detached);
}

bool H2Connection::fill_context(H2Stream* s, RequestContext& ctx, int& status, std::string_view& code,
                                std::string_view& message) {
  auto fail = [&](int st, std::string_view c, std::string_view m) {
    status = st, code = c, message = m;
    return false;
  };
  const auto& limits = s->snapshot_->config->limits;
  ctx.snapshot = s->snapshot_;
  ctx.listener = s->snapshot_->find_listener(listener_);
  if (!ctx.listener) return fail(kRefused, "", "listener removed");
  ctx.protocol = "HTTP/2.0";
  ctx.remote_addr = remote_;
  ctx.client_ip = std::string_view(remote_).substr(0, ip_len_);
  ctx.start = Clock::now();

  // ---- RFC 9113 §8.3.1: pseudo-headers (nghttp2 checked presence; these are backstops) ----
  if (!(s->pseudo_seen_ & kMethod)) return fail(kMalformed, "", "missing :method");
  const std::string_view method = s->text(s->method_.value_off, s->method_.value_len);
  const bool connect = method == "CONNECT"sv;
  if (!connect && (!(s->pseudo_seen_ & kPath) || !(s->pseudo_seen_ & kScheme) || s->path_.value_len == 0)) {
    return fail(kMalformed, "", "missing or empty :path or :scheme");
  }
  // :authority wins over Host; both present and different is malformed.
  std::string_view authority;
  if (s->pseudo_seen_ & kAuthority) {
    authority = s->text(s->authority_.value_off, s->authority_.value_len);
    if ((s->pseudo_seen_ & kHost) && s->text(s->host_.value_off, s->host_.value_len) != authority) {
      return fail(kMalformed, "", ":authority and host differ");
    }
  } else if (s->pseudo_seen_ & kHost) {
    authority = s->text(s->host_.value_off, s->host_.value_len);
  }
  if (s->remote_closed_ && s->content_length_ > 0) return fail(kMalformed, "", "content-length without DATA");

  // RFC 9113 §8.2.3: cookie fields may be split; HTTP/1.1 wants them as one, joined by "; ".
  size_t cookies = 0;
  for (const auto& f : s->fields_) cookies += s->text(f.name_off, f.name_len) == "cookie"sv;
  H2Stream::FieldRef joined;
  if (cookies > 1) {
    joined.name_off = static_cast<uint32_t>(s->arena_.size());
    joined.name_len = 6;
    s->arena_.append("cookie"sv);
    joined.value_off = static_cast<uint32_t>(s->arena_.size());
    for (const auto& f : s->fields_) {
      if (s->text(f.name_off, f.name_len) != "cookie"sv) continue;
      if (s->arena_.size() != joined.value_off) s->arena_.append("; "sv);
      s->arena_.append(s->text(f.value_off, f.value_len));
    }
    joined.value_len = static_cast<uint32_t>(s->arena_.size() - joined.value_off);
  }
  // The arena is complete: views into it stay valid for the request's life.
  ctx.headers.clear();
  for (const auto& f : s->fields_) {
    std::string_view name = s->text(f.name_off, f.name_len);
    if (cookies > 1 && name == "cookie"sv) continue;
    ctx.headers.push_back({name, s->text(f.value_off, f.value_len)});
  }
  if (cookies > 1) ctx.headers.push_back({s->text(joined.name_off, 6), s->text(joined.value_off, joined.value_len)});

  ctx.head.method = http::parse_method(method);
  ctx.head.method_name = method;
  ctx.head.version_minor = 1;
  ctx.head.keep_alive = true;
  ctx.head.host = authority;
  ctx.authority = authority;
  ctx.head.expect_continue = s->expect_continue_ && !s->remote_closed_;
  ctx.head.unknown_expectation = s->unknown_expectation_;
  if (s->content_length_ >= 0) {
    ctx.head.framing = http::BodyFraming::content_length;
    ctx.head.content_length = static_cast<uint64_t>(s->content_length_);
  } else if (s->remote_closed_) {
    ctx.head.framing = http::BodyFraming::none;
  } else {
    ctx.head.framing = http::BodyFraming::chunked;  // unknown length: re-chunked for HTTP/1.1 upstreams
  }

  // ---- The checks the HTTP/1.1 side applies (downstream_h1.cc prepare_request) ----
  if (connect) return fail(405, "method_not_allowed", "CONNECT is not supported");
  const std::string_view path = s->text(s->path_.value_off, s->path_.value_len);
  ctx.head.target = path;
  const std::string_view scheme = s->text(s->scheme_.value_off, s->scheme_.value_len);
  if (scheme == "https"sv) ctx.scheme = "https";
  else if (scheme == "http"sv) ctx.scheme = "http";
  else return fail(400, "bad_request", "unsupported :scheme");
  if (ctx.head.unknown_expectation) return fail(417, "expectation_failed", "only 100-continue is supported");
  http::TargetParts parts;
  if (http::split_target(path, parts) != http::TargetForm::origin) {
    return fail(400, "bad_request", "unsupported :path form");
  }
  if (!http::normalize_path(parts.path, {limits.merge_slashes}, ctx.path)) {
    return fail(400, "bad_request", "invalid request path");
  }
  ctx.query = parts.query;
  ctx.has_query = parts.has_query;
  if (!authority.empty() && !http::parse_authority(authority, ctx.host)) {
    return fail(400, "bad_request", "invalid host");
  }
  if (ctx.head.framing == http::BodyFraming::content_length && limits.max_body_size != 0 &&
      ctx.head.content_length > limits.max_body_size) {
    ctx.body_done = false;
    return fail(413, "body_too_large", "request body exceeds the configured limit");
  }
  ctx.body_remaining = ctx.head.framing == http::BodyFraming::content_length ? ctx.head.content_length : 0;
  ctx.chunked.reset();
  ctx.body_done = ctx.head.framing == http::BodyFraming::none ||
                  (ctx.head.framing == http::BodyFraming::content_length && ctx.head.content_length == 0);
  return true;
}

// ---------------------------------------------------------------------------------------------
// Header lists for nghttp2
// ---------------------------------------------------------------------------------------------

namespace {
nghttp2_nv make_nv(std::string_view name, std::string_view value) {
  return {reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
          reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
          NGHTTP2_NV_FLAG_NONE};
}
}  // namespace

std::span<nghttp2_nv> H2Connection::response_nv(RequestContext& ctx, const ResponseOut& head, const char* status) {
  nv_.clear();
  nv_names_.clear();
  // Names are lower-cased into nv_names_ (RFC 9113 §8.2); reserved first so pointers stay put.
  size_t need = 24;
  if (head.headers) {
    for (const auto& h : *head.headers) need += h.name.size();
  }
  for (const auto& e : ctx.response_edits) need += e.name.size();
  if (nv_names_.capacity() < need) nv_names_.reserve(need);
  auto lower = [this](std::string_view name) {
    const size_t at = nv_names_.size();
    for (char ch : name) nv_names_.push_back(ascii_lower(ch));
    return std::string_view(nv_names_.data() + at, name.size());
  };

  nv_.push_back(make_nv(":status"sv, std::string_view(status, 3)));
  if (head.headers) {
    collect_connection_tokens(*head.headers, ctx.connection_tokens);
    for (const auto& h : *head.headers) {
      if (http::is_hop_by_hop(h.name) || named_in(h.name, ctx.connection_tokens)) continue;
      if (iequals(h.name, "content-length") && !head.keep_content_length_header) continue;
      if (!ctx.response_edits.empty() && edited_away(h.name, ctx.response_edits)) continue;
      nv_.push_back(make_nv(lower(h.name), h.value));
    }
  }
  for (const auto& e : ctx.response_edits) {
    if (e.op != HeaderEdit::Op::remove) nv_.push_back(make_nv(lower(e.name), e.value));
  }
  const bool length = head.no_body ? (!head.keep_content_length_header && head.content_length &&
                                      head.status != 204 && head.status != 304)
                                   : head.content_length.has_value();
  if (length) {
    const size_t at = nv_names_.size();
    char digits[24];
    auto [end, ec] = std::to_chars(digits, digits + sizeof(digits), *head.content_length);
    nv_names_.append(digits, end);
    nv_.push_back(make_nv("content-length"sv, std::string_view(nv_names_.data() + at, end - digits)));
  }
  return nv_;
}

std::span<nghttp2_nv> H2Connection::trailer_nv(std::span<const http::Header> trailers) {
  nv_.clear();
  nv_names_.clear();
  size_t need = 0;
  for (const auto& t : trailers) need += t.name.size();
  if (nv_names_.capacity() < need) nv_names_.reserve(need);
  for (const auto& t : trailers) {
    if (t.name.empty() || t.name[0] == ':' || http::is_hop_by_hop(t.name) || iequals(t.name, "content-length")) continue;
    const size_t at = nv_names_.size();
    for (char ch : t.name) nv_names_.push_back(ascii_lower(ch));
    nv_.push_back(make_nv(std::string_view(nv_names_.data() + at, t.name.size()), t.value));
  }
  return nv_;
}

}  // namespace turnpike::proxy
