// Regular expressions for Lua plugins (`require "turnpike.regex"`): PCRE2 compiled once, with
// its JIT, matched with per-thread match data. Plain C functions that plugins/lib/turnpike/
// regex.lua reaches through LuaJIT's FFI (ffi.C): the linker keeps and exports them (see
// src/lua/CMakeLists.txt), so they must keep these names and signatures; the ffi.cdef in
// regex.lua repeats them (change both together).
//
// Threading: a tp_regex is immutable after compile and may be used from any thread; the match
// data, the JIT stack and the output buffer of gsub are per thread. Nothing here takes a lock.
// Matches are bounded (match limit, depth limit, JIT stack): a catastrophic pattern returns
// TP_REGEX_LIMIT instead of running for minutes.
#pragma once

#include <stddef.h>
#include <stdint.h>

extern "C" {

typedef struct tp_regex tp_regex;

// Results of tp_regex_match and tp_regex_gsub below zero.
enum {
  TP_REGEX_NOMATCH = -1,  // no match
  TP_REGEX_LIMIT = -2,    // the match limit, depth limit or JIT stack was exhausted
  TP_REGEX_ERROR = -3,    // any other PCRE2 error: tp_regex_last_error says which
};

// Compiles `pattern` with `flags` (any of "i" caseless, "m" multiline, "s" dotall, "x" extended,
// "u" UTF-8, "U" ungreedy, "D" dollar matches only at the end, "J" duplicate names). Returns
// NULL on error with a message (`missing closing parenthesis at offset 3`) written into `err`
// (NUL-terminated, truncated to err_len).
tp_regex* tp_regex_compile(const char* pattern, size_t len, const char* flags, char* err,
                           size_t err_len);
void tp_regex_free(tp_regex* re);
// Compiled regexes not yet freed, in the whole process (tests, metrics).
int64_t tp_regex_live(void);

// Number of capture groups (not counting the whole match).
int tp_regex_capture_count(const tp_regex* re);
// The i-th named group (0 <= i < count): its name (NUL-terminated, owned by `re`) and number.
int tp_regex_name_count(const tp_regex* re);
const char* tp_regex_name(const tp_regex* re, int i, int* group);

// Matches at or after byte `offset` of `subject`. On a match returns the number of pairs
// written to `ovector` (start, end byte offsets; an unset group is (SIZE_MAX, SIZE_MAX)), at
// most `max_pairs`. Otherwise one of the TP_REGEX_* codes.
int tp_regex_match(const tp_regex* re, const char* subject, size_t len, size_t offset,
                   size_t* ovector, int max_pairs);

// Replaces every match in `subject` with `replacement`, where $n / ${n} is group n, ${name} a
// named group and $$ a dollar sign. Returns the number of replacements (>= 0) with the result
// in *out / *out_len (valid until the next call on this thread), or a TP_REGEX_* code.
int tp_regex_gsub(const tp_regex* re, const char* subject, size_t len, const char* replacement,
                  size_t rlen, const char** out, size_t* out_len);

// The message of the last TP_REGEX_ERROR on this thread (NUL-terminated).
const char* tp_regex_last_error(void);

}  // extern "C"

namespace turnpike::lua {
// The bounds every match runs under (PCRE2's match and depth limits).
inline constexpr uint32_t kRegexMatchLimit = 1'000'000;
inline constexpr uint32_t kRegexDepthLimit = 10'000;
}  // namespace turnpike::lua
