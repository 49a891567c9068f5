// Uniform and fixed-rate quantisers, bit packing, fp16 conversion.
// Definitions: include/quantonium/quant.hpp.
#include "quantonium/quant.hpp"

#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "parallel.hpp"
#include "simd_kernels.hpp"

namespace qn {

namespace {

// Blocks of 64 groups per thread share: a multiple of group_size (blocks start
// on group boundaries, and on byte boundaries for packed data), computed
// without overflow: huge groups give a grain of one group.
index_t grain(index_t group_size) {
  return group_size * std::min<index_t>(64, kIndexMax / group_size);
}

void check_count(index_t count) {
  if (count < 0) throw std::invalid_argument("count must be >= 0, got " + std::to_string(count));
}

void check_threads(int nthreads) {
  if (nthreads < 1 || nthreads > kMaxThreads)
    throw std::invalid_argument("nthreads must be in 1.." + std::to_string(kMaxThreads) +
                                ", got " + std::to_string(nthreads));
}

}  // namespace

std::uint16_t float_to_half(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const std::uint32_t absx = x & 0x7FFFFFFFu;
  if (absx >= 0x7F800000u)  // inf or NaN
    return static_cast<std::uint16_t>(sign | 0x7C00u | (absx > 0x7F800000u ? 0x200u : 0u));
  if (absx >= 0x477FF000u)  // rounds to >= 65520: overflow to inf
    return static_cast<std::uint16_t>(sign | 0x7C00u);
  if (absx < 0x38800000u) {  // result is subnormal or zero in half
    if (absx < 0x33000000u) return static_cast<std::uint16_t>(sign);  // < 2^-25: rounds to 0
    const std::uint32_t mant = (absx & 0x7FFFFFu) | 0x800000u;
    const int shift = 126 - static_cast<int>(absx >> 23);  // 14..24
    std::uint32_t h = mant >> shift;
    const std::uint32_t rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1u))) ++h;
    return static_cast<std::uint16_t>(sign | h);
  }
  std::uint32_t h = ((absx - 0x38000000u) >> 13);  // rebias exponent, keep 10 mantissa bits
  const std::uint32_t rem = absx & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return static_cast<std::uint16_t>(sign | h);
}

float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = (static_cast<std::uint32_t>(h) & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu, x;
  if (exp == 0) {
    if (mant == 0) {
      x = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400u) == 0);
      x = sign | (static_cast<std::uint32_t>(112 - e) << 23) | ((mant & 0x3FFu) << 13);
    }
  } else if (exp == 31) {
    x = sign | 0x7F800000u | (mant << 13);
  } else {
    x = sign | ((exp + 112) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

template <class T, class S>
index_t quantize_uniform(const T* x, index_t count, const float* steps, index_t group_size,
                         double dead_zone, S* q, int nthreads) {
  check_count(count);
  check_threads(nthreads);
  if (group_size < 1) throw std::invalid_argument("group_size must be >= 1");
  if (!(dead_zone >= 0.0 && dead_zone < 0.5))
    throw std::invalid_argument("dead_zone must be in [0, 0.5)");
  const index_t ng = group_count(count, group_size);
  for (index_t g = 0; g < ng; ++g)
    if (!(steps[g] > 0.0f) || !std::isfinite(steps[g]))
      throw std::invalid_argument("every step must be finite and > 0 (group " + std::to_string(g) +
                                  ")");
  const T zero_bin = static_cast<T>(0.5 + dead_zone);
  const auto& K = simd::quant_kernels<T, S>();
  std::atomic<index_t> clamped{0};
  detail::parallel_for(count, nthreads, grain(group_size), [&](index_t b, index_t e) {
    index_t bad = 0;
    for (index_t g0 = b, g1; g0 < e; g0 = g1) {
      g1 = g0 + std::min(e - g0, group_size);
      bad += K.quantize(x + g0, g1 - g0, static_cast<T>(steps[g0 / group_size]), zero_bin, q + g0);
    }
    clamped += bad;
  });
  return clamped.load();
}

template <class S, class T>
void dequantize_uniform(const S* q, index_t count, const float* steps, index_t group_size, T* out,
                        int nthreads) {
  check_count(count);
  check_threads(nthreads);
  if (group_size < 1) throw std::invalid_argument("group_size must be >= 1");
  const auto& K = simd::quant_kernels<T, S>();
  detail::parallel_for(count, nthreads, grain(group_size), [&](index_t b, index_t e) {
    for (index_t g0 = b, g1; g0 < e; g0 = g1) {
      g1 = g0 + std::min(e - g0, group_size);
      K.dequantize(q + g0, g1 - g0, static_cast<T>(steps[g0 / group_size]), out + g0);
    }
  });
}

namespace {

void check_bits(int bits, int lo, int hi) {
  if (bits < lo || bits > hi)
    throw std::invalid_argument("bits must be in " + std::to_string(lo) + ".." +
                                std::to_string(hi) + ", got " + std::to_string(bits));
}

// Packs values v[0 .. e-b) as stream positions [b, e) (b a multiple of 8, so
// bytes are not shared with other ranges). 8, 4 and 2 bits have byte-aligned
// fast paths; the others go through a 64-bit accumulator.
template <class U>
void pack_range(const U* v, index_t b, index_t e, int bits, std::uint8_t* out) {
  if (bits == 8 || bits == 4 || bits == 2) {
    const int per = 8 / bits;
    const index_t full = (e - b) / per;
    std::uint8_t* o = out + b / 8 * bits;
    if (bits == 8) {
      for (index_t j = 0; j < full; ++j) o[j] = static_cast<std::uint8_t>(v[j]);
    } else if (bits == 4) {
      for (index_t j = 0; j < full; ++j)
        o[j] = static_cast<std::uint8_t>((v[2 * j] & 0xF) | ((v[2 * j + 1] & 0xF) << 4));
    } else {
      for (index_t j = 0; j < full; ++j)
        o[j] = static_cast<std::uint8_t>((v[4 * j] & 3) | ((v[4 * j + 1] & 3) << 2) |
                                         ((v[4 * j + 2] & 3) << 4) | ((v[4 * j + 3] & 3) << 6));
    }
    const index_t done = full * per;
    if (done < e - b) {
      std::uint8_t last = 0;
      for (index_t i = done; i < e - b; ++i)
        last = static_cast<std::uint8_t>(last | ((v[i] & ((1 << bits) - 1)) << ((i - done) * bits)));
      o[full] = last;
    }
    return;
  }
  std::uint64_t acc = 0;
  int nacc = 0;
  std::uint8_t* o = out + b / 8 * bits;
  const std::uint64_t mask = (std::uint64_t(1) << bits) - 1;
  for (index_t i = b; i < e; ++i) {
    acc |= (static_cast<std::uint64_t>(v[i - b]) & mask) << nacc;
    nacc += bits;
    while (nacc >= 8) {
      *o++ = static_cast<std::uint8_t>(acc);
      acc >>= 8;
      nacc -= 8;
    }
  }
  if (nacc > 0) *o = static_cast<std::uint8_t>(acc);
}

// Unpacks stream positions [b, e) (b a multiple of 8) into v[0 .. e-b).
template <class U>
void unpack_range(const std::uint8_t* in, index_t b, index_t e, int bits, U* v) {
  if (bits == 8 || bits == 4 || bits == 2) {
    const std::uint8_t* p = in + b / 8 * bits;
    const int mask = (1 << bits) - 1;
    if (bits == 8) {
      for (index_t i = 0; i < e - b; ++i) v[i] = static_cast<U>(p[i]);
    } else if (bits == 4) {
      for (index_t i = 0; i < e - b; ++i) v[i] = static_cast<U>((p[i >> 1] >> ((i & 1) * 4)) & mask);
    } else {
      for (index_t i = 0; i < e - b; ++i) v[i] = static_cast<U>((p[i >> 2] >> ((i & 3) * 2)) & mask);
    }
    return;
  }
  std::uint64_t acc = 0;
  int nacc = 0;
  const std::uint8_t* p = in + b / 8 * bits;
  const std::uint64_t mask = (std::uint64_t(1) << bits) - 1;
  for (index_t i = b; i < e; ++i) {
    while (nacc < bits) {
      acc |= static_cast<std::uint64_t>(*p++) << nacc;
      nacc += 8;
    }
    v[i - b] = static_cast<U>(acc & mask);
    acc >>= bits;
    nacc -= bits;
  }
}

}  // namespace

template <class U>
void pack_bits(const U* values, index_t count, int bits, std::uint8_t* out) {
  check_bits(bits, 1, 16);
  check_count(count);
  if (count > 0) std::memset(out, 0, static_cast<std::size_t>(packed_bytes(count, bits)));
  pack_range(values, 0, count, bits, out);
}

template <class U>
void unpack_bits(const std::uint8_t* in, index_t count, int bits, U* out) {
  check_bits(bits, 1, 16);
  check_count(count);
  unpack_range(in, 0, count, bits, out);
}

template <class T>
bool quantize_fixed(const T* x, index_t count, int bits, index_t group_size, std::uint16_t* scales,
                    std::uint16_t* mins, std::uint8_t* packed, int nthreads) {
  check_bits(bits, 2, 8);
  check_count(count);
  check_threads(nthreads);
  if (group_size < 1 || group_size % 8 != 0)
    throw std::invalid_argument("group_size must be a positive multiple of 8");
  const bool asym = mins != nullptr;
  const int qmax = (1 << (bits - 1)) - 1, levels = (1 << bits) - 1;
  std::atomic<bool> ok{true};
  const auto& FK = simd::fixed_kernels();
  if (count > 0) std::memset(packed, 0, static_cast<std::size_t>(packed_bytes(count, bits)));
  detail::parallel_for(count, nthreads, grain(group_size), [&](index_t b, index_t e) {
    std::uint8_t sym[256 * 8];
    for (index_t g0 = b, g1; g0 < e; g0 = g1) {
      g1 = g0 + std::min(e - g0, group_size);
      const index_t g = g0 / group_size;
      float lo = static_cast<float>(x[g0]), hi = lo;
      if constexpr (std::is_same_v<T, float>) {
        FK.minmax_f32(x + g0, g1 - g0, &lo, &hi);
      } else {
        for (index_t i = g0; i < g1; ++i) {
          const float v = static_cast<float>(x[i]);
          lo = v < lo ? v : lo;
          hi = v > hi ? v : hi;
        }
      }
      const float amax = std::max(std::fabs(lo), std::fabs(hi));
      float m = 0.0f;
      if (asym) {
        mins[g] = float_to_half(lo);
        m = half_to_float(mins[g]);
        scales[g] = float_to_half((hi - m) / static_cast<float>(levels));
      } else {
        scales[g] = float_to_half(amax / static_cast<float>(qmax));
      }
      const float scale = half_to_float(scales[g]);
      if (!std::isfinite(scale) || !std::isfinite(m) || !std::isfinite(lo) || !std::isfinite(hi))
        ok = false;
      const float off = asym ? 0.0f : static_cast<float>(qmax);
      const float top = asym ? static_cast<float>(levels) : static_cast<float>(2 * qmax);
      for (index_t s0 = g0, s1; s0 < g1; s0 = s1) {
        s1 = s0 + std::min(g1 - s0, index_t(256 * 8));
        if (scale == 0.0f || !std::isfinite(scale)) {
          std::memset(sym, asym ? 0 : qmax, static_cast<std::size_t>(s1 - s0));
        } else if constexpr (std::is_same_v<T, float>) {
          FK.symbols_f32(x + s0, s1 - s0, m, scale, off, top, sym);
        } else {
          FK.symbols_f64(x + s0, s1 - s0, m, scale, off, top, sym);
        }
        // s0 is a multiple of 8 (group_size is), so whole bytes are written
        pack_range(sym, s0, s1, bits, packed);
      }
    }
  });
  return ok.load();
}

void dequantize_fixed(const std::uint8_t* packed, index_t count, int bits, index_t group_size,
                      const std::uint16_t* scales, const std::uint16_t* mins, float* out,
                      int nthreads) {
  check_bits(bits, 2, 8);
  check_count(count);
  check_threads(nthreads);
  if (group_size < 1 || group_size % 8 != 0)
    throw std::invalid_argument("group_size must be a positive multiple of 8");
  const int qmax = (1 << (bits - 1)) - 1;
  detail::parallel_for(count, nthreads, grain(group_size), [&](index_t b, index_t e) {
    std::uint8_t sym[256 * 8];
    for (index_t g0 = b, g1; g0 < e; g0 = g1) {
      g1 = g0 + std::min(e - g0, group_size);
      const index_t g = g0 / group_size;
      const float scale = half_to_float(scales[g]);
      const float m = mins ? half_to_float(mins[g]) : 0.0f;
      for (index_t s0 = g0, s1; s0 < g1; s0 = s1) {
        s1 = s0 + std::min(g1 - s0, index_t(256 * 8));
        unpack_range(packed, s0, s1, bits, sym);
        if (mins)
          for (index_t i = s0; i < s1; ++i) out[i] = m + static_cast<float>(sym[i - s0]) * scale;
        else
          for (index_t i = s0; i < s1; ++i)
            out[i] = static_cast<float>(static_cast<int>(sym[i - s0]) - qmax) * scale;
      }
    }
  });
}

template index_t quantize_uniform<float, std::int8_t>(const float*, index_t, const float*, index_t,
                                                      double, std::int8_t*, int);
template index_t quantize_uniform<float, std::int16_t>(const float*, index_t, const float*,
                                                       index_t, double, std::int16_t*, int);
template index_t quantize_uniform<double, std::int8_t>(const double*, index_t, const float*,
                                                       index_t, double, std::int8_t*, int);
template index_t quantize_uniform<double, std::int16_t>(const double*, index_t, const float*,
                                                        index_t, double, std::int16_t*, int);
template void dequantize_uniform<std::int8_t, float>(const std::int8_t*, index_t, const float*,
                                                     index_t, float*, int);
template void dequantize_uniform<std::int16_t, float>(const std::int16_t*, index_t, const float*,
                                                      index_t, float*, int);
template void dequantize_uniform<std::int8_t, double>(const std::int8_t*, index_t, const float*,
                                                      index_t, double*, int);
template void dequantize_uniform<std::int16_t, double>(const std::int16_t*, index_t, const float*,
                                                       index_t, double*, int);
template bool quantize_fixed<float>(const float*, index_t, int, index_t, std::uint16_t*,
                                    std::uint16_t*, std::uint8_t*, int);
template bool quantize_fixed<double>(const double*, index_t, int, index_t, std::uint16_t*,
                                     std::uint16_t*, std::uint8_t*, int);
template void pack_bits<std::uint8_t>(const std::uint8_t*, index_t, int, std::uint8_t*);
template void pack_bits<std::uint16_t>(const std::uint16_t*, index_t, int, std::uint8_t*);
template void unpack_bits<std::uint8_t>(const std::uint8_t*, index_t, int, std::uint8_t*);
template void unpack_bits<std::uint16_t>(const std::uint8_t*, index_t, int, std::uint16_t*);

}  // namespace qn
