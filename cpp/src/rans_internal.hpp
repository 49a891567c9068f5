// Internal interface between the rANS stream layer (rans.cpp, rans_v1.cpp)
// and the chunk kernels (rans_kernels.cpp: scalar, AVX2, AVX-512).
#pragma once

#include <cstdint>
#include <vector>

#include "quantonium/layout.hpp"

namespace qn::rans_detail {

template <class S>
std::vector<std::uint8_t> encode_v1(const S* symbols, index_t count);
template <class S>
void decode_v1(const std::uint8_t* data, index_t size, index_t count, S* out);

inline constexpr std::uint32_t kL = 1u << 16;  ///< format 2: states live in [2^16, 2^32)

/// Encoder table of one stream: per symbol index (0 .. span-1), freq | cum << 16
/// (0 for absent symbols). Only used when at least two symbols are present,
/// so every freq is < 2^16.
struct EncTable {
  std::vector<std::uint32_t> info;
  std::vector<double> rcp;  ///< 1 / freq per symbol index (0 for absent symbols)
  int scale_bits = 0;
  std::int32_t lo = 0;
};

/// Decoder table: per slot (0 .. M-1). `packed` (small alphabets: span <= 256
/// and scale_bits <= 12): index | freq << 8 | (slot - cum) << 20. `wide`
/// otherwise: index | freq << 16 | (slot - cum) << 32.
struct DecTable {
  bool small = false;
  int scale_bits = 0;
  std::int32_t lo = 0;
  std::vector<std::uint32_t> packed;
  std::vector<std::uint64_t> wide;
};

/// Encodes the m symbols of one chunk with W states into the buffer ending at
/// `end` (capacity at least 4W + 2m bytes before it), backwards; returns the
/// start of the body (states, then words).
template <class S>
std::uint8_t* encode_chunk(const S* sym, index_t m, int ways, const EncTable& t, std::uint8_t* end);

/// Decodes the m symbols of one chunk body [body, body + len); throws
/// std::invalid_argument on truncation, trailing words or a final-state mismatch.
template <class S>
void decode_chunk(const std::uint8_t* body, index_t len, index_t m, int ways, const DecTable& t,
                  S* out);

/// Histogram over S's whole range (256 or 65536 bins, index = value - min of S).
template <class S>
std::vector<std::uint64_t> histogram(const S* sym, index_t n, int nthreads);

/// Which kernels run ("avx512f", "avx2", or the scalar base), for tests and build_info.
const char* rans_kernel_path();

}  // namespace qn::rans_detail
