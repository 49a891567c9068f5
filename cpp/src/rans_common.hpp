// Internal helpers shared by the rANS formats: varints, zigzag, errors.
#pragma once

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "quantonium/layout.hpp"

namespace qn::rans_detail {

[[noreturn]] inline void bad(const std::string& what) {
  throw std::invalid_argument("malformed rANS stream: " + what);
}

inline void put_varint(std::vector<std::uint8_t>& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<std::uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<std::uint8_t>(v));
}

inline index_t varint_size(std::uint64_t v) {
  index_t n = 1;
  while (v >= 0x80) v >>= 7, ++n;
  return n;
}

inline std::int64_t unzigzag(std::uint64_t v) {
  return static_cast<std::int64_t>(v >> 1) ^ -static_cast<std::int64_t>(v & 1);
}
inline std::uint64_t zigzag(std::int64_t v) {
  return (static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63);
}

/// A bounds-checked cursor over [p, end).
struct Reader {
  const std::uint8_t* p;
  const std::uint8_t* end;
  index_t left() const { return static_cast<index_t>(end - p); }
  /// LEB128, at most 10 bytes; a value that does not fit in 64 bits is refused.
  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p >= end) bad("truncated varint");
      const std::uint8_t b = *p++;
      if (shift == 63 && (b & 0x7E)) bad("varint overflows 64 bits");
      v |= static_cast<std::uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    bad("varint too long");
  }
  std::uint8_t byte() {
    if (p >= end) bad("truncated header");
    return *p++;
  }
};

/// A varint that must fit in [lo, hi] (for sizes and counts).
inline std::uint64_t varint_in(Reader& r, std::uint64_t lo, std::uint64_t hi, const char* what) {
  const std::uint64_t v = r.varint();
  if (v < lo || v > hi) bad(std::string(what) + " out of range (" + std::to_string(v) + ")");
  return v;
}

}  // namespace qn::rans_detail
