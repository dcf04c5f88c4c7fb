// The access log line of configured fields (log.access_fields, access_format.h): the ops the
// config loader parsed, run in order for each line.
//
// Hot path: one switch per field over the record's views; appends to the caller's stack buffer,
// no allocation (a per-try list is written straight into the line), no lock.
#include <iterator>

#include "access_format.h"
#include "turnpike/common/strings.h"

namespace turnpike::log::detail {

namespace {

using config::AccessVar;

void append(fmt::memory_buffer& out, std::string_view s) { out.append(s.data(), s.data() + s.size()); }

void append_number(fmt::memory_buffer& out, uint64_t n) { fmt::format_to(std::back_inserter(out), "{}", n); }

// The value of request header `name` (lower case), the first field of that name.
std::string_view header(const AccessRecord& r, std::string_view name) {
  for (const auto& h : r.headers) {
    if (iequals(h.name, name)) return h.value;
  }
  return {};
}

// The tries as the access log lists them: the record's tries, or, for a record without a list,
// its one address and status (no times).
struct Tries {
  std::span<const UpstreamTry> list;
  UpstreamTry single;
  explicit Tries(const AccessRecord& r) {
    if (!r.upstream_tries.empty()) {
      list = r.upstream_tries;
    } else if (!r.upstream_addr.empty()) {
      single.addr = r.upstream_addr;
      single.status = r.upstream_status;
      list = {&single, 1};
    }
  }
};

// One per-try value: text ("-" for none) or JSON (null for none).
void append_try(const AccessVar var, const UpstreamTry& t, bool json, fmt::memory_buffer& out) {
  auto none = [&] { append(out, json ? "null" : "-"); };
  auto seconds = [&](int64_t us) {
    if (us < 0) return none();
    append_seconds(out, static_cast<uint64_t>(us));
  };
  switch (var) {
    case AccessVar::upstream_addr:
      if (json) {
        append_json_string(t.addr, out);
      } else {
        append_text(out, t.addr, false);
      }
      break;
    case AccessVar::upstream_status:
      if (t.status > 0) {
        append_number(out, static_cast<uint64_t>(t.status));
      } else {
        none();
      }
      break;
    case AccessVar::upstream_connect_time: seconds(t.connect_us); break;
    case AccessVar::upstream_header_time: seconds(t.header_us); break;
    case AccessVar::upstream_response_time: seconds(t.response_us); break;
    default: break;
  }
}

// Text: "a,b" ("-" for no try); JSON: [a,b] ([] for no try).
void append_tries(AccessVar var, const AccessRecord& r, bool json, fmt::memory_buffer& out) {
  const Tries tries(r);
  if (json) out.push_back('[');
  if (tries.list.empty() && !json) out.push_back('-');
  for (size_t i = 0; i < tries.list.size(); ++i) {
    if (i > 0) out.push_back(',');
    append_try(var, tries.list[i], json, out);
  }
  if (json) out.push_back(']');
}

// A variable's value. Strings go through `string` (escaped per format); numbers and times are
// written directly.
void append_variable(const config::AccessField& f, const AccessRecord& r, bool json, fmt::memory_buffer& out) {
  auto string = [&](std::string_view s, bool quoted = false) {
    if (json) {
      append_json_string(s, out);
    } else {
      append_text(out, s, quoted);
    }
  };
  switch (f.var) {
    case AccessVar::literal: append(out, f.text); break;
    case AccessVar::remote_addr:
    case AccessVar::remote_port: {
      std::string_view ip, port;
      split_client(r.remote_addr, ip, port);
      if (f.var == AccessVar::remote_addr) {
        string(ip);
      } else if (port.empty()) {
        append(out, json ? "null" : "-");
      } else {
        append(out, port);  // digits only (split_client checked)
      }
      break;
    }
    case AccessVar::time_iso8601:
      if (json) out.push_back('"');
      append_iso_time(r.start, out);
      if (json) out.push_back('"');
      break;
    case AccessVar::msec: {
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(r.start.time_since_epoch()).count();
      append_seconds(out, static_cast<uint64_t>(ms < 0 ? 0 : ms) * 1000);
      break;
    }
    case AccessVar::request_id: string(r.request_id); break;
    case AccessVar::host: string(r.host); break;
    case AccessVar::request:
      if (json && r.method.empty() && r.target.empty() && r.protocol.empty()) {
        append(out, "\"\"");
      } else if (json) {
        // One JSON string of the three parts, each escaped the same way.
        fmt::memory_buffer line;
        append(line, r.method);
        line.push_back(' ');
        append(line, r.target);
        line.push_back(' ');
        append(line, r.protocol);
        append_json_string(std::string_view(line.data(), line.size()), out);
      } else if (r.method.empty() && r.target.empty() && r.protocol.empty()) {
        out.push_back('-');
      } else {
        append_text(out, r.method, true);
        out.push_back(' ');
        append_text(out, r.target, true);
        out.push_back(' ');
        append_text(out, r.protocol, true);
      }
      break;
    case AccessVar::request_method: string(r.method); break;
    case AccessVar::request_uri: string(r.target); break;
    case AccessVar::server_protocol: string(r.protocol); break;
    case AccessVar::scheme: string(r.scheme); break;
    case AccessVar::status: append_number(out, static_cast<uint64_t>(r.status < 0 ? 0 : r.status)); break;
    case AccessVar::body_bytes_sent: append_number(out, r.response_bytes); break;
    case AccessVar::request_body_bytes: append_number(out, r.request_bytes); break;
    case AccessVar::request_time: append_seconds(out, r.duration_us); break;
    case AccessVar::route: string(r.route); break;
    case AccessVar::consumer: string(r.consumer); break;
    case AccessVar::error: string(r.error); break;
    case AccessVar::ssl_protocol: string(r.ssl_protocol); break;
    case AccessVar::ssl_cipher: string(r.ssl_cipher); break;
    case AccessVar::http_header: string(header(r, f.text), true); break;
    case AccessVar::upstream_addr:
    case AccessVar::upstream_status:
    case AccessVar::upstream_connect_time:
    case AccessVar::upstream_header_time:
    case AccessVar::upstream_response_time: append_tries(f.var, r, json, out); break;
  }
}

}  // namespace

void format_access_fields(const std::vector<config::AccessField>& fields, bool json, const AccessRecord& r,
                          fmt::memory_buffer& out) {
  if (!json) {
    for (const auto& f : fields) append_variable(f, r, false, out);
    return;
  }
  out.push_back('{');
  bool first = true;
  for (const auto& f : fields) {
    if (f.var == AccessVar::literal) continue;  // (the loader keeps none for JSON)
    if (!first) out.push_back(',');
    first = false;
    out.push_back('"');
    append(out, f.key);  // letters, digits and '_' (the loader's rule): nothing to escape
    append(out, "\":");
    append_variable(f, r, true, out);
  }
  out.push_back('}');
}

}  // namespace turnpike::log::detail
