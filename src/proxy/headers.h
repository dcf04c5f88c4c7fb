// Header-list helpers shared by the request and response serializers.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "turnpike/common/strings.h"
#include "turnpike/http/parser.h"
#include "turnpike/http/types.h"
#include "turnpike/proxy/request_context.h"

namespace turnpike::proxy {

using namespace std::string_view_literals;

// Collects the tokens of every Connection field (RFC 9110 §7.6.1): those fields are hop-by-hop.
inline void collect_connection_tokens(const std::vector<http::Header>& headers,
                                      std::vector<std::string_view>& out) {
  out.clear();
  for (const auto& h : headers) {
    if (!iequals(h.name, "connection")) continue;
    std::string_view v = h.value;
    while (!v.empty()) {
      size_t comma = v.find(',');
      std::string_view tok = trim_ows(v.substr(0, comma));
      if (!tok.empty()) out.push_back(tok);
      if (comma == std::string_view::npos) break;
      v.remove_prefix(comma + 1);
    }
  }
}

inline bool named_in(std::string_view name, const std::vector<std::string_view>& tokens) {
  for (auto t : tokens) {
    if (iequals(t, name)) return true;
  }
  return false;
}

// True when an edit replaces or removes fields with this name (so the original is not copied).
inline bool edited_away(std::string_view name, const std::vector<HeaderEdit>& edits) {
  for (const auto& e : edits) {
    if (e.op != HeaderEdit::Op::add && iequals(e.name, name)) return true;
  }
  return false;
}

inline void append_edits(HeadBuffer& out, const std::vector<HeaderEdit>& edits) {
  for (const auto& e : edits) {
    if (e.op != HeaderEdit::Op::remove) out.put_field(e.name, e.value);
  }
}

inline void append_decimal(std::string& out, uint64_t v) {
  char buf[24];
  char* p = buf + sizeof(buf);
  do {
    *--p = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  out.append(p, buf + sizeof(buf) - p);
}

}  // namespace turnpike::proxy
