// Resetting a pooled RequestContext: every part is assigned a fresh value as a whole, so no field
// can be forgotten; only the storage of the part's containers is carried over, emptied.
#include "turnpike/proxy/request_context.h"

#include <tuple>

namespace turnpike::proxy {

namespace {

// Assigns `part` a fresh value, then gives back the storage of the `kept` members (each a
// container with clear()), emptied. A kept member carries no state, only capacity; a member
// left off the list is reset all the same and merely allocates again when next used.
template <class Part, class... Kept>
void reset_part(Part& part, Kept Part::*... kept) {
  std::tuple<Kept...> storage{std::move(part.*kept)...};
  part = Part{};
  std::apply([&part, kept...](Kept&... s) { ((part.*kept = std::move(s), (part.*kept).clear()), ...); }, storage);
}

}  // namespace

void LocalResponse::clear() { reset_part(*this, &LocalResponse::body, &LocalResponse::headers); }

void RequestContext::reset() {
  reset_part<RequestInput>(*this, &RequestInput::headers, &RequestInput::host, &RequestInput::path);
  // The pending work is dropped before the part is reassigned: it may refer to the arena.
  pending.reset();
  reset_part<RoutingState>(*this, &RoutingState::request_edits, &RoutingState::response_edits,
                           &RoutingState::local_response);
  // The Lua ctx table is released here (a Ref unrefs itself when replaced).
  reset_part<FilterState>(*this, &FilterState::filters, &FilterState::filter_slots, &FilterState::request_id,
                          &FilterState::body_outputs, &FilterState::body_scratch);
  reset_part<RequestBody>(*this, &RequestBody::body_views);
  reset_part<ResponseState>(*this, &ResponseState::response_headers, &ResponseState::response_trailers,
                            &ResponseState::response_pieces);
  reset_part<LogState>(*this);
  reset_part<UpstreamLink>(*this);
  reset_part<SerializerScratch>(*this, &SerializerScratch::out_head, &SerializerScratch::connection_tokens,
                                &SerializerScratch::forwarded_for);
}

}  // namespace turnpike::proxy
