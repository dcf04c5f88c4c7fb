// The access log: one line per request, text or JSON (see access_format.h).
//
// Hot path: write_access() runs on a worker thread for every request. It takes no lock: the
// installed logger is found through a thread-local copy checked against an atomic generation,
// the line is built in a stack buffer and queued to the logging thread.
#include <spdlog/logger.h>

#include <atomic>
#include <ctime>
#include <mutex>

#include "access_format.h"
#include "turnpike/common/ip_network.h"

namespace turnpike::log {

namespace detail {

namespace {

struct AccessLog {
  std::shared_ptr<spdlog::logger> logger;
  bool json = false;
  std::vector<config::AccessField> fields;  // empty: the default line
};

// Publication of the installed AccessLog without a lock on the per-request path: installing
// bumps g_generation under g_mutex; each worker keeps a thread-local copy and only takes the
// mutex (once per reload) when the generation it copied at has changed.
std::atomic<bool> g_enabled{false};
std::mutex g_mutex;
std::shared_ptr<const AccessLog> g_installed;  // guarded by g_mutex
std::atomic<uint64_t> g_generation{1};

// A worker that logs nothing after a reload keeps the previous logger (and its file) until its
// next line or its exit; that costs one open file, never a lost line.
const AccessLog* current_access_log() {
  thread_local uint64_t seen_generation = 0;
  thread_local std::shared_ptr<const AccessLog> cached;
  if (g_generation.load(std::memory_order_acquire) != seen_generation) {
    std::lock_guard lock(g_mutex);
    cached = g_installed;
    seen_generation = g_generation.load(std::memory_order_relaxed);
  }
  return cached.get();
}

constexpr char kHex[] = "0123456789abcdef";

void append(fmt::memory_buffer& out, std::string_view s) { out.append(s.data(), s.data() + s.size()); }

void append_hex_escape(fmt::memory_buffer& out, const char* prefix, unsigned char u) {
  append(out, prefix);
  out.push_back(kHex[u >> 4]);
  out.push_back(kHex[u & 15]);
}

}  // namespace

// Text fields: printable ASCII passes, everything else (and the delimiters '"' and '\', and
// the space in unquoted fields) becomes \xHH.
void append_text(fmt::memory_buffer& out, std::string_view s, bool quoted) {
  if (s.empty()) {
    out.push_back('-');
    return;
  }
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    bool plain = u > 0x20 && u < 0x7f && c != '"' && c != '\\';
    if (plain || (quoted && c == ' ')) {
      out.push_back(c);
    } else {
      append_hex_escape(out, "\\x", u);
    }
  }
}

// Seconds with millisecond precision: "0.001".
void append_seconds(fmt::memory_buffer& out, uint64_t us) {
  fmt::format_to(std::back_inserter(out), "{}.{:03}", us / 1'000'000, (us / 1000) % 1000);
}

namespace {

// Length of the valid UTF-8 sequence at the start of `s` (RFC 3629 §4: no overlong forms, no
// surrogates, nothing above U+10FFFF), or 0 when it is not one.
size_t utf8_sequence(std::string_view s) {
  auto b = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  auto cont = [&](size_t i) { return i < s.size() && (b(i) & 0xC0) == 0x80; };
  unsigned char c = b(0);
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && b(1) < 0xA0) return 0;  // overlong
    if (c == 0xED && b(1) > 0x9F) return 0;  // UTF-16 surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && b(1) < 0x90) return 0;  // overlong
    if (c == 0xF4 && b(1) > 0x8F) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

// The record's upstream addresses, or their statuses, joined by `sep` (nginx's $upstream_addr
// and $upstream_status). Without a list of tries, the one address and status of the record.
// A status of 0 (none) prints as "-" between others, and as nothing alone.
void append_upstream_addrs(const AccessRecord& r, std::string_view sep, fmt::memory_buffer& out) {
  if (r.upstream_tries.empty()) {
    append(out, r.upstream_addr);
    return;
  }
  for (size_t i = 0; i < r.upstream_tries.size(); ++i) {
    if (i > 0) append(out, sep);
    append(out, r.upstream_tries[i].addr);
  }
}

void append_upstream_statuses(const AccessRecord& r, std::string_view sep, fmt::memory_buffer& out) {
  if (r.upstream_tries.empty()) {
    if (r.upstream_status > 0) fmt::format_to(std::back_inserter(out), "{}", r.upstream_status);
    return;
  }
  for (size_t i = 0; i < r.upstream_tries.size(); ++i) {
    if (i > 0) append(out, sep);
    if (r.upstream_tries[i].status > 0) {
      fmt::format_to(std::back_inserter(out), "{}", r.upstream_tries[i].status);
    } else {
      out.push_back('-');
    }
  }
}

}  // namespace

// remote_addr "ip:port" → ip and port. The connection's text always ends with the port, so it
// splits at the last colon when what precedes is an IP address; `real_ip` gives an address
// without a port, which stays whole (an IPv6 one whose last group reads as a port and whose
// rest is an address, e.g. 2001:db8::1:443, is taken for ip:port).
void split_client(std::string_view remote, std::string_view& ip, std::string_view& port) {
  ip = remote;
  port = {};
  if (remote.size() >= 2 && remote.front() == '[' && remote.back() == ']') {
    ip = remote.substr(1, remote.size() - 2);
    return;
  }
  const size_t colon = remote.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == remote.size()) return;
  for (char c : remote.substr(colon + 1)) {
    if (c < '0' || c > '9') return;
  }
  if (!parse_ip(remote.substr(0, colon))) return;
  ip = remote.substr(0, colon);
  port = remote.substr(colon + 1);
}

void append_iso_time(std::chrono::system_clock::time_point t, fmt::memory_buffer& out) {
  using namespace std::chrono;
  auto ms_total = duration_cast<milliseconds>(t.time_since_epoch()).count();
  auto secs = static_cast<std::time_t>(ms_total / 1000);
  auto ms = static_cast<int>(ms_total % 1000);
  if (ms < 0) {  // before 1970: floor, not truncate
    ms += 1000;
    secs -= 1;
  }
  // gmtime_r per line would cost more than the rest of the line; the second rarely changes.
  thread_local std::time_t cached_secs = -1;
  thread_local char cached[32];
  thread_local size_t cached_len = 0;
  if (secs != cached_secs) {
    std::tm tm{};
    gmtime_r(&secs, &tm);
    cached_len = std::strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S", &tm);
    cached_secs = secs;
  }
  out.append(cached, cached + cached_len);
  fmt::format_to(std::back_inserter(out), ".{:03}Z", ms);
}

void append_json_string(std::string_view s, fmt::memory_buffer& out) {
  out.push_back('"');
  size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    auto u = static_cast<unsigned char>(c);
    if (u >= 0x80) {
      size_t n = utf8_sequence(s.substr(i));
      if (n == 0) {
        append_hex_escape(out, "\\u00", u);
        ++i;
      } else {
        append(out, s.substr(i, n));
        i += n;
      }
      continue;
    }
    switch (c) {
      case '"': append(out, "\\\""); break;
      case '\\': append(out, "\\\\"); break;
      case '\n': append(out, "\\n"); break;
      case '\r': append(out, "\\r"); break;
      case '\t': append(out, "\\t"); break;
      case '\b': append(out, "\\b"); break;
      case '\f': append(out, "\\f"); break;
      default:
        if (u < 0x20 || u == 0x7f) {
          append_hex_escape(out, "\\u00", u);
        } else {
          out.push_back(c);
        }
    }
    ++i;
  }
  out.push_back('"');
}

void format_access_text(const AccessRecord& r, fmt::memory_buffer& out) {
  append_text(out, r.remote_addr, false);
  append(out, " - [");
  append_iso_time(r.start, out);
  append(out, "] \"");
  if (r.method.empty() && r.target.empty() && r.protocol.empty()) {
    out.push_back('-');
  } else {
    append_text(out, r.method, true);
    out.push_back(' ');
    append_text(out, r.target, true);
    out.push_back(' ');
    append_text(out, r.protocol, true);
  }
  fmt::format_to(std::back_inserter(out), "\" {} {} \"", r.status, r.response_bytes);
  append_text(out, r.referer, true);
  append(out, "\" \"");
  append_text(out, r.user_agent, true);
  append(out, "\" rt=");
  append_seconds(out, r.duration_us);
  append(out, " route=");
  append_text(out, r.route, false);
  // Several tries are listed comma-separated without spaces: fields here end at a space.
  fmt::memory_buffer list;
  append(out, " upstream=");
  append_upstream_addrs(r, ",", list);
  append_text(out, std::string_view(list.data(), list.size()), false);
  append(out, " ustatus=");
  list.clear();
  append_upstream_statuses(r, ",", list);
  append_text(out, std::string_view(list.data(), list.size()), false);
  append(out, " urt=");
  if (!r.upstream_addr.empty() || !r.upstream_tries.empty()) {
    append_seconds(out, r.upstream_duration_us);
  } else {
    out.push_back('-');
  }
  append(out, " err=");
  append_text(out, r.error, false);
  // Set by plugins; left out when unset, so lines without plugins keep their shape.
  if (!r.consumer.empty()) {
    append(out, " consumer=");
    append_text(out, r.consumer, false);
  }
  if (!r.request_id.empty()) {
    append(out, " rid=");
    append_text(out, r.request_id, false);
  }
}

void format_access_json(const AccessRecord& r, fmt::memory_buffer& out) {
  auto str = [&](std::string_view key, std::string_view value) {
    append(out, key);
    append_json_string(value, out);
  };
  auto num = [&](std::string_view key, uint64_t value) {
    append(out, key);
    fmt::format_to(std::back_inserter(out), "{}", value);
  };
  append(out, "{\"time\":\"");
  append_iso_time(r.start, out);
  out.push_back('"');
  str(",\"remote_addr\":", r.remote_addr);
  std::string_view client_ip, client_port;
  split_client(r.remote_addr, client_ip, client_port);
  str(",\"client_ip\":", client_ip);
  if (!client_port.empty()) {
    append(out, ",\"client_port\":");
    append(out, client_port);
  }
  str(",\"method\":", r.method);
  str(",\"target\":", r.target);
  str(",\"protocol\":", r.protocol);
  str(",\"host\":", r.host);
  num(",\"status\":", static_cast<uint64_t>(r.status < 0 ? 0 : r.status));
  num(",\"request_bytes\":", r.request_bytes);
  num(",\"response_bytes\":", r.response_bytes);
  num(",\"duration_us\":", r.duration_us);
  str(",\"route\":", r.route);
  fmt::memory_buffer list;
  append_upstream_addrs(r, ", ", list);
  str(",\"upstream_addr\":", std::string_view(list.data(), list.size()));
  num(",\"upstream_status\":", static_cast<uint64_t>(r.upstream_status < 0 ? 0 : r.upstream_status));
  list.clear();
  append_upstream_statuses(r, ", ", list);
  str(",\"upstream_statuses\":", std::string_view(list.data(), list.size()));
  num(",\"upstream_duration_us\":", r.upstream_duration_us);
  str(",\"user_agent\":", r.user_agent);
  str(",\"referer\":", r.referer);
  str(",\"error\":", r.error);
  if (!r.consumer.empty()) str(",\"consumer\":", r.consumer);
  if (!r.request_id.empty()) str(",\"request_id\":", r.request_id);
  out.push_back('}');
}

void install_access_log(std::shared_ptr<spdlog::logger> logger, bool json, std::vector<config::AccessField> fields) {
  std::shared_ptr<const AccessLog> old;  // released outside the lock
  {
    std::lock_guard lock(g_mutex);
    old = std::move(g_installed);
    if (logger) g_installed = std::make_shared<const AccessLog>(AccessLog{std::move(logger), json, std::move(fields)});
    g_generation.fetch_add(1, std::memory_order_release);
    g_enabled.store(g_installed != nullptr, std::memory_order_relaxed);
  }
}

}  // namespace detail

bool access_enabled() { return detail::g_enabled.load(std::memory_order_relaxed); }

void write_access(const AccessRecord& record) {
  if (!access_enabled()) return;
  const detail::AccessLog* access = detail::current_access_log();
  if (!access) return;
  fmt::memory_buffer line;
  if (!access->fields.empty()) {
    detail::format_access_fields(access->fields, access->json, record, line);
  } else if (access->json) {
    detail::format_access_json(record, line);
  } else {
    detail::format_access_text(record, line);
  }
  access->logger->log(spdlog::level::info, spdlog::string_view_t(line.data(), line.size()));
}

}  // namespace turnpike::log
