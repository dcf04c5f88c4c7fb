// Every way the gateway itself ends a request: one row each — status, code, message — so logs
// (the access log's err= field), metrics (a counter per outcome) and plugins share one
// vocabulary (HAProxy's termination states play this part there).
//
// Requests the upstream answers end with its status and no outcome. Parse errors of a request
// head keep their own, finer table (http::ParseError); they are counted as bad_request.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace turnpike::proxy {

#define TURNPIKE_OUTCOMES(X)                                                                      \
  X(no_route, 404, "no route matches this request")                                              \
  X(loop_detected, 508, "the request has already passed through this gateway (Via)")             \
  X(bad_request, 400, "the request is malformed")                                                \
  X(request_timeout, 408, "the request body did not arrive in time")                             \
  X(body_too_large, 413, "request body exceeds the configured limit")                            \
  X(upstream_connect_timeout, 504, "timed out connecting to the upstream")                       \
  X(upstream_connect_failed, 502, "could not connect to the upstream")                           \
  X(upstream_timeout, 504, "the upstream did not answer in time")                                \
  X(deadline_exceeded, 504, "the request's deadline passed")                                     \
  X(upstream_bad_response, 502, "the upstream sent an invalid response")                         \
  X(upstream_reset, 502, "the upstream reset the stream")                                        \
  X(upstream_failed, 502, "the upstream closed the connection")                                  \
  X(filter_failed, 500, "a filter of this route failed")                                         \
  X(plugin_failed, 500, "a plugin of this route failed")                                         \
  X(no_healthy_upstream, 503, "no node of the upstream is healthy")

enum class Outcome : uint8_t {
#define TURNPIKE_OUTCOME_ENUM(name, status, message) name,
  TURNPIKE_OUTCOMES(TURNPIKE_OUTCOME_ENUM)
#undef TURNPIKE_OUTCOME_ENUM
};

struct OutcomeInfo {
  int status;
  std::string_view code;     // the JSON body's "error" and the access log's err=
  std::string_view message;  // the JSON body's "message"
};

inline constexpr std::array kOutcomes = {
#define TURNPIKE_OUTCOME_ROW(name, status, message) OutcomeInfo{status, #name, message},
    TURNPIKE_OUTCOMES(TURNPIKE_OUTCOME_ROW)
#undef TURNPIKE_OUTCOME_ROW
};
inline constexpr size_t kOutcomeCount = kOutcomes.size();

constexpr const OutcomeInfo& info(Outcome o) noexcept { return kOutcomes[static_cast<size_t>(o)]; }
constexpr std::string_view to_string(Outcome o) noexcept { return info(o).code; }

}  // namespace turnpike::proxy
