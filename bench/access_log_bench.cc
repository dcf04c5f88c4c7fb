// Microbenchmark: formatting one access log line, the default line against configured fields
// (log.access_fields), text and JSON, for a request that tried two nodes. Formatting only: the
// queueing to the log thread and the write are the same for every format.
//
// Also the clock read the per-try times cost (three per try), so the whole of what configured
// fields add per request is on one page.
#include <benchmark/benchmark.h>

#include <chrono>
#include <string>
#include <vector>

#include "access_format.h"

namespace {

using turnpike::config::AccessField;
using turnpike::config::AccessVar;
using turnpike::log::AccessRecord;
using turnpike::log::UpstreamTries;
using turnpike::log::UpstreamTry;

const std::vector<turnpike::http::Header> kHeaders = {
    {"Host", "api.example.com"}, {"User-Agent", "curl/8.5.0"}, {"Accept", "*/*"}, {"X-Trace", "abc123"}};

UpstreamTries two_tries() {
  UpstreamTries t;
  const auto now = UpstreamTry::Clock::now();
  t.begin("10.0.0.1:8080", now);
  t.end(502);
  t.finish(false, std::chrono::microseconds(900), now + std::chrono::milliseconds(1));
  t.begin("10.0.0.2:8080", now + std::chrono::milliseconds(1));
  t.end(200);
  t.finish(true, {}, now + std::chrono::milliseconds(20));
  return t;
}

AccessRecord record(const UpstreamTries& tries) {
  AccessRecord r;
  r.remote_addr = "203.0.113.7:51234";
  r.start = std::chrono::system_clock::now();
  r.method = "GET";
  r.target = "/api/v1/items?page=2";
  r.protocol = "HTTP/1.1";
  r.host = "api.example.com";
  r.scheme = "https";
  r.status = 200;
  r.response_bytes = 5120;
  r.duration_us = 21'000;
  r.route = "items";
  r.upstream_addr = "10.0.0.2:8080";
  r.upstream_status = 200;
  r.upstream_duration_us = 19'000;
  r.upstream_tries = tries.view();
  r.user_agent = "curl/8.5.0";
  r.consumer = "alice";
  r.request_id = "5f0c2a9e-1b7d-4c1e-9a55-0c1f3d2b7e11";
  r.ssl_protocol = "TLSv1.3";
  r.ssl_cipher = "TLS_AES_128_GCM_SHA256";
  r.headers = kHeaders;
  return r;
}

// The fields of the docs' example: about as many as the default line carries, plus the TLS
// fields, the consumer, the request id and the per-try times.
std::vector<AccessField> example_fields(bool json) {
  auto v = [](AccessVar var, const char* key, const char* text = "") { return AccessField{var, text, key}; };
  auto lit = [json](const char* text) { return AccessField{AccessVar::literal, json ? "" : text, ""}; };
  std::vector<AccessField> f = {
      v(AccessVar::remote_addr, "remote_addr"), lit(" "), v(AccessVar::remote_port, "remote_port"), lit(" ["),
      v(AccessVar::time_iso8601, "time_iso8601"), lit("] \""), v(AccessVar::request, "request"), lit("\" "),
      v(AccessVar::status, "status"), lit(" "), v(AccessVar::body_bytes_sent, "body_bytes_sent"), lit(" "),
      v(AccessVar::request_time, "request_time"), lit(" "), v(AccessVar::route, "route"), lit(" "),
      v(AccessVar::consumer, "consumer"), lit(" "), v(AccessVar::request_id, "request_id"), lit(" "),
      v(AccessVar::upstream_addr, "upstream_addr"), lit(" "), v(AccessVar::upstream_status, "upstream_status"),
      lit(" "), v(AccessVar::upstream_connect_time, "upstream_connect_time"), lit(" "),
      v(AccessVar::upstream_response_time, "upstream_response_time"), lit(" "),
      v(AccessVar::ssl_protocol, "ssl_protocol"), lit(" "), v(AccessVar::ssl_cipher, "ssl_cipher"), lit(" \""),
      v(AccessVar::http_header, "http_user_agent", "user-agent"), lit("\"")};
  if (json) std::erase_if(f, [](const AccessField& a) { return a.var == AccessVar::literal; });
  return f;
}

void BM_DefaultText(benchmark::State& state) {
  const UpstreamTries tries = two_tries();
  const AccessRecord r = record(tries);
  for (auto _ : state) {
    fmt::memory_buffer line;
    turnpike::log::detail::format_access_text(r, line);
    benchmark::DoNotOptimize(line.data());
  }
}
BENCHMARK(BM_DefaultText);

void BM_DefaultJson(benchmark::State& state) {
  const UpstreamTries tries = two_tries();
  const AccessRecord r = record(tries);
  for (auto _ : state) {
    fmt::memory_buffer line;
    turnpike::log::detail::format_access_json(r, line);
    benchmark::DoNotOptimize(line.data());
  }
}
BENCHMARK(BM_DefaultJson);

void BM_FieldsText(benchmark::State& state) {
  const UpstreamTries tries = two_tries();
  const AccessRecord r = record(tries);
  const auto fields = example_fields(false);
  for (auto _ : state) {
    fmt::memory_buffer line;
    turnpike::log::detail::format_access_fields(fields, false, r, line);
    benchmark::DoNotOptimize(line.data());
  }
}
BENCHMARK(BM_FieldsText);

void BM_FieldsJson(benchmark::State& state) {
  const UpstreamTries tries = two_tries();
  const AccessRecord r = record(tries);
  const auto fields = example_fields(true);
  for (auto _ : state) {
    fmt::memory_buffer line;
    turnpike::log::detail::format_access_fields(fields, true, r, line);
    benchmark::DoNotOptimize(line.data());
  }
}
BENCHMARK(BM_FieldsJson);

void BM_SteadyClockNow(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(std::chrono::steady_clock::now());
}
BENCHMARK(BM_SteadyClockNow);

}  // namespace

BENCHMARK_MAIN();
