// A log target that sends each line to syslog as an RFC 5424 message: `syslog:udp:HOST:PORT`
// (HOST an IP literal, IPv6 in brackets) or `syslog:unix:PATH` (a datagram socket such as
// /dev/log). Usable for error_log and access_log alike.
#pragma once

#include <spdlog/sinks/sink.h>

#include <memory>
#include <string>

namespace turnpike::log::detail {

// Whether `target` names a syslog destination (starts with "syslog:").
bool is_syslog_target(const std::string& target);

// Opens (connects) the socket `target` names. Null with `error` set when the target is malformed
// or the socket cannot be connected. Lines are sent with facility local0 and the severity of
// their level; APP-NAME "turnpike", PROCID the pid, MSGID `msgid` ("access" or "error").
std::shared_ptr<spdlog::sinks::sink> open_syslog_sink(const std::string& target, const std::string& msgid,
                                                      std::string& error);

}  // namespace turnpike::log::detail
