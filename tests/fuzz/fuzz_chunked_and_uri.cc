// libFuzzer target: the chunked decoder and the request-target functions on raw input, without
// a head in front (the other targets only reach them behind a valid head).
//
// Input: byte 0 picks the mode (bit 0: chunked body or target) and the decoder limits (bit 1);
// the rest is the body or the target.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* raw, size_t size) {
  using namespace turnpike::http;
  using namespace turnpike::http::fuzz;
  if (size == 0) return 0;
  const std::string_view in(reinterpret_cast<const char*>(raw + 1), size - 1);
  if ((raw[0] & 1) == 0) {
    ChunkedDecoder::Limits limits;
    if (raw[0] & 2) {
      limits.max_extension_bytes = 8;
      limits.max_trailer_bytes = 32;
    }
    check_chunked(in, limits);
    return 0;
  }
  check_target(in);
  check_normalize(in);
  std::string_view host, port;
  if (split_authority(in, host, port)) {
    FUZZ_CHECK(!host.empty() && host.size() <= 255 + 2);
    FUZZ_CHECK(port.size() <= 5);
    static std::string lowered;
    FUZZ_CHECK(parse_authority(in, lowered) && lowered.size() == host.size());
  }
  return 0;
}
