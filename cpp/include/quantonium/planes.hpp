// Byte planes of floating-point values, for the lossless codec (issue 9).
//
// The split of ZipNN and DFloat11: the exponent of trained weights has low
// entropy, sign and mantissa bits are close to random. A value is cut into an
// exponent byte (plane 0) and the bytes of sign+mantissa (sign just above the
// mantissa's top bit), low byte first (planes 1..):
//
//   float32   exponent 8 bits   sign+mantissa 24 bits -> 3 planes
//   float16   exponent 5 bits   sign+mantissa 11 bits -> 2 planes
//   bfloat16  exponent 8 bits   sign+mantissa  8 bits -> 1 plane
//
// The values are given as their unsigned integer bit patterns (uint32 for
// float32, uint16 for the 16-bit formats). split_planes writes every plane in
// one pass; or_plane ORs one decoded plane back into the bit patterns, so a
// decoder holds the output and one plane at a time. Both are pure bit
// operations: exact, and independent of the number of threads.
#pragma once

#include <cstdint>

#include "quantonium/layout.hpp"

namespace qn {

enum class FloatLayout { f32, f16, bf16 };

struct PlaneLayout {
  int exp_shift;   ///< position of the exponent's lowest bit
  int exp_mask;    ///< the exponent's bits, once shifted down
  int mant_bits;   ///< mantissa bits (below the exponent)
  int sign_shift;  ///< position of the sign bit
  int planes;      ///< exponent plane + sign/mantissa planes
};

constexpr PlaneLayout plane_layout(FloatLayout f) {
  return f == FloatLayout::f32 ? PlaneLayout{23, 0xFF, 23, 31, 4}
         : f == FloatLayout::f16 ? PlaneLayout{10, 0x1F, 10, 15, 3}
                                 : PlaneLayout{7, 0xFF, 7, 15, 2};
}

/// Writes the planes of `count` bit patterns: planes[p] has room for `count` bytes,
/// for p in [0, plane_layout(f).planes). U is uint32_t for f32, uint16_t otherwise.
template <class U>
void split_planes(const U* bits, index_t count, FloatLayout f, std::uint8_t* const* planes, int nthreads);

/// bits[i] |= (the contribution of byte plane[i] as plane number `index`), for i < count.
template <class U>
void or_plane(U* bits, const std::uint8_t* plane, index_t count, int index, FloatLayout f, int nthreads);

/// bits[i] = the value whose planes are planes[0..P)[i] (one pass; the inverse of split_planes).
template <class U>
void join_planes(const std::uint8_t* const* planes, index_t count, FloatLayout f, U* bits, int nthreads);

}  // namespace qn
