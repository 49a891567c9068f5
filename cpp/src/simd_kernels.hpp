// Elementwise complex kernels of the Phi-RFT's fused phase pass.
//
// Each kernel is compiled several times in simd_kernels.cpp, once per
// instruction set (x86-64: SSE2 baseline, AVX2+FMA, AVX-512; ARM64: NEON,
// which every ARMv8-A core has), and the best one the CPU supports is chosen
// once at run time. QUANTONIUM_SIMD=<path> forces a lower path (tests use it
// to check that every path gives the same numbers).
//
// Arrays are interleaved complex (re, im, re, im, ...); n counts complex
// elements. Inputs and outputs never alias.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "quantonium/layout.hpp"

namespace qn::simd {

template <class T>
struct Kernels {
  /// out = a * p
  void (*cmul)(const T* a, const T* p, T* out, index_t n);
  /// out = a * conj(p)
  void (*cmul_conj)(const T* a, const T* p, T* out, index_t n);
  /// out = x * p, x real (n reals)
  void (*rmul)(const T* x, const T* p, T* out, index_t n);
  /// out = x * conj(p), x real
  void (*rmul_conj)(const T* x, const T* p, T* out, index_t n);
  /// out = x + 0i, x real
  void (*real_to_complex)(const T* x, T* out, index_t n);
  /// out = a, n complex, with non-temporal (streaming) stores where the CPU
  /// has them (x86-64; plain stores elsewhere): the destination lines are
  /// neither read first nor kept in cache, which saves a third of the memory
  /// traffic of writing an output larger than the cache. The values are
  /// exactly a's. Call stream_fence() before another thread reads `out`.
  void (*stream)(const T* a, T* out, index_t n);
};

template <class T>
const Kernels<T>& kernels();

/// Orders the streaming stores of Kernels::stream before every later store
/// (x86-64: sfence; nothing elsewhere).
void stream_fence();

/// Uniform quantisation of one group (see quantonium/quant.hpp): returns the
/// number of values that did not fit in S (clamped; NaN stored as 0).
template <class T, class S>
struct QuantKernels {
  index_t (*quantize)(const T* x, index_t n, T step, T zero_bin, S* q);
  void (*dequantize)(const S* q, index_t n, T step, T* out);
};

template <class T, class S>
const QuantKernels<T, S>& quant_kernels();

/// Fixed-rate symbols of one group: sym = clamp(rint((float(x) - m) / scale) + off, 0, top).
struct FixedKernels {
  void (*symbols_f32)(const float* x, index_t n, float m, float scale, float off, float top,
                      std::uint8_t* sym);
  void (*symbols_f64)(const double* x, index_t n, float m, float scale, float off, float top,
                      std::uint8_t* sym);
  /// min and max of n > 0 floats (NaN in the input makes one of them NaN).
  void (*minmax_f32)(const float* x, index_t n, float* lo, float* hi);
};

const FixedKernels& fixed_kernels();

/// SIMD paths compiled into this binary, lowest first.
std::vector<std::string> compiled_paths();
/// The path in use (after QUANTONIUM_SIMD is applied), e.g. "avx2".
std::string selected_path();

}  // namespace qn::simd
