// HTTP/2 client connections, requests: a complete header block becomes a RequestContext (RFC
// 9113 §8.3 pseudo-headers, §8.2.3 cookies, then the same checks as HTTP/1.1 requests) and starts
// its pipeline; response and trailer fields become nghttp2 header lists.
//
// Hot path: the context gets views into the stream's arena; header lists are built in
// connection scratch storage that nghttp2 copies on submit. Nothing here allocates once warm.
#include <spdlog/spdlog.h>

#include <charconv>

#include "h2_connection.h"
#include "h2_fields.h"
#include "turnpike/proxy/headers.h"
#include "turnpike/proxy/pipeline.h"
#include "turnpike/common/strings.h"
#include "turnpike/http/uri.h"
#include "turnpike/proxy/snapshot.h"

namespace turnpike::proxy {

using namespace std::string_view_literals;
using namespace h2;  // h2_fields.h

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
    ctx.tls = transport_->ssl();
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
  counters.h2_streams.inc();
  if (requests_ >= cfg_->max_requests_per_connection && goaway_ == H2Goaway::none) {
    counters.max_requests_reached.inc();
    start_graceful("max_requests_per_connection");
  }
  start_pipeline(s, status, code, message);
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
  ctx.tls = transport_->ssl();
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

// Appends `name` lower-cased to `out` (capacity reserved by the caller, so earlier views into it
// stay valid) and returns a view of the copy.
std::string_view append_lower(std::string& out, std::string_view name) {
  const size_t at = out.size();
  out.resize(at + name.size());
  char* dst = out.data() + at;
  for (size_t i = 0; i < name.size(); ++i) dst[i] = ascii_lower(name[i]);
  return std::string_view(dst, name.size());
}
}  // namespace

thread_local std::vector<nghttp2_nv> H2Connection::nv_;
thread_local std::string H2Connection::nv_names_;

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

  nv_.push_back(make_nv(":status"sv, std::string_view(status, 3)));
  for_each_response_field(ctx, head, [this](std::string_view name, std::string_view value) {
    nv_.push_back(make_nv(append_lower(nv_names_, name), value));
  });
  for (const auto& e : ctx.response_edits) {
    if (e.op != HeaderEdit::Op::remove) nv_.push_back(make_nv(append_lower(nv_names_, e.name), e.value));
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
    nv_.push_back(make_nv(append_lower(nv_names_, t.name), t.value));
  }
  return nv_;
}

}  // namespace turnpike::proxy
