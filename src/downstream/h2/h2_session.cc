// HTTP/2 client connections, the nghttp2 side: session setup (SETTINGS and options from the
// listener's http2 section) and the callbacks that decode requests field by field, enforce RFC
// 9113 §8 and the attack limits, and wake stream pipelines. A complete header block continues in
// h2_request.cc.
//
// Hot path: header fields are copied once into the stream's arena; no allocation once warm.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstring>

#include "h2_connection.h"
#include "h2_fields.h"
#include "turnpike/common/nghttp2_mem.h"
#include "turnpike/common/strings.h"
#include "turnpike/proxy/snapshot.h"

namespace turnpike::proxy {

using namespace std::string_view_literals;
using namespace h2;  // h2_fields.h

namespace {

// Streams refused past max_concurrent_streams tolerated per second (or max_concurrent_streams
// if higher): a client that opened more before it had our SETTINGS is refused, not cut off.
constexpr uint32_t kRefusedPerSecondFloor = 100;
// The SETTINGS frame carrying MAX_CONCURRENT_STREAMS is the second one sent (start()); the
// client's acknowledgement of it is taken out before nghttp2 sees it (check_frame).
constexpr uint8_t kLimitSettingsAck = 2;

std::string_view sv(const uint8_t* p, size_t n) { return {reinterpret_cast<const char*>(p), n}; }

// n == literal, the length compared first and the bytes by memcmp (std::string_view's operator==
// was an out-of-line call per candidate name, ~300 instructions per request in on_header).
template <size_t N>
bool is(std::string_view n, const char (&literal)[N]) {
  return n.size() == N - 1 && std::memcmp(n.data(), literal, N - 1) == 0;
}

// RFC 9113 §8.2.2: these are connection-specific in HTTP/1.1 and malformed in HTTP/2.
bool connection_specific(std::string_view name) {
  return is(name, "connection") || is(name, "keep-alive") || is(name, "proxy-connection") ||
         is(name, "transfer-encoding") || is(name, "upgrade");
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
  // Eight bytes at a time: a word holds a NUL, CR or LF byte when one of these has a zero byte.
  constexpr uint64_t kOnes = 0x0101010101010101ull, kHighs = 0x8080808080808080ull;
  auto has_zero = [](uint64_t w) { return ((w - kOnes) & ~w & kHighs) != 0; };
  size_t i = 0;
  for (; i + 8 <= value.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, value.data() + i, 8);
    if (has_zero(w) || has_zero(w ^ (kOnes * '\r')) || has_zero(w ^ (kOnes * '\n'))) return false;
  }
  for (; i < value.size(); ++i) {
    const char c = value[i];
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
    if (c.rebuilding_) return 0;  // (h2_park.cc: frames of our own, not the client's)
    if (c.a().now - c.rate_window_start_ >= std::chrono::seconds(1)) {
      c.rate_window_start_ = c.a().now;
      c.resets_in_window_ = 0;
      c.control_in_window_ = 0;
      c.refused_in_window_ = 0;
    }
    switch (hd->type) {
      case NGHTTP2_HEADERS:
        c.continuations_ = 0;
        c.header_stream_ = hd->stream_id;
        c.a().header_deadline = c.a().now + c.limits().header_timeout;
        c.note_deadline(c.a().header_deadline);
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
        c.a().header_deadline = Clock::time_point::max();
        // Empty DATA without END_STREAM does nothing but cost us work.
        if (hd->length == 0 && !(hd->flags & NGHTTP2_FLAG_END_STREAM) && !c.count_control_frame()) {
          return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        break;
      case NGHTTP2_SETTINGS:
      case NGHTTP2_PING:
      case NGHTTP2_PRIORITY:
      case NGHTTP2_WINDOW_UPDATE:
        c.a().header_deadline = Clock::time_point::max();
        if (!c.count_control_frame()) return NGHTTP2_ERR_CALLBACK_FAILURE;
        break;
      default:
        c.a().header_deadline = Clock::time_point::max();
        break;
    }
    return 0;
  }

  static int on_begin_headers(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    H2Connection& c = conn(user);
    if (frame->hd.type != NGHTTP2_HEADERS || c.rebuilding_) return 0;
    const int32_t id = frame->hd.stream_id;
    if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
      // Streams the client reset still hold a pipeline until the upstream answers: without this
      // bound, Rapid Reset below the rate limit would still pile up upstream work.
      if (c.a().pipelines >= 2 * static_cast<size_t>(c.cfg_->max_concurrent_streams)) {
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

  // Fields the session decodes while it is fed frames of our own (h2_park.cc): while its HPACK
  // table is read out, they are the table's entries.
  static int harvest(const uint8_t* name, size_t namelen, const uint8_t* value, size_t valuelen) {
    if (H2Connection::TableReadOut* r = H2Connection::table_read_out_) r->take(sv(name, namelen), sv(value, valuelen));
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
    if (c.rebuilding_) return harvest(name_p, namelen, value_p, valuelen);
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
      if (is(name, ":method")) bit = kMethod, slot = &s->method_;
      else if (is(name, ":scheme")) bit = kScheme, slot = &s->scheme_;
      else if (is(name, ":authority")) bit = kAuthority, slot = &s->authority_;
      else if (is(name, ":path")) bit = kPath, slot = &s->path_;
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
    if (is(name, "te") && !is(value, "trailers")) return malformed(session, c, s, "te other than trailers");
    if (is(name, "host")) {
      if (s->pseudo_seen_ & kHost) return malformed(session, c, s, "duplicate host");
      s->pseudo_seen_ |= kHost;
      s->host_ = store({}, value);
      return 0;  // the gateway writes Host from the authority
    }
    if (is(name, "content-length")) {
      uint64_t n = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || end != value.data() + value.size() || value.empty() ||
          (s->content_length_ >= 0 && static_cast<uint64_t>(s->content_length_) != n) || n > INT64_MAX) {
        return malformed(session, c, s, "invalid content-length");
      }
      s->content_length_ = static_cast<int64_t>(n);
    } else if (is(name, "expect")) {
      if (iequals(value, "100-continue")) s->expect_continue_ = true;
      else s->unknown_expectation_ = true;
    }
    s->fields_.push_back(store(name, value));
    return 0;
  }

  // Fields nghttp2 found invalid (RFC 9113 §8.2.1): never dropped and forwarded, the stream is reset.
  static int on_invalid_header(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name_p,
                               size_t namelen, const uint8_t* value_p, size_t valuelen, uint8_t, void* user) {
    H2Connection& c = conn(user);
    if (c.rebuilding_) return harvest(name_p, namelen, value_p, valuelen);
    H2Stream* s = stream(session, frame->hd.stream_id);
    if (!s) {
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_PROTOCOL_ERROR);
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return malformed(session, c, s, "invalid field");
  }

  static int on_frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    H2Connection& c = conn(user);
    if (c.rebuilding_) return 0;
    switch (frame->hd.type) {
      case NGHTTP2_HEADERS: {
        c.a().header_deadline = Clock::time_point::max();
        H2Stream* s = stream(session, frame->hd.stream_id);
        if (!s) break;
        const bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
        if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
          c.begin_request(s, end);
        } else if (end) {
          s->remote_closed_ = true;
          s->read_event_.signal(c.worker_.io());
        }
        break;
      }
      case NGHTTP2_DATA:
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
          if (H2Stream* s = stream(session, frame->hd.stream_id)) {
            s->remote_closed_ = true;
            s->read_event_.signal(c.worker_.io());
          }
        }
        break;
      case NGHTTP2_RST_STREAM:
        c.worker_.counters().h2_client_resets.inc();
        c.closed_streams_.client_reset(frame->hd.stream_id);
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
    s->read_event_.signal(c.worker_.io());
    return 0;
  }

  static int on_stream_close(nghttp2_session* session, int32_t id, uint32_t error_code, void* user) {
    H2Connection& c = conn(user);
    // A header block nghttp2 or we rejected gets no on_frame_recv: its reset ends the wait.
    if (id == c.header_stream_) c.a().header_deadline = Clock::time_point::max();
    if (H2Stream* s = stream(session, id)) {
      // Closed with no reset from either side: both sent END_STREAM (RFC 9113 §5.1 "closed").
      if (error_code == NGHTTP2_NO_ERROR && !s->reset_submitted_) c.closed_streams_.ended(id);
      nghttp2_session_set_stream_user_data(session, id, nullptr);
      c.stream_closed(s, error_code);
    }
    return 0;
  }

  // RFC 9113 §5.1.2: a stream past the advertised SETTINGS_MAX_CONCURRENT_STREAMS is a stream
  // error, and nghttp2 answers it with RST_STREAM(REFUSED_STREAM) (see check_frame for why it
  // does so even after the client acknowledged the limit). Each refusal still costs a header
  // block's decoding: a client that keeps opening streams past the limit is cut off.
  static int on_invalid_frame_recv(nghttp2_session*, const nghttp2_frame* frame, int lib_error_code, void* user) {
    H2Connection& c = conn(user);
    if (c.rebuilding_) return 0;
    if (frame->hd.type != NGHTTP2_HEADERS || lib_error_code != NGHTTP2_ERR_REFUSED_STREAM) return 0;
    if (++c.refused_in_window_ > std::max(c.cfg_->max_concurrent_streams, kRefusedPerSecondFloor)) {
      c.calm_down(NGHTTP2_PROTOCOL_ERROR, &WorkerCounters::h2_protocol_errors,
                  "streams past max_concurrent_streams, again and again");
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return 0;
  }

  static int on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    H2Connection& c = conn(user);
    if (c.rebuilding_) return 0;  // frames into the void (h2_park.cc)
    if (frame->hd.type == NGHTTP2_RST_STREAM && frame->rst_stream.error_code == NGHTTP2_REFUSED_STREAM) {
      c.worker_.counters().h2_refused_streams.inc();
      spdlog::debug("h2 client {}: stream {} refused", c.remote_, frame->hd.stream_id);
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
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, on_invalid_frame_recv);
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

bool H2Connection::new_session(bool after_preface) {
  // Built once; nghttp2 copies the table into each session.
  static nghttp2_session_callbacks* const callbacks = H2Callbacks::make();
  nghttp2_option* opt = nullptr;
  if (nghttp2_option_new(&opt) != 0) return false;
  // Request-body window is given back only as the pipeline takes bytes: backpressure.
  nghttp2_option_set_no_auto_window_update(opt, 1);
  // Our response headers are encoded without HPACK's dynamic table (RFC 7541 §4.2 lets the
  // encoder use less than the client allows): no table entries live on idle connections.
  nghttp2_option_set_max_deflate_dynamic_table_size(opt, 0);
  nghttp2_option_set_max_settings(opt, 32);
  nghttp2_option_set_max_outbound_ack(opt, std::max<uint32_t>(cfg_->max_control_frames_per_second, 16));
  // nghttp2's own limits are backstops; ours fire first and are counted (h2_session.cc callbacks).
  nghttp2_option_set_stream_reset_rate_limit(opt, 2ull * cfg_->max_resets_per_second, cfg_->max_resets_per_second);
  nghttp2_option_set_max_continuations(opt, cfg_->max_continuations + 1);
  nghttp2_option_set_no_closed_streams(opt, 1);
  if (after_preface) nghttp2_option_set_no_recv_client_magic(opt, 1);
  int rv = nghttp2_session_server_new3(&session_, callbacks, this, opt, nghttp2_small_block_mem());
  nghttp2_option_del(opt);
  if (rv != 0) return false;

  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, cfg_->max_header_list_size},
      {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, cfg_->header_table_size},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, cfg_->initial_window_size},
      {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, cfg_->max_frame_size},
      {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 0},
      {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  // The stream limit goes in a SETTINGS frame of its own, whose acknowledgement nghttp2 never
  // sees (check_frame): see on_invalid_frame_recv.
  const nghttp2_settings_entry limit[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, cfg_->max_concurrent_streams}};
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, limit, std::size(limit));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, receive_window());
  return true;
}

int32_t H2Connection::receive_window() const {
  return static_cast<int32_t>(std::clamp<uint64_t>(uint64_t{cfg_->initial_window_size} * cfg_->max_concurrent_streams,
                                                   cfg_->initial_window_size, 16u << 20));
}

bool H2Connection::start(std::string_view already_read) {
  snapshot_ = worker_.snapshot();
  const ListenerRuntime* lr = snapshot_->find_listener(listener_);
  if (!lr) return false;
  cfg_ = &lr->config->http2;
  if (!new_session(false)) return false;
  update_idle();

  if (!already_read.empty()) {
    a().now = Clock::now();
    receive(already_read.data(), already_read.size());
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Frames looked at before nghttp2 sees them (h2_inbound.h)
// ---------------------------------------------------------------------------------------------

bool H2Connection::receive(const char* data, size_t n) {
  auto feed = [this](const uint8_t* p, size_t len) {
    const ssize_t rv = nghttp2_session_mem_recv(session_, p, len);
    if (rv < 0) {
      on_recv_error(rv);
      return false;
    }
    return true;
  };
  return inbound_.walk(
      reinterpret_cast<const uint8_t*>(data), n, [this](const FrameHead& h) { return note_frame(h); },
      [this](const FrameHead& h) { return check_frame(h); }, feed);
}

// Whether check_frame must see this frame (with nghttp2 up to date on everything before it).
bool H2Connection::note_frame(const FrameHead& h) {
  switch (h.type) {
    case NGHTTP2_SETTINGS:
      return (h.flags & NGHTTP2_FLAG_ACK) && h.length == 0 && settings_acks_ < kLimitSettingsAck;
    case NGHTTP2_HEADERS:
      if (h.stream_id > closed_streams_.highest()) {
        closed_streams_.opened(h.stream_id);  // a new stream: nothing to check
        return false;
      }
      return (h.stream_id & 1) != 0;
    case NGHTTP2_DATA:
      return (h.stream_id & 1) != 0 && h.stream_id <= closed_streams_.highest();
    default:
      return false;
  }
}

FrameVerdict H2Connection::check_frame(const FrameHead& h) {
  if (h.type == NGHTTP2_SETTINGS) {
    // nghttp2 refuses streams past the limit of a SETTINGS frame it has sent (REFUSED_STREAM),
    // but treats them as a connection error once the client acknowledged it; and there is no
    // option to change that. Without this acknowledgement it goes on refusing: the limit is
    // enforced as RFC 9113 §5.1.2 allows, and no stream in flight is lost.
    return ++settings_acks_ == kLimitSettingsAck ? FrameVerdict::drop : FrameVerdict::pass;
  }
  // HEADERS or DATA on a stream id the client used before. Open streams, and trailers, are
  // nghttp2's; a closed stream (forgotten by nghttp2, which would ignore the frame) gets the
  // answer RFC 9113 §5.1 asks for.
  if (goaway_ == H2Goaway::calm || nghttp2_session_find_stream(session_, h.stream_id)) return FrameVerdict::pass;
  switch (closed_streams_.fate(h.stream_id)) {
    case ClosedStreams::Fate::ignore:
      return FrameVerdict::pass;  // nghttp2 drops it (and gives DATA's window back)
    case ClosedStreams::Fate::never_opened:
      // §5.1.1: stream ids only grow; a lower one never used is an unexpected stream id.
      calm_down(NGHTTP2_PROTOCOL_ERROR, &WorkerCounters::h2_protocol_errors, "frame on a skipped stream id");
      return FrameVerdict::stop;
    case ClosedStreams::Fate::ended:
      calm_down(NGHTTP2_STREAM_CLOSED, &WorkerCounters::h2_protocol_errors, "frame on a stream closed by END_STREAM");
      return FrameVerdict::stop;
    case ClosedStreams::Fate::client_reset:
      if (!count_control_frame()) return FrameVerdict::stop;
      nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, h.stream_id, NGHTTP2_STREAM_CLOSED);
      wake();
      return FrameVerdict::pass;
  }
  return FrameVerdict::pass;
}

}  // namespace turnpike::proxy
