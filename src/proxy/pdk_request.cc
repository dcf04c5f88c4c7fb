// The PDK's request functions (include/turnpike/lua/pdk.h) on a RequestContext: what a Lua
// plugin reads and changes through turnpike.request / response / upstream / consumer / log.
//
// Hot path: reads return views into the request (no copy; valid until the next PDK call, as
// pdk.h promises); changes are recorded as edits the serializers apply, their strings kept in
// ctx's arena. Nothing here allocates except the strings a change has to keep.
#include <spdlog/spdlog.h>

#include <charconv>

#include "turnpike/proxy/pipeline.h"
#include "turnpike/proxy/plugins.h"
#include "turnpike/common/strings.h"
#include "turnpike/http/types.h"
#include "turnpike/proxy/request_context.h"
#include "turnpike/proxy/snapshot.h"

namespace turnpike::proxy {

namespace {

RequestContext& req(tp_request* r) { return *reinterpret_cast<RequestContext*>(r); }

const char* out(std::string_view v, size_t* len) {
  *len = v.size();
  return v.data() ? v.data() : "";
}

// The value an edit list leaves for `name`: 1 set to *value, 0 removed, -1 not edited.
int edited_value(const std::vector<HeaderEdit>& edits, std::string_view name, std::string_view* value) {
  int state = -1;
  for (const auto& e : edits) {
    if (!iequals(e.name, name)) continue;
    if (e.op == HeaderEdit::Op::remove) state = 0;
    if (e.op == HeaderEdit::Op::set || (e.op == HeaderEdit::Op::add && state != 1)) {
      state = 1;
      *value = e.value;
    }
  }
  return state;
}

const char* get_header(tp_request* r, const char* name, size_t name_len, size_t* len) {
  RequestContext& ctx = req(r);
  std::string_view n(name, name_len);
  std::string_view v;
  int edited = edited_value(ctx.request_edits, n, &v);
  if (edited == 1) return out(v, len);
  if (edited == 0) return nullptr;
  if (iequals(n, "host") && !ctx.authority.empty()) return out(ctx.authority, len);
  for (const auto& h : ctx.headers) {
    if (iequals(h.name, n)) return out(h.value, len);
  }
  return nullptr;
}

// Fields the proxy owns (http::is_proxy_managed_field) and Host, which has its own setter.
bool is_managed(std::string_view name) { return http::is_proxy_managed_field(name) || iequals(name, "host"); }

int push_edit(RequestContext& ctx, std::vector<HeaderEdit>& edits, HeaderEdit::Op op, std::string_view name,
              const char* value, size_t value_len) {
  if (!http::is_token(name) || is_managed(name)) return -1;
  if (value && !http::is_safe_field_value({value, value_len})) return -1;
  std::string_view n = ctx.keep(std::string(name));
  if (!value) {
    edits.push_back({HeaderEdit::Op::remove, n, {}});
  } else {
    edits.push_back({op, n, ctx.keep(std::string(value, value_len))});
  }
  return 0;
}

int set_header(tp_request* r, const char* name, size_t name_len, const char* value, size_t value_len) {
  RequestContext& ctx = req(r);
  if (ctx.response_started || ctx.upstream_status != 0) return -1;  // already sent upstream
  return push_edit(ctx, ctx.request_edits, HeaderEdit::Op::set, {name, name_len}, value, value_len);
}

const char* method(tp_request* r, size_t* len) { return out(req(r).head.method_name, len); }
const char* path(tp_request* r, size_t* len) { return out(req(r).path, len); }
const char* client_ip(tp_request* r, size_t* len) { return out(req(r).client_ip, len); }

const char* get(tp_request* r, int field, const char* arg, size_t arg_len, size_t* len) {
  RequestContext& ctx = req(r);
  std::string_view a(arg, arg_len);
  switch (field) {
    case TP_HOST: return out(ctx.authority.empty() ? std::string_view(ctx.host) : ctx.authority, len);
    case TP_SCHEME: return out(ctx.scheme, len);
    case TP_QUERY: return ctx.has_query ? out(ctx.query, len) : nullptr;
    case TP_URI: return out(ctx.head.target, len);
    case TP_ROUTE: return ctx.route ? out(ctx.route->config->name, len) : nullptr;
    case TP_ROUTE_PARAM:
      for (size_t i = 0; i < ctx.match.param_count; ++i) {
        if (ctx.match.params[i].name == a) return out(ctx.match.params[i].value, len);
      }
      return nullptr;
    case TP_REQUEST_ID: return ctx.request_id.empty() ? nullptr : out(ctx.request_id, len);
    case TP_CONSUMER:
      if (ctx.consumer < 0) return nullptr;
      return out(ctx.snapshot->config->consumers[static_cast<size_t>(ctx.consumer)].username, len);
    case TP_RESPONSE_HEADER: {
      std::string_view v;
      int edited = edited_value(ctx.response_edits, a, &v);
      if (edited == 1) return out(v, len);
      if (edited == 0) return nullptr;
      for (const auto& h : ctx.response_headers) {
        if (iequals(h.name, a)) return out(h.value, len);
      }
      return nullptr;
    }
    case TP_PROTOCOL: return out(ctx.protocol, len);
    case TP_LISTENER: return ctx.listener ? out(ctx.listener->config->name, len) : nullptr;
    case TP_REMOTE_ADDR: return out(ctx.remote_addr, len);
    case TP_BODY_CHUNK: {
      if (!ctx.body_pieces) return nullptr;
      const auto& pieces = *ctx.body_pieces;
      if (pieces.size() == 1) return out(pieces[0], len);
      ctx.body_scratch.clear();
      for (auto p : pieces) ctx.body_scratch.append(p);
      return out(ctx.body_scratch, len);
    }
    case TP_REQUEST_BODY: return ctx.body_buffered ? out(ctx.body_buffer, len) : nullptr;
    case TP_UPSTREAM_NAME: {
      if (!ctx.route) return nullptr;
      size_t index = ctx.upstream_override != SIZE_MAX ? ctx.upstream_override : ctx.route->upstream_index;
      if (index >= ctx.snapshot->upstreams.size()) return nullptr;  // a route that answers itself
      return out(ctx.snapshot->upstreams[index]->config->name, len);
    }
    case TP_OUTCOME: return ctx.error.empty() ? nullptr : out(ctx.error, len);
    case TP_UPSTREAM_TAG: return ctx.upstream_tag.empty() ? nullptr : out(ctx.upstream_tag, len);
    case TP_UPSTREAM_NODES: {
      if (!ctx.snapshot) return nullptr;
      const size_t index = ctx.snapshot->find_upstream(a);
      if (index == SIZE_MAX) return nullptr;
      const auto& up = *ctx.snapshot->upstreams[index];
      if (up.config->protocol != config::UpstreamProtocol::http1 || up.config->tls.enabled) return nullptr;
      std::string& all = ctx.arena.emplace_front();
      for (const auto& n : up.nodes) all.append(n.address).push_back('\n');
      return out(all, len);
    }
    case TP_HEADERS: {
      std::string& all = ctx.arena.emplace_front();
      for (const auto& h : ctx.headers) {
        all.append(h.name).append(": ").append(h.value).push_back('\n');
      }
      return out(all, len);
    }
    default: return nullptr;
  }
}

int set(tp_request* r, int field, const char* arg, size_t arg_len, const char* value, size_t value_len) {
  RequestContext& ctx = req(r);
  std::string_view a(arg, arg_len);
  std::string_view v = value ? std::string_view(value, value_len) : std::string_view();
  const bool before_upstream = !ctx.response_started && ctx.upstream_status == 0 && ctx.response_status == 0;
  switch (field) {
    case TP_HOST:
      if (!before_upstream || !value || v.empty() || !http::is_safe_field_value(v)) return -1;
      ctx.upstream_host = ctx.keep(std::string(v));
      return 0;
    case TP_QUERY:
      if (!before_upstream || (value && !http::is_safe_field_value(v))) return -1;
      ctx.query = value ? ctx.keep(std::string(v)) : std::string_view();
      ctx.has_query = value && !v.empty();
      return 0;
    case TP_PATH:
      // A path the upstream can take: absolute, no control characters, no spaces.
      if (!before_upstream || !value || v.empty() || v.front() != '/' || !http::is_safe_field_value(v) ||
          v.find(' ') != std::string_view::npos) {
        return -1;
      }
      ctx.upstream_path = ctx.keep(std::string(v));
      return 0;
    case TP_METHOD: {
      if (!before_upstream || !value || v.size() > 32 || !http::is_token(v) || ctx.head.upgrade) return -1;
      const http::Method m = http::parse_method(v);
      const auto framing = [](http::Method x) { return x == http::Method::head || x == http::Method::connect; };
      if (framing(m) || framing(ctx.head.method)) return -1;
      ctx.head.method = m;
      ctx.head.method_name = ctx.keep(std::string(v));
      return 0;
    }
    case TP_REQUEST_ID:
      if (!value || !http::is_safe_field_value(v) || v.size() > 256) return -1;
      ctx.request_id.assign(v);
      return 0;
    case TP_CONSUMER: {
      uint64_t index = 0;
      auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), index);
      if (ec != std::errc() || p != v.data() + v.size() || index >= ctx.snapshot->consumers.size()) return -1;
      ctx.consumer = static_cast<int>(index);
      ctx.consumer_changed = true;
      return 0;
    }
    case TP_RESPONSE_HEADER:
    case TP_RESPONSE_ADD_HEADER:
      if (ctx.response_started) return -1;
      if (field == TP_RESPONSE_ADD_HEADER && !value) return -1;
      return push_edit(ctx, ctx.response_edits,
                       field == TP_RESPONSE_HEADER ? HeaderEdit::Op::set : HeaderEdit::Op::add, a, value, value_len);
    case TP_SKIP_BODY_FILTER: {
      // Before the head is sent (header_filter): the running plugin's bit in body_filters_skipped.
      if (ctx.response_started || ctx.body_pieces) return -1;
      for (size_t i = 0; i < ctx.filters.size() && i < 64; ++i) {
        if (ctx.filters[i]->name() != ctx.current_plugin) continue;
        ctx.body_filters_skipped |= uint64_t{1} << i;
        return 0;
      }
      return -1;
    }
    case TP_BODY_CHUNK: {
      if (!ctx.body_pieces || !value) return -1;
      // An observing body filter (body_filter_mode = "observe") left the Content-Length in place.
      if (ctx.body_filter_index >= ctx.filters.size() || !ctx.filters[ctx.body_filter_index]->changes_body()) {
        return -1;
      }
      if (ctx.body_outputs.size() <= ctx.body_filter_index) ctx.body_outputs.resize(ctx.body_filter_index + 1);
      std::string& stored = ctx.body_outputs[ctx.body_filter_index];
      stored.assign(v);  // v is the plugin's Lua string, not the piece's storage
      ctx.body_pieces->clear();
      if (!stored.empty()) ctx.body_pieces->push_back(stored);
      return 0;
    }
    case TP_RESPONSE_STATUS: {
      auto n = parse_decimal(v);
      if (ctx.response_started || !n || *n < 100 || *n > 599) return -1;
      ctx.response_status = static_cast<int>(*n);
      return 0;
    }
    case TP_REQUEST_BODY: return before_upstream && replace_request_body(ctx, v) ? 0 : -1;
    case TP_UPSTREAM: {
      if (!before_upstream || !value) return -1;
      size_t index = ctx.snapshot->find_upstream(v);
      if (index == SIZE_MAX) return -1;
      ctx.upstream_override = index;
      return 0;
    }
    case TP_UPSTREAM_TAG:
      if (!before_upstream || v.size() > 64) return -1;
      ctx.upstream_tag = v.empty() ? std::string_view() : ctx.keep(std::string(v));
      return 0;
    default: return -1;
  }
}

int64_t get_int(tp_request* r, int field) {
  RequestContext& ctx = req(r);
  switch (field) {
    case TP_STATUS: return ctx.response_status;
    case TP_UPSTREAM_STATUS: return ctx.upstream_status;
    case TP_CONTENT_LENGTH:
      if (ctx.body_replaced) return static_cast<int64_t>(ctx.head.content_length);
      for (const auto& h : ctx.headers) {
        if (iequals(h.name, "content-length")) {
          auto n = parse_decimal(h.value);
          return n ? static_cast<int64_t>(*n) : -1;
        }
      }
      return -1;
    case TP_BODY_BYTES: return static_cast<int64_t>(ctx.response_body_bytes);
    case TP_HAS_BODY:
      if (ctx.body_buffered && ctx.body_done) return ctx.body_buffer.empty() ? 0 : 1;
      if (ctx.head.framing == http::BodyFraming::none) return 0;
      return ctx.head.framing == http::BodyFraming::content_length && ctx.head.content_length == 0 ? 0 : 1;
    case TP_BODY_LAST: return ctx.body_pieces ? (ctx.body_last ? 1 : 0) : -1;
    case TP_SERVER_PORT:
      return ctx.listener && ctx.listener->config->port ? ctx.listener->config->port : -1;
    default: return -1;
  }
}

void log(tp_request* r, int level, const char* msg, size_t len) {
  auto lvl = level <= TP_LOG_DEBUG  ? spdlog::level::debug
             : level == TP_LOG_INFO ? spdlog::level::info
             : level == TP_LOG_WARN ? spdlog::level::warn
                                    : spdlog::level::err;
  if (!spdlog::should_log(lvl)) return;
  std::string_view text(msg, len);
  if (!r) {
    spdlog::log(lvl, "plugin: {}", text);
    return;
  }
  RequestContext& ctx = req(r);
  spdlog::log(lvl, "plugin \"{}\" route \"{}\" request {}: {}", ctx.current_plugin,
              ctx.route ? std::string_view(ctx.route->config->name) : std::string_view("-"),
              ctx.request_id.empty() ? std::string_view("-") : std::string_view(ctx.request_id), text);
}

}  // namespace

boost::asio::awaitable<int64_t> pdk_request_wait(tp_request* r, int what, int64_t arg) {
  RequestContext& ctx = req(r);
  // Only before the request went upstream: from then on the forwarders own the client's body.
  if (what != TP_WAIT_BODY || !ctx.downstream || ctx.response_started || !ctx.upstream_addr.empty()) co_return -1;
  const size_t max = arg > 0 ? static_cast<size_t>(arg) : SIZE_MAX;
  switch (co_await read_request_body(ctx, max)) {
    case BodyRead::whole: co_return 1;
    case BodyRead::partial: co_return 0;
    case BodyRead::failed: break;
  }
  co_return -1;
}

const tp_request_api& pdk_request_api() {
  static const tp_request_api api = [] {
    tp_request_api a{};
    a.get_header = get_header;
    a.set_header = set_header;
    a.method = method;
    a.path = path;
    a.client_ip = client_ip;
    a.get = get;
    a.set = set;
    a.get_int = get_int;
    a.log = log;
    return a;
  }();
  return api;
}

}  // namespace turnpike::proxy
