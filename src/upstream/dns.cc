// DNS lookups of upstream names through c-ares: A/AAAA (ares_getaddrinfo) and SRV (ares_query),
// many at once on one channel, blocking the calling thread (never a worker) until all are done.
//
// Why c-ares rather than our own DNS messages: it is Debian's maintained resolver library (the
// one curl and Node use), handles resolv.conf, the hosts file, retries, TCP fallback and
// truncation, and hands back TTLs; parsing untrusted DNS answers ourselves would be one more
// parser to fuzz and keep. Its event loop is driven here with poll(), not select(): a busy
// process has descriptors beyond FD_SETSIZE.
#include <ares.h>
#include <arpa/inet.h>
#include <poll.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "turnpike/upstream/discovery.h"

namespace turnpike::upstream {

namespace {

using boost::asio::ip::address;

constexpr int kTries = 2;  // per server, each waiting resolver.timeout

// c-ares wants "ip:port" with IPv6 in brackets; the config also allows a bare IPv6 address.
std::string servers_csv(const std::vector<std::string>& servers) {
  std::string csv;
  for (const std::string& s : servers) {
    if (!csv.empty()) csv += ',';
    const bool bare_v6 = s.find(':') != s.rfind(':') && s.front() != '[';
    csv += bare_v6 ? "[" + s + "]" : s;
  }
  return csv;
}

address to_address(const sockaddr* sa) {
  if (sa->sa_family == AF_INET6) {
    boost::asio::ip::address_v6::bytes_type b;
    std::memcpy(b.data(), &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, 16);
    return boost::asio::ip::address_v6(b);
  }
  return boost::asio::ip::address_v4(ntohl(reinterpret_cast<const sockaddr_in*>(sa)->sin_addr.s_addr));
}

int ares_family(config::AddressFamily f) {
  switch (f) {
    case config::AddressFamily::ipv4: return AF_INET;
    case config::AddressFamily::ipv6: return AF_INET6;
    default: return AF_UNSPEC;
  }
}

// prefer_*: the preferred family's addresses when the name has any, else the others.
void apply_preference(config::AddressFamily f, std::vector<DnsTarget>& targets) {
  if (f != config::AddressFamily::prefer_ipv4 && f != config::AddressFamily::prefer_ipv6) return;
  const bool want_v4 = f == config::AddressFamily::prefer_ipv4;
  const bool has = std::any_of(targets.begin(), targets.end(), [&](const DnsTarget& t) { return t.address.is_v4() == want_v4; });
  if (!has) return;
  std::erase_if(targets, [&](const DnsTarget& t) { return t.address.is_v4() != want_v4; });
}

// One address lookup in flight: the query it answers, and for an SRV target the target record.
struct AddrLookup {
  DnsQuery* query;
  DnsTarget srv_target;  // port, weight, host; address filled per result
  bool srv = false;
  int* pending;
  int status = ARES_SUCCESS;
};

void on_addrinfo(void* arg, int status, int /*timeouts*/, ares_addrinfo* res) {
  auto* l = static_cast<AddrLookup*>(arg);
  --*l->pending;
  l->status = status;
  if (status != ARES_SUCCESS || res == nullptr) {
    if (res) ares_freeaddrinfo(res);
    return;
  }
  uint32_t ttl = UINT32_MAX;
  for (ares_addrinfo_node* n = res->nodes; n; n = n->ai_next) {
    if (n->ai_family != AF_INET && n->ai_family != AF_INET6) continue;
    DnsTarget t = l->srv_target;
    t.address = to_address(n->ai_addr);
    l->query->answer.targets.push_back(std::move(t));
    ttl = std::min(ttl, static_cast<uint32_t>(std::max(n->ai_ttl, 0)));
  }
  if (ttl != UINT32_MAX) l->query->answer.ttl = std::min(l->query->answer.ttl, ttl);
  ares_freeaddrinfo(res);
}

// An SRV query in flight: its records, whose targets are looked up next.
struct SrvLookup {
  DnsQuery* query;
  int* pending;
  int status = ARES_SUCCESS;
  std::vector<DnsTarget> records;  // host, port, weight (address not yet known)
};

void on_srv(void* arg, int status, int /*timeouts*/, unsigned char* abuf, int alen) {
  auto* l = static_cast<SrvLookup*>(arg);
  --*l->pending;
  l->status = status;
  if (status != ARES_SUCCESS) return;
  ares_srv_reply* reply = nullptr;
  l->status = ares_parse_srv_reply(abuf, alen, &reply);
  if (l->status != ARES_SUCCESS) return;
  // RFC 2782: the lowest priority value is tried first; the others are backups. Only the first
  // group becomes nodes (failover to a backup group is what health checks and retries are for).
  unsigned short best = UINT16_MAX;
  for (ares_srv_reply* r = reply; r; r = r->next) best = std::min(best, r->priority);
  for (ares_srv_reply* r = reply; r; r = r->next) {
    // RFC 2782: a target of "." means the service is decidedly not available here.
    if (r->priority != best || r->host == nullptr || std::strcmp(r->host, ".") == 0 || r->host[0] == 0) continue;
    l->records.push_back({address(), r->port, r->weight, r->host});
  }
  ares_free_data(reply);
}

// Runs the channel until nothing is pending or `deadline` passes (then the rest is cancelled).
void drive(ares_channel ch, const int& pending, std::chrono::steady_clock::time_point deadline) {
  while (pending > 0) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      ares_cancel(ch);  // the callbacks run with ARES_ECANCELLED
      return;
    }
    ares_socket_t socks[ARES_GETSOCK_MAXNUM];
    const int bits = ares_getsock(ch, socks, ARES_GETSOCK_MAXNUM);
    pollfd fds[ARES_GETSOCK_MAXNUM];
    nfds_t n = 0;
    for (int i = 0; i < ARES_GETSOCK_MAXNUM; ++i) {
      short events = 0;
      if (ARES_GETSOCK_READABLE(bits, i)) events |= POLLIN;
      if (ARES_GETSOCK_WRITABLE(bits, i)) events |= POLLOUT;
      if (events) fds[n++] = {socks[i], events, 0};
    }
    timeval max{0, 100'000}, tv{};
    ares_timeout(ch, &max, &tv);
    const int wait_ms = static_cast<int>(tv.tv_sec * 1000 + tv.tv_usec / 1000) + 1;
    const int ready = ::poll(fds, n, wait_ms);
    if (ready <= 0) {
      ares_process_fd(ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // timeouts, retries
      continue;
    }
    for (nfds_t i = 0; i < n; ++i) {
      const bool rd = fds[i].revents & (POLLIN | POLLERR | POLLHUP);
      const bool wr = fds[i].revents & POLLOUT;
      if (rd || wr) ares_process_fd(ch, rd ? fds[i].fd : ARES_SOCKET_BAD, wr ? fds[i].fd : ARES_SOCKET_BAD);
    }
  }
}

// Sorted, without duplicates: answers compare equal whatever order the server gave.
void normalize(DnsQuery& q) {
  auto& t = q.answer.targets;
  std::sort(t.begin(), t.end());
  t.erase(std::unique(t.begin(), t.end(), [](const DnsTarget& a, const DnsTarget& b) {
            return a.address == b.address && a.port == b.port;
          }),
          t.end());
}

}  // namespace

void dns_lookup(const config::ResolverConfig& cfg, std::vector<DnsQuery>& queries) {
  static std::once_flag init;
  std::call_once(init, [] { ares_library_init(ARES_LIB_INIT_ALL); });
  for (DnsQuery& q : queries) {
    q.ok = false;
    q.answer = {};
    q.answer.ttl = UINT32_MAX;
    q.error.clear();
  }
  ares_options opts{};
  int mask = ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
  opts.timeout = static_cast<int>(cfg.timeout.count());
  opts.tries = kTries;
  char files_then_dns[] = "fb", dns_only[] = "b";
  // Configured servers are the whole truth (as nginx's resolver): no hosts file.
  opts.lookups = cfg.servers.empty() ? files_then_dns : dns_only;
  mask |= ARES_OPT_LOOKUPS;
  ares_channel ch = nullptr;
  int rc = ares_init_options(&ch, &opts, mask);
  if (rc == ARES_SUCCESS && !cfg.servers.empty()) rc = ares_set_servers_ports_csv(ch, servers_csv(cfg.servers).c_str());
  if (rc != ARES_SUCCESS) {
    for (DnsQuery& q : queries) q.error = std::string("resolver: ") + ares_strerror(rc);
    if (ch) ares_destroy(ch);
    return;
  }
  // Every query is sent at once; the whole batch waits at most as long as one name could.
  const size_t servers = std::max<size_t>(1, cfg.servers.size());
  const auto budget = cfg.timeout * kTries * static_cast<int64_t>(servers) + std::chrono::milliseconds(500);
  const auto deadline = std::chrono::steady_clock::now() + budget;

  ares_addrinfo_hints hints{};
  hints.ai_family = ares_family(cfg.family);
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = ARES_AI_NOSORT;  // sorted here; RFC 6724 sorting would connect() to each address

  // Phase 1: the host names' addresses and the SRV names' records.
  int pending = 0;
  std::vector<std::unique_ptr<AddrLookup>> addr_lookups;
  std::vector<std::unique_ptr<SrvLookup>> srv_lookups;
  for (DnsQuery& q : queries) {
    ++pending;
    if (q.srv) {
      srv_lookups.push_back(std::make_unique<SrvLookup>(SrvLookup{&q, &pending, ARES_SUCCESS, {}}));
      ares_query(ch, q.name.c_str(), 1 /* C_IN */, 33 /* T_SRV */, on_srv, srv_lookups.back().get());
    } else {
      addr_lookups.push_back(std::make_unique<AddrLookup>(AddrLookup{&q, {}, false, &pending}));
      ares_getaddrinfo(ch, q.name.c_str(), nullptr, &hints, on_addrinfo, addr_lookups.back().get());
    }
  }
  drive(ch, pending, deadline);
  // Phase 2: the SRV targets' addresses.
  std::vector<std::unique_ptr<AddrLookup>> target_lookups;
  for (auto& s : srv_lookups) {
    for (const DnsTarget& rec : s->records) {
      ++pending;
      target_lookups.push_back(std::make_unique<AddrLookup>(AddrLookup{s->query, rec, true, &pending}));
      ares_getaddrinfo(ch, rec.host.c_str(), nullptr, &hints, on_addrinfo, target_lookups.back().get());
    }
  }
  drive(ch, pending, deadline);
  ares_destroy(ch);

  for (auto& l : addr_lookups) {
    if (l->status != ARES_SUCCESS) l->query->error = ares_strerror(l->status);
  }
  for (auto& s : srv_lookups) {
    if (s->status != ARES_SUCCESS) s->query->error = ares_strerror(s->status);
    else if (s->records.empty()) s->query->error = "no SRV targets";
  }
  for (auto& l : target_lookups) {
    // One target that does not resolve leaves the others; an SRV answer none of whose targets
    // resolves is a failure (below).
    if (l->status != ARES_SUCCESS && l->query->error.empty()) {
      l->query->error = "target " + l->srv_target.host + ": " + ares_strerror(l->status);
    }
  }
  for (DnsQuery& q : queries) {
    apply_preference(cfg.family, q.answer.targets);
    normalize(q);
    q.ok = !q.answer.targets.empty();
    if (q.ok) {
      q.error.clear();
    } else if (q.error.empty()) {
      q.error = "no address";
    }
    if (q.answer.ttl == UINT32_MAX) q.answer.ttl = 0;
  }
}

}  // namespace turnpike::upstream
