// Coefficient quantisers and bit packing (issue 3). Pure C++, no Python.
//
// Conventions shared with the numpy reference (quantonium.quant_reference):
//  * Data are flat runs of `count` values; group g covers values
//    [g*group_size, min((g+1)*group_size, count)).
//  * Uniform quantiser: t = x / step_g (in the data's precision),
//    q = rint(t) (round half to even), q = 0 where |t| < 0.5 + dead_zone.
//    Dequantised value: q * step_g.
//  * Fixed-rate quantiser, `bits` in 2..8, fp16 scales (and minimums):
//      symmetric:  qmax = 2^(bits-1) - 1, scale = fp16(absmax / qmax),
//                  q = clamp(rint(x / scale), -qmax, qmax), stored q + qmax;
//      asymmetric: scale = fp16((max - min) / (2^bits - 1)), m = fp16(min),
//                  q = clamp(rint((x - m) / scale), 0, 2^bits - 1).
//    A zero scale stores zeros. Dequantised: (q - qmax) * scale, or m + q * scale.
//  * Bit packing: value i occupies bits [i*bits, (i+1)*bits) of a
//    little-endian bit stream (LSB first); the last byte is zero-padded.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "quantonium/checked.hpp"
#include "quantonium/layout.hpp"

namespace qn {

/// Number of groups of `group_size` covering `count` values (never
/// overflows). Throws std::invalid_argument if count < 0 or group_size < 1.
inline index_t group_count(index_t count, index_t group_size) {
  if (count < 0) throw std::invalid_argument("count must be >= 0, got " + std::to_string(count));
  if (group_size < 1)
    throw std::invalid_argument("group_size must be >= 1, got " + std::to_string(group_size));
  return ceil_div(count, group_size);
}

/// Bytes of `count` values of `bits` bits packed: ceil(count * bits / 8),
/// computed without forming count * bits. Throws std::invalid_argument if
/// count < 0, bits is not in 1..16, or the size does not fit in index_t.
inline index_t packed_bytes(index_t count, int bits) {
  if (count < 0) throw std::invalid_argument("count must be >= 0, got " + std::to_string(count));
  if (bits < 1 || bits > 16)
    throw std::invalid_argument("bits must be in 1..16, got " + std::to_string(bits));
  // count = 8a + r: ceil(count * bits / 8) = a * bits + ceil(r * bits / 8).
  index_t whole, total;
  if (!mul_fits(count / 8, bits, &whole) || !add_fits(whole, ceil_div(count % 8 * bits, 8), &total))
    throw std::invalid_argument("count=" + std::to_string(count) + " values of " +
                                std::to_string(bits) + " bits: the packed size overflows 64-bit sizes");
  return total;
}

/// Uniform quantisation with one step per group. Returns the number of values
/// whose symbol did not fit in S (those are clamped); 0 means success.
template <class T, class S>
index_t quantize_uniform(const T* x, index_t count, const float* steps, index_t group_size,
                         double dead_zone, S* q, int nthreads);

template <class S, class T>
void dequantize_uniform(const S* q, index_t count, const float* steps, index_t group_size, T* out,
                        int nthreads);

/// Fixed-rate quantisation to `bits` per value, packed. `scales` and `mins`
/// (asymmetric only; else nullptr) receive one IEEE fp16 bit pattern per
/// group; `packed` receives packed_bytes(count, bits) bytes. Returns false if
/// a scale is not finite in fp16.
template <class T>
bool quantize_fixed(const T* x, index_t count, int bits, index_t group_size, std::uint16_t* scales,
                    std::uint16_t* mins, std::uint8_t* packed, int nthreads);

void dequantize_fixed(const std::uint8_t* packed, index_t count, int bits, index_t group_size,
                      const std::uint16_t* scales, const std::uint16_t* mins, float* out,
                      int nthreads);

/// Packs `count` values (each < 2^bits, bits in 1..16) LSB first.
template <class U>
void pack_bits(const U* values, index_t count, int bits, std::uint8_t* out);
/// Unpacks `count` values; `in` must hold packed_bytes(count, bits) bytes.
template <class U>
void unpack_bits(const std::uint8_t* in, index_t count, int bits, U* out);

/// IEEE binary16 conversions (round to nearest even).
std::uint16_t float_to_half(float f);
float half_to_float(std::uint16_t h);

}  // namespace qn
