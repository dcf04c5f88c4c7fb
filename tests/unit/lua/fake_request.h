// A fake request behind the PDK's C boundary (pdk.h), standing in for the pipeline's.
#pragma once

#include <map>
#include <string>
#include <strings.h>

#include "turnpike/lua/pdk.h"

struct tp_request {
  struct CaseLess {
    bool operator()(const std::string& a, const std::string& b) const {
      return ::strcasecmp(a.c_str(), b.c_str()) < 0;
    }
  };
  std::map<std::string, std::string, CaseLess> headers;
  std::string method = "GET";
  std::string path = "/";
  std::string client_ip = "127.0.0.1";
};

namespace turnpike::lua::test {

inline const char* out(const std::string& s, size_t* len) {
  *len = s.size();
  return s.data();
}

inline const tp_request_api& fake_request_api() {
  static const tp_request_api api{
      .get_header = [](tp_request* r, const char* name, size_t name_len,
                       size_t* value_len) -> const char* {
        auto it = r->headers.find(std::string(name, name_len));
        return it == r->headers.end() ? nullptr : out(it->second, value_len);
      },
      .set_header = [](tp_request* r, const char* name, size_t name_len, const char* value,
                       size_t value_len) -> int {
        std::string key(name, name_len);
        if (key == "host") return -1;  // the fake refuses one header, to test refusals
        if (value == nullptr) r->headers.erase(key); else r->headers[key] = std::string(value, value_len);
        return 0;
      },
      .method = [](tp_request* r, size_t* len) { return out(r->method, len); },
      .path = [](tp_request* r, size_t* len) { return out(r->path, len); },
      .client_ip = [](tp_request* r, size_t* len) { return out(r->client_ip, len); },
  };
  return api;
}

}  // namespace turnpike::lua::test
