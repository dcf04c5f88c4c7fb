// Header set/add/remove: pushes edits that the serializers apply while writing the head, so the
// received header list is never copied. Edits point into the snapshot's config strings.
#include "header_rewrite.h"

#include "turnpike/proxy/request_context.h"

namespace turnpike::proxy {

namespace {
void push_edits(const config::HeaderOps& ops, std::vector<HeaderEdit>& edits) {
  for (const auto& name : ops.remove) edits.push_back({HeaderEdit::Op::remove, name, {}});
  for (const auto& [name, value] : ops.set) edits.push_back({HeaderEdit::Op::set, name, value});
  for (const auto& [name, value] : ops.add) edits.push_back({HeaderEdit::Op::add, name, value});
}
}  // namespace

FilterStatus HeaderRewriteFilter::on_rewrite(RequestContext& ctx) const {
  push_edits(route_.request_headers, ctx.request_edits);
  return FilterStatus::proceed;
}

FilterStatus HeaderRewriteFilter::on_response_headers(RequestContext& ctx) const {
  push_edits(route_.response_headers, ctx.response_edits);
  return FilterStatus::proceed;
}

}  // namespace turnpike::proxy
