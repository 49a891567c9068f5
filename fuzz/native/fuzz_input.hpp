// Shared by the libFuzzer harnesses: reading parameters from the front of a
// fuzz input, the error the decoders may throw, and NaN-aware equality.
//
// Every harness input is a small header (the parameters a caller would pass:
// dtype, bits, group size, count, nthreads) followed by the bytes a file
// would hold. Parameters are read as raw integers, huge and negative ones
// included, so that the size arithmetic is fuzzed as well as the decoding.
// Missing header bytes read as zero.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace qnfuzz {

struct Input {
  const std::uint8_t* p;
  std::size_t n;

  std::uint8_t u8() {
    if (n == 0) return 0;
    --n;
    return *p++;
  }
  std::int64_t i64() {
    std::uint64_t v = 0;
    for (int k = 0; k < 8; ++k) v |= static_cast<std::uint64_t>(u8()) << (8 * k);
    std::int64_t s;
    std::memcpy(&s, &v, sizeof s);
    return s;
  }
  /// Takes the next `count` bytes (fewer if the input ends).
  const std::uint8_t* take(std::size_t count) {
    const std::uint8_t* q = p;
    count = count < n ? count : n;
    p += count;
    n -= count;
    return q;
  }
};

/// Copies `count` bytes (memcpy's pointers must not be null, even for 0 bytes).
inline void copy(void* dst, const void* src, std::size_t count) {
  if (count > 0) std::memcpy(dst, src, count);
}

/// The same bytes (for results that must be bit-identical, NaNs included).
template <class T>
bool same_bytes(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

/// Aborts with a message: libFuzzer records the input as a finding.
[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "qnfuzz: %s\n", what);
  std::abort();
}

inline void check(bool ok, const char* what) {
  if (!ok) fail(what);
}

/// Equal, or both NaN (a NaN's payload is not part of the contract).
template <class T>
bool same(T a, T b) {
  return a == b || (std::isnan(a) && std::isnan(b));
}

/// Runs f(); the decoders' only documented failure is std::invalid_argument
/// (a clear error for a malformed or refused input): returns false then. Any
/// other exception escapes and libFuzzer reports it as a finding.
template <class F>
bool refused(F&& f) {
  try {
    f();
    return false;
  } catch (const std::invalid_argument&) {
    return true;
  }
}

}  // namespace qnfuzz
