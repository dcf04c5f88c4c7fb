// Access log line formatting, text and JSON, and the installed access logger.
// Private to src/log/ (tests include it to check the exact output).
//
// Hot path: formatting appends to a caller's fmt::memory_buffer (stack storage for a typical
// line), takes no lock and allocates only for unusually long lines.
#pragma once

#include <fmt/format.h>

#include <chrono>
#include <memory>
#include <string_view>
#include <vector>

#include "turnpike/log/log.h"

namespace turnpike::log::detail {

// `127.0.0.1:5000 - [2026-11-23T10:00:00.123Z] "GET /x HTTP/1.1" 200 12 "referer" "ua"
//  rt=0.001 route=api upstream=127.0.0.1:9001 ustatus=200 urt=0.001 err=-` (one line, no
// newline). Several upstream tries list as `upstream=a,b ustatus=502,200`. Empty fields print as "-"; bytes outside printable ASCII, '"' and '\' print as \xHH
// so a client cannot forge lines or fields.
void format_access_text(const AccessRecord& r, fmt::memory_buffer& out);

// One JSON object (no newline). Strings are escaped per RFC 8259 §7; bytes that are not valid
// UTF-8 are written as \u00XX (the byte's Latin-1 reading), so the line is always valid JSON.
void format_access_json(const AccessRecord& r, fmt::memory_buffer& out);

// A JSON string literal, quotes included.
void append_json_string(std::string_view s, fmt::memory_buffer& out);

// "2026-11-23T10:00:00.123Z" (UTC, milliseconds).
void append_iso_time(std::chrono::system_clock::time_point t, fmt::memory_buffer& out);

// A line of configured fields (LogConfig::access_fields; access_fields.cc). Text: the literal
// text and each variable's value (escaped as in the default line, "-" when empty; per-try lists
// comma-separated). JSON: one key per variable; per-try lists as arrays; times in seconds with
// millisecond precision in both.
void format_access_fields(const std::vector<config::AccessField>& fields, bool json, const AccessRecord& r,
                          fmt::memory_buffer& out);

// Installs (or, with a null logger, removes) the access logger write_access() uses; `fields`
// empty: the default line.
void install_access_log(std::shared_ptr<spdlog::logger> logger, bool json,
                        std::vector<config::AccessField> fields = {});

// Pieces shared by the default line and the configured fields (access_log.cc).
// Text: printable ASCII passes, anything else (and '"', '\', and the space when not `quoted`)
// becomes \xHH; empty prints as "-".
void append_text(fmt::memory_buffer& out, std::string_view s, bool quoted);
// Seconds with millisecond precision: "0.001".
void append_seconds(fmt::memory_buffer& out, uint64_t us);
// "ip:port" into its parts (an address without a port, from real_ip, stays whole).
void split_client(std::string_view remote, std::string_view& ip, std::string_view& port);

}  // namespace turnpike::log::detail
