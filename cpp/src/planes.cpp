// Byte planes of floating-point values (include/quantonium/planes.hpp).
#include "quantonium/planes.hpp"

#include <stdexcept>

#include "parallel.hpp"

namespace qn {

namespace {

constexpr index_t kGrain = 1 << 16;  // values per parallel unit

template <class U>
void check_width(FloatLayout f) {
  if ((sizeof(U) == 4) != (f == FloatLayout::f32))
    throw std::invalid_argument("float32 values travel as uint32 bit patterns, float16 / bfloat16 as uint16");
}

}  // namespace

template <class U, int P>
void split_block(const U* bits, index_t b, index_t e, const PlaneLayout& L, std::uint8_t* const* planes) {
  // one pass over the values, P (a constant) planes written per value: GCC vectorises the loop
  const std::uint32_t mant_mask = (std::uint32_t{1} << L.mant_bits) - 1;
  const std::uint32_t emask = static_cast<std::uint32_t>(L.exp_mask);
  const int es = L.exp_shift, mb = L.mant_bits, ss = L.sign_shift;
  std::uint8_t* out[P];
  for (int p = 0; p < P; ++p) out[p] = planes[p];
  for (index_t i = b; i < e; ++i) {
    const std::uint32_t u = bits[i];
    const std::uint32_t sm = ((u >> ss) << mb) | (u & mant_mask);
    out[0][i] = static_cast<std::uint8_t>((u >> es) & emask);
    for (int p = 1; p < P; ++p) out[p][i] = static_cast<std::uint8_t>(sm >> (8 * (p - 1)));
  }
}

template <class U>
void split_planes(const U* bits, index_t count, FloatLayout f, std::uint8_t* const* planes, int nthreads) {
  check_width<U>(f);
  const PlaneLayout L = plane_layout(f);
  detail::parallel_for(count, nthreads, kGrain, [&](index_t b, index_t e) {
    switch (L.planes) {
      case 4: split_block<U, 4>(bits, b, e, L, planes); break;
      case 3: split_block<U, 3>(bits, b, e, L, planes); break;
      default: split_block<U, 2>(bits, b, e, L, planes); break;
    }
  });
}

template <class U>
void or_plane(U* bits, const std::uint8_t* plane, index_t count, int index, FloatLayout f, int nthreads) {
  check_width<U>(f);
  const PlaneLayout L = plane_layout(f);
  if (index < 0 || index >= L.planes) throw std::invalid_argument("plane index out of range");
  const std::uint32_t mant_mask = (std::uint32_t{1} << L.mant_bits) - 1;
  detail::parallel_for(count, nthreads, kGrain, [&](index_t b, index_t e) {
    if (index == 0) {
      for (index_t i = b; i < e; ++i)
        bits[i] = static_cast<U>(bits[i] | (static_cast<std::uint32_t>(plane[i]) << L.exp_shift));
      return;
    }
    const int shift = 8 * (index - 1);
    for (index_t i = b; i < e; ++i) {
      const std::uint32_t v = static_cast<std::uint32_t>(plane[i]) << shift;  // bits of sign+mantissa
      const std::uint32_t u = (v & mant_mask) | ((v >> L.mant_bits) << L.sign_shift);
      bits[i] = static_cast<U>(bits[i] | u);
    }
  });
}

template <class U, int P>
void join_block(const std::uint8_t* const* planes, index_t b, index_t e, const PlaneLayout& L, U* bits) {
  const std::uint32_t mant_mask = (std::uint32_t{1} << L.mant_bits) - 1;
  const int es = L.exp_shift, mb = L.mant_bits, ss = L.sign_shift;
  const std::uint8_t* in[P];
  for (int p = 0; p < P; ++p) in[p] = planes[p];
  for (index_t i = b; i < e; ++i) {
    std::uint32_t sm = 0;
    for (int p = 1; p < P; ++p) sm |= static_cast<std::uint32_t>(in[p][i]) << (8 * (p - 1));
    // as or_plane, plane by plane: the exponent unmasked, sign+mantissa bits above the mantissa to the sign
    const std::uint32_t u = (static_cast<std::uint32_t>(in[0][i]) << es) | (sm & mant_mask) | ((sm >> mb) << ss);
    bits[i] = static_cast<U>(u);
  }
}

template <class U>
void join_planes(const std::uint8_t* const* planes, index_t count, FloatLayout f, U* bits, int nthreads) {
  check_width<U>(f);
  const PlaneLayout L = plane_layout(f);
  detail::parallel_for(count, nthreads, kGrain, [&](index_t b, index_t e) {
    switch (L.planes) {
      case 4: join_block<U, 4>(planes, b, e, L, bits); break;
      case 3: join_block<U, 3>(planes, b, e, L, bits); break;
      default: join_block<U, 2>(planes, b, e, L, bits); break;
    }
  });
}

template void join_planes<std::uint32_t>(const std::uint8_t* const*, index_t, FloatLayout, std::uint32_t*, int);
template void join_planes<std::uint16_t>(const std::uint8_t* const*, index_t, FloatLayout, std::uint16_t*, int);
template void split_planes<std::uint32_t>(const std::uint32_t*, index_t, FloatLayout, std::uint8_t* const*, int);
template void split_planes<std::uint16_t>(const std::uint16_t*, index_t, FloatLayout, std::uint8_t* const*, int);
template void or_plane<std::uint32_t>(std::uint32_t*, const std::uint8_t*, index_t, int, FloatLayout, int);
template void or_plane<std::uint16_t>(std::uint16_t*, const std::uint8_t*, index_t, int, FloatLayout, int);

}  // namespace qn
