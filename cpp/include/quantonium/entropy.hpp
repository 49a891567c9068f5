// Order-0 rANS entropy coder for symbol streams (issue 3).
//
// Stream layout (all integers LEB128 varints unless noted):
//   count                    number of symbols
//   if count > 0:
//     zigzag(min_symbol)     smallest symbol
//     span                   max_symbol - min_symbol + 1 (<= 65536)
//     freq[span]             normalised frequencies, summing to 2^16
//     if more than one symbol is present:
//       u32 little-endian    final rANS state
//       bytes                the rANS byte stream (decoded front to back)
// Frequencies are normalised from the counts deterministically (see
// normalize_frequencies), so the numpy/Python reference produces the same
// bytes. Decoding checks every bound and raises std::invalid_argument on any
// inconsistency; it never allocates more than the caller's expected count.
#pragma once

#include <cstdint>
#include <vector>

#include "quantonium/layout.hpp"

namespace qn {

inline constexpr int kRansScaleBits = 16;
inline constexpr std::uint32_t kRansScale = 1u << kRansScaleBits;

/// Counts -> frequencies summing to 2^16, every present symbol >= 1.
std::vector<std::uint32_t> normalize_frequencies(const std::vector<std::uint64_t>& counts);

/// Encodes signed symbols (int8/int16 data widened to int32) or bytes.
template <class S>
std::vector<std::uint8_t> rans_encode(const S* symbols, index_t count);

/// Decodes exactly `count` symbols into `out`; throws std::invalid_argument
/// on a malformed stream (wrong count, bad table, truncation, trailing bytes,
/// a symbol outside S).
template <class S>
void rans_decode(const std::uint8_t* data, index_t size, index_t count, S* out);

/// Number of symbols a stream says it holds (reads only its first varint).
index_t rans_stream_count(const std::uint8_t* data, index_t size);

}  // namespace qn
