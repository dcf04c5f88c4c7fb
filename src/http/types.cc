// Names for the HTTP vocabulary in types.h: methods, body framing, status reason phrases.
#include "turnpike/http/types.h"

#include "char_class.h"
#include "turnpike/common/strings.h"

namespace turnpike::http {

std::string_view to_string(Method m) noexcept {
  switch (m) {
    case Method::get: return "GET";
    case Method::head: return "HEAD";
    case Method::post: return "POST";
    case Method::put: return "PUT";
    case Method::del: return "DELETE";
    case Method::connect: return "CONNECT";
    case Method::options: return "OPTIONS";
    case Method::trace: return "TRACE";
    case Method::patch: return "PATCH";
    case Method::other: return "other";
  }
  return "other";
}

Method parse_method(std::string_view token) noexcept {
  // RFC 9110 §9.1: method names are case-sensitive, so "get" is an unknown method, not GET.
  switch (token.size()) {
    case 3:
      if (token == "GET") return Method::get;
      if (token == "PUT") return Method::put;
      break;
    case 4:
      if (token == "HEAD") return Method::head;
      if (token == "POST") return Method::post;
      break;
    case 5:
      if (token == "PATCH") return Method::patch;
      if (token == "TRACE") return Method::trace;
      break;
    case 6:
      if (token == "DELETE") return Method::del;
      break;
    case 7:
      if (token == "CONNECT") return Method::connect;
      if (token == "OPTIONS") return Method::options;
      break;
    default:
      break;
  }
  return Method::other;
}

bool is_idempotent(Method m) noexcept {
  // RFC 9110 §9.2.2: the safe methods plus PUT and DELETE. An unknown method is not assumed to be.
  switch (m) {
    case Method::get:
    case Method::head:
    case Method::put:
    case Method::del:
    case Method::options:
    case Method::trace:
      return true;
    case Method::post:
    case Method::connect:
    case Method::patch:
    case Method::other:
      return false;
  }
  return false;
}

std::string_view to_string(BodyFraming f) noexcept {
  switch (f) {
    case BodyFraming::none: return "none";
    case BodyFraming::content_length: return "content_length";
    case BodyFraming::chunked: return "chunked";
    case BodyFraming::until_close: return "until_close";
  }
  return "unknown";
}

std::string_view reason_phrase(int status) noexcept {
  // RFC 9110 §15, plus 429/431 (RFC 6585), 425 (RFC 8470) and 451 (RFC 7725).
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 305: return "Use Proxy";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 508: return "Loop Detected";  // RFC 5842 §7.2
    default: return "Unknown";
  }
}

bool is_token(std::string_view s) noexcept { return detail::is_token(s); }

bool is_safe_field_value(std::string_view s) noexcept {
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) return false;
  }
  return true;
}

bool is_proxy_managed_field(std::string_view name) noexcept {
  static constexpr std::string_view kManaged[] = {
      "connection", "keep-alive", "proxy-connection", "transfer-encoding",
      "te",         "trailer",    "upgrade",          "content-length"};
  for (auto m : kManaged) {
    if (iequals(m, name)) return true;
  }
  return false;
}

}  // namespace turnpike::http
