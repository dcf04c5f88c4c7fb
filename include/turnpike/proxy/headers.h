// Header-list helpers shared by the request and response serializers.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "turnpike/common/strings.h"
#include "turnpike/http/parser.h"
#include "turnpike/http/types.h"
#include "turnpike/proxy/downstream.h"
#include "turnpike/proxy/request_context.h"
#include "turnpike/proxy/snapshot.h"

namespace turnpike::proxy {

using namespace std::string_view_literals;

// The Host / :authority the upstream gets: a plugin's choice, else the client's, else the node.
template <class Node>
inline std::string_view upstream_authority(const RequestContext& ctx, const Node& node) {
  if (!ctx.upstream_host.empty()) return ctx.upstream_host;
  return ctx.authority.empty() ? std::string_view(node.address) : ctx.authority;
}

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

// Fields the gateway writes itself towards an upstream, so the client's copies are not passed on.
inline bool replaced_by_gateway(std::string_view name) {
  return iequals(name, "host") || iequals(name, "content-length") || iequals(name, "expect") ||
         iequals(name, "x-forwarded-for") || iequals(name, "x-real-ip") || iequals(name, "x-forwarded-proto") ||
         iequals(name, "x-forwarded-host");
}

// The end-to-end request fields an upstream gets, whatever protocol it speaks, in order: the
// client's fields minus hop-by-hop ones (and those named in Connection, RFC 9110 §7.6.1), those
// the gateway replaces and those request edits remove; then the edits' fields; then
// X-Forwarded-For (the client's chain, all its fields in order, plus the client), X-Real-IP,
// X-Forwarded-Proto and X-Forwarded-Host. Calls field(name, value) for each; the views stay valid
// for the rest of the request. Host / :authority and the body framing are the caller's.
template <class Field>
void for_each_forwarded_field(RequestContext& ctx, Field&& field) {
  collect_connection_tokens(ctx.headers, ctx.connection_tokens);
  size_t xff_fields = 0;
  for (const auto& h : ctx.headers) {
    if (http::is_hop_by_hop(h.name) || named_in(h.name, ctx.connection_tokens)) continue;
    if (replaced_by_gateway(h.name)) {
      if (iequals(h.name, "x-forwarded-for")) ++xff_fields;
      continue;
    }
    if (!ctx.request_edits.empty() && edited_away(h.name, ctx.request_edits)) continue;
    field(h.name, h.value);
  }
  for (const auto& e : ctx.request_edits) {
    if (e.op != HeaderEdit::Op::remove) field(e.name, e.value);
  }
  std::string_view xff = ctx.client_ip;
  if (xff_fields > 0) {
    std::string& chain = ctx.forwarded_for;
    chain.clear();
    for (const auto& h : ctx.headers) {
      if (!iequals(h.name, "x-forwarded-for")) continue;
      chain.append(h.value);
      chain.append(", "sv);
    }
    chain.append(ctx.peer_ip.empty() ? ctx.client_ip : ctx.peer_ip);
    xff = chain;
  }
  field("X-Forwarded-For"sv, xff);
  field("X-Real-IP"sv, ctx.client_ip);
  field("X-Forwarded-Proto"sv, ctx.scheme);
  if (!ctx.authority.empty()) field("X-Forwarded-Host"sv, ctx.authority);
  // RFC 9110 §7.6.3: a proxy appends its own Via entry (the client's entries were passed above).
  const std::string& via = ctx.protocol == "HTTP/2.0"   ? ctx.snapshot->via_http2
                           : ctx.protocol == "HTTP/1.0" ? ctx.snapshot->via_http10
                                                        : ctx.snapshot->via_http11;
  if (!via.empty()) field("Via"sv, via);
}

// True when a Via field lists `pseudonym` as a recipient (RFC 9110 §7.6.3: each entry is
// "received-protocol received-by [comment]"): the request has been through this gateway before.
// Comments are skipped whole, so a comma inside one does not start an entry.
inline bool via_lists(const std::vector<http::Header>& headers, std::string_view pseudonym) {
  for (const auto& h : headers) {
    if (h.name.size() != 3 || !iequals(h.name, "via")) continue;
    std::string_view v = h.value;
    while (!v.empty()) {
      // One entry: up to the next comma outside a comment.
      size_t end = 0;
      for (int depth = 0; end < v.size() && (depth > 0 || v[end] != ','); ++end) {
        if (v[end] == '(') ++depth;
        else if (v[end] == ')' && depth > 0) --depth;
        else if (v[end] == '\\' && depth > 0 && end + 1 < v.size()) ++end;  // quoted-pair
      }
      std::string_view entry = trim_ows(v.substr(0, end));
      v.remove_prefix(std::min(end + 1, v.size()));
      const size_t sp = entry.find_first_of(" \t");
      if (sp == std::string_view::npos) continue;
      std::string_view by = trim_ows(entry.substr(sp));
      by = by.substr(0, by.find_first_of(" \t("));
      if (iequals(by, pseudonym)) return true;
    }
  }
  return false;
}

// The upstream's response fields a client gets, whatever protocol it speaks: minus hop-by-hop ones
// (and those named in Connection), minus Content-Length unless the head keeps it (the sides frame
// the body themselves), minus those response edits remove. Calls field(name, value) for each;
// the edits' own fields are the caller's.
template <class Field>
void for_each_response_field(RequestContext& ctx, const ResponseOut& head, Field&& field) {
  if (!head.headers) return;
  collect_connection_tokens(*head.headers, ctx.connection_tokens);
  for (const auto& h : *head.headers) {
    if (http::is_hop_by_hop(h.name) || named_in(h.name, ctx.connection_tokens)) continue;
    if (iequals(h.name, "content-length") && !head.keep_content_length_header) continue;
    if (!ctx.response_edits.empty() && edited_away(h.name, ctx.response_edits)) continue;
    field(h.name, h.value);
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
