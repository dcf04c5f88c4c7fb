// The consistent_hash balancer's key for a request (forward.h): the client's address, a header
// field, a cookie, a query argument, a route {param} or the consumer, as the upstream's hash_key
// says. Read from the request as received; nothing is allocated.
#include "forward.h"
#include "turnpike/common/strings.h"
#include "turnpike/proxy/snapshot.h"

namespace turnpike::proxy {

namespace {

// The value of `name` in a list of `name=value` pairs separated by `sep` (a Cookie field, a query
// string); absent when no pair has that name.
bool find_pair(std::string_view list, char sep, std::string_view name, std::string_view& value) {
  while (!list.empty()) {
    const size_t end = list.find(sep);
    std::string_view pair = trim_ows(list.substr(0, end));
    list = end == std::string_view::npos ? std::string_view() : list.substr(end + 1);
    const size_t eq = pair.find('=');
    if (pair.substr(0, eq) != name) continue;
    value = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    return true;
  }
  return false;
}

bool key_of(const RequestContext& ctx, const config::HashKeyConfig& key, std::string_view& out) {
  using config::HashKeySource;
  switch (key.source) {
    case HashKeySource::remote_addr:
      out = ctx.client_ip;
      return !out.empty();
    case HashKeySource::header:
      for (const auto& h : ctx.headers) {
        if (iequals(h.name, key.name)) {
          out = h.value;
          return true;
        }
      }
      return false;
    case HashKeySource::cookie:
      for (const auto& h : ctx.headers) {
        if (iequals(h.name, "cookie") && find_pair(h.value, ';', key.name, out)) return true;
      }
      return false;
    case HashKeySource::query_arg:
      return ctx.has_query && find_pair(ctx.query, '&', key.name, out);
    case HashKeySource::route_param:
      for (size_t i = 0; i < ctx.match.param_count; ++i) {
        if (ctx.match.params[i].name == key.name) {
          out = ctx.match.params[i].value;
          return true;
        }
      }
      return false;
    case HashKeySource::consumer:
      if (ctx.consumer < 0 || !ctx.snapshot || static_cast<size_t>(ctx.consumer) >= ctx.snapshot->consumers.size()) {
        return false;
      }
      out = ctx.snapshot->consumers[ctx.consumer].config->username;
      return true;
  }
  return false;
}

}  // namespace

bool request_hash_key(const RequestContext& ctx, const config::HashKeyConfig& key, uint64_t& hash) {
  std::string_view value;
  if (!key_of(ctx, key, value)) return false;
  hash = upstream::hash_key(value);
  return true;
}

}  // namespace turnpike::proxy
