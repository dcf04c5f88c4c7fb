// Loading the `admin:` section: the admin listener's address, its bearer token and the metrics
// switches. A non-loopback address without a token is refused here, at its line, so an admin
// API that can reload the config is never exposed unauthenticated by accident.
#include <boost/asio/ip/address.hpp>

#include "sections.h"
#include "turnpike/common/strings.h"

namespace turnpike::config::detail {

namespace {

bool is_loopback(const std::string& address) {
  boost::system::error_code ec;
  const auto a = boost::asio::ip::make_address(address, ec);
  return !ec && a.is_loopback();
}

// "127.0.0.1:9901", "[::1]:0".
bool split_listen(std::string_view s, std::string& address, uint16_t& port) {
  const size_t colon = s.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == s.size()) return false;
  std::string host(strip_brackets(s.substr(0, colon)));
  if (host.find(':') != std::string::npos && s.front() != '[') return false;  // IPv6 needs brackets
  if (canonical_ip(host).empty()) return false;
  std::optional<uint64_t> p = parse_decimal(s.substr(colon + 1));
  if (!p || *p > 65535) return false;
  address = host;
  port = static_cast<uint16_t>(*p);
  return true;
}

}  // namespace

void load_admin(Diagnostics& diag, const YAML::Node& n, AdminConfig& admin) {
  Where w(diag, "", "admin");
  if (!expect_map(w, n)) return;
  admin.enabled = true;
  admin.source = w.source(n);
  check_keys(w, n, {"listen", "token", "metrics", "series_cap"});
  if (const YAML::Node l = n["listen"]) {
    if (std::optional<std::string> s = read_string(w.key("listen"), l)) {
      if (!split_listen(*s, admin.address, admin.port)) {
        w.key("listen").error(l, quote(*s) + ": expected an IP address and a port (0 picks a free one), as "
                                             "\"127.0.0.1:9901\" or \"[::1]:9901\"");
      }
    }
  }
  field(w, n, "token", admin.token);
  field(w, n, "metrics", admin.metrics);
  field_int(w, n, "series_cap", admin.series_cap, 16, 1'000'000);
  if (admin.token.empty() && !is_loopback(admin.address)) {
    const YAML::Node at = n["listen"] ? n["listen"] : n;
    w.key("listen").error(at, admin.address + " is not a loopback address: set admin.token (clients then send "
                                              "\"Authorization: Bearer <token>\"), or listen on 127.0.0.1 or ::1");
  }
}

}  // namespace turnpike::config::detail
