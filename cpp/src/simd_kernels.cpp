// Runtime-dispatched SIMD kernels (see simd_kernels.hpp).
//
// The loop bodies are written once as plain C++ that GCC and Clang vectorise
// (this file is compiled with -O3), and instantiated inside functions carrying
// target attributes, so one binary holds an SSE2, an AVX2+FMA and an AVX-512
// version on x86-64. The choice is made once, from __builtin_cpu_supports.
// Compiler multiversioning was chosen over Highway/xsimd because the kernels
// are a handful of elementwise loops that GCC vectorises well; measured with
// BM_PhaseKernel (bench/cpp/bench_rft.cpp), the AVX2 path runs the phase
// multiply about 1.9x faster than the SSE2 one (README, "How the native core
// works"). The streaming copy needs intrinsics (GCC emits no streaming store
// by itself): one version per path, through a macro.
#include "simd_kernels.hpp"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>

#if defined(__GNUC__)
#define QN_ALWAYS_INLINE inline __attribute__((always_inline))
#define QN_RESTRICT __restrict__
#else
#define QN_ALWAYS_INLINE inline
#define QN_RESTRICT
#endif

#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
#define QN_X86_64 1
#include <immintrin.h>  // streaming stores (SSE2 baseline; AVX, AVX-512 in their paths)
#endif

namespace qn::simd {
namespace {

template <class T>
QN_ALWAYS_INLINE void cmul_body(const T* QN_RESTRICT a, const T* QN_RESTRICT p, T* QN_RESTRICT out,
                                index_t n) {
  for (index_t j = 0; j < n; ++j) {
    const T ar = a[2 * j], ai = a[2 * j + 1], pr = p[2 * j], pi = p[2 * j + 1];
    out[2 * j] = ar * pr - ai * pi;
    out[2 * j + 1] = ar * pi + ai * pr;
  }
}

template <class T>
QN_ALWAYS_INLINE void cmul_conj_body(const T* QN_RESTRICT a, const T* QN_RESTRICT p,
                                     T* QN_RESTRICT out, index_t n) {
  for (index_t j = 0; j < n; ++j) {
    const T ar = a[2 * j], ai = a[2 * j + 1], pr = p[2 * j], pi = p[2 * j + 1];
    out[2 * j] = ar * pr + ai * pi;
    out[2 * j + 1] = ai * pr - ar * pi;
  }
}

template <class T>
QN_ALWAYS_INLINE void rmul_body(const T* QN_RESTRICT x, const T* QN_RESTRICT p, T* QN_RESTRICT out,
                                index_t n) {
  for (index_t j = 0; j < n; ++j) {
    out[2 * j] = x[j] * p[2 * j];
    out[2 * j + 1] = x[j] * p[2 * j + 1];
  }
}

template <class T>
QN_ALWAYS_INLINE void rmul_conj_body(const T* QN_RESTRICT x, const T* QN_RESTRICT p,
                                     T* QN_RESTRICT out, index_t n) {
  for (index_t j = 0; j < n; ++j) {
    out[2 * j] = x[j] * p[2 * j];
    out[2 * j + 1] = -(x[j] * p[2 * j + 1]);
  }
}

template <class T>
QN_ALWAYS_INLINE void r2c_body(const T* QN_RESTRICT x, T* QN_RESTRICT out, index_t n) {
  for (index_t j = 0; j < n; ++j) {
    out[2 * j] = x[j];
    out[2 * j + 1] = T(0);
  }
}

// Streaming copy of n complex values (2n scalars): plain stores up to the
// first BYTES boundary of out, BYTES-wide non-temporal stores (unaligned
// loads) for the body, plain stores for the tail. A macro, so that the vector
// statements sit directly in the function carrying the path's target
// attribute (GCC will not inline an intrinsic wrapper across targets).
#define QN_STREAM_BODY(BYTES, COPY_F, COPY_D)                                      \
  const index_t count = 2 * n;                                                     \
  constexpr index_t lane = (BYTES) / index_t(sizeof(T));                           \
  index_t i = 0;                                                                   \
  while (i < count && (reinterpret_cast<std::uintptr_t>(out + i) % (BYTES)) != 0) { \
    out[i] = a[i];                                                                 \
    ++i;                                                                           \
  }                                                                                \
  for (; i + 4 * lane <= count; i += 4 * lane) {                                  \
    for (index_t j = i; j < i + 4 * lane; j += lane) { /* unrolled by GCC */       \
      if constexpr (sizeof(T) == 4) {                                              \
        COPY_F;                                                                    \
      } else {                                                                     \
        COPY_D;                                                                    \
      }                                                                            \
    }                                                                              \
  }                                                                                \
  for (index_t j = i; j + lane <= count; j += lane, i += lane) {                   \
    if constexpr (sizeof(T) == 4) {                                                \
      COPY_F;                                                                      \
    } else {                                                                       \
      COPY_D;                                                                      \
    }                                                                              \
  }                                                                                \
  for (; i < count; ++i) out[i] = a[i];

#define QN_AVX2_ATTR __attribute__((target("avx2,fma")))
#define QN_AVX512_ATTR __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,fma")))
#define QN_F(p) reinterpret_cast<float*>(p)
#define QN_CF(p) reinterpret_cast<const float*>(p)
#define QN_D(p) reinterpret_cast<double*>(p)
#define QN_CD(p) reinterpret_cast<const double*>(p)

#if defined(QN_X86_64)
template <class T>
void stream_sse2(const T* QN_RESTRICT a, T* QN_RESTRICT out, index_t n) {
  QN_STREAM_BODY(16, _mm_stream_ps(QN_F(out + j), _mm_loadu_ps(QN_CF(a + j))),
                 _mm_stream_pd(QN_D(out + j), _mm_loadu_pd(QN_CD(a + j))))
}
template <class T>
QN_AVX2_ATTR void stream_avx2_path(const T* QN_RESTRICT a, T* QN_RESTRICT out, index_t n) {
  QN_STREAM_BODY(32, _mm256_stream_ps(QN_F(out + j), _mm256_loadu_ps(QN_CF(a + j))),
                 _mm256_stream_pd(QN_D(out + j), _mm256_loadu_pd(QN_CD(a + j))))
}
template <class T>
QN_AVX512_ATTR void stream_avx512_path(const T* QN_RESTRICT a, T* QN_RESTRICT out, index_t n) {
  QN_STREAM_BODY(64, _mm512_stream_ps(QN_F(out + j), _mm512_loadu_ps(QN_CF(a + j))),
                 _mm512_stream_pd(QN_D(out + j), _mm512_loadu_pd(QN_CD(a + j))))
}
#else
template <class T>
void stream_plain(const T* QN_RESTRICT a, T* QN_RESTRICT out, index_t n) {
  std::memcpy(out, a, static_cast<std::size_t>(2 * n) * sizeof(T));  // no streaming stores here
}
#endif

// Uniform quantisation of one run, in blocks of 256 so that GCC vectorises
// each pass (it will not vectorise float -> int8 in one loop, nor a loop that
// mixes the clamp with the out-of-range count): 1. count symbols outside S
// (NaN included), 2. round (half to even), apply the dead zone, clamp, convert
// to int32, 3. narrow to S. nearbyint becomes vroundps on AVX2/AVX-512.
template <class T, class S>
QN_ALWAYS_INLINE index_t quant_body(const T* QN_RESTRICT x, index_t n, T step, T zero_bin,
                                    S* QN_RESTRICT q) {
  constexpr T lo = static_cast<T>(std::numeric_limits<S>::min());
  constexpr T hi = static_cast<T>(std::numeric_limits<S>::max());
  index_t bad = 0;
  std::int32_t tmp[256];
  for (index_t b = 0; b < n; b += 256) {
    const index_t m = n - b < 256 ? n - b : 256;
    const T* xb = x + b;
    int nb = 0;
    for (index_t j = 0; j < m; ++j) {
      const T r = std::nearbyint(xb[j] / step);
      nb += !(r >= lo) | !(r <= hi);
    }
    for (index_t j = 0; j < m; ++j) {
      const T t = xb[j] / step;
      T r = std::nearbyint(t);
      // written so that NaN takes the zero branch: converting NaN to int is
      // undefined behaviour (the call fails anyway: NaN counts in nb)
      r = std::fabs(t) >= zero_bin ? r : T(0);
      r = r < lo ? lo : r;
      r = r > hi ? hi : r;
      tmp[j] = static_cast<std::int32_t>(r);
    }
    S* qb = q + b;
    for (index_t j = 0; j < m; ++j) qb[j] = static_cast<S>(tmp[j]);
    bad += nb;
  }
  return bad;
}

template <class T, class S>
QN_ALWAYS_INLINE void dequant_body(const S* QN_RESTRICT q, index_t n, T step, T* QN_RESTRICT out) {
  for (index_t i = 0; i < n; ++i) out[i] = static_cast<T>(q[i]) * step;
}

template <class T>
QN_ALWAYS_INLINE void fixed_body(const T* QN_RESTRICT x, index_t n, float m, float scale, float off,
                                 float top, std::uint8_t* QN_RESTRICT sym) {
  std::int32_t tmp[256];
  for (index_t b = 0; b < n; b += 256) {
    const index_t len = n - b < 256 ? n - b : 256;
    for (index_t j = 0; j < len; ++j) {
      float r = std::nearbyint((static_cast<float>(x[b + j]) - m) / scale) + off;
      r = r >= 0.0f ? r : 0.0f;  // NaN -> 0: converting NaN to int is undefined behaviour
      r = r > top ? top : r;
      tmp[j] = static_cast<std::int32_t>(r);
    }
    for (index_t j = 0; j < len; ++j) sym[b + j] = static_cast<std::uint8_t>(tmp[j]);
  }
}

// min / max through the bit patterns: mapping a float's bits to a signed
// integer that orders like the float (negative values flipped) turns the
// reductions into integer min / max, which vectorise without -ffast-math.
// NaNs map beyond the infinities, so they come out as NaN (never hidden).
QN_ALWAYS_INLINE void minmax_body(const float* QN_RESTRICT x, index_t n, float* lo, float* hi) {
  std::int32_t kmin = std::numeric_limits<std::int32_t>::max();
  std::int32_t kmax = std::numeric_limits<std::int32_t>::min();
  for (index_t i = 0; i < n; ++i) {
    std::int32_t u;
    std::memcpy(&u, x + i, 4);
    const std::int32_t k = u ^ ((u >> 31) & 0x7FFFFFFF);
    kmin = k < kmin ? k : kmin;
    kmax = k > kmax ? k : kmax;
  }
  kmin ^= (kmin >> 31) & 0x7FFFFFFF;
  kmax ^= (kmax >> 31) & 0x7FFFFFFF;
  std::memcpy(lo, &kmin, 4);
  std::memcpy(hi, &kmax, 4);
}

#define QN_DEFINE_FIXED(SUFFIX, ATTR)                                                         \
  ATTR void minmax_##SUFFIX(const float* x, index_t n, float* lo, float* hi) {                \
    minmax_body(x, n, lo, hi);                                                               \
  }                                                                                          \
  ATTR void fixed32_##SUFFIX(const float* x, index_t n, float m, float s, float o, float t,   \
                             std::uint8_t* q) {                                               \
    fixed_body(x, n, m, s, o, t, q);                                                         \
  }                                                                                          \
  ATTR void fixed64_##SUFFIX(const double* x, index_t n, float m, float s, float o, float t,  \
                             std::uint8_t* q) {                                               \
    fixed_body(x, n, m, s, o, t, q);                                                         \
  }

#define QN_DEFINE_QUANT(SUFFIX, ATTR)                                                         \
  template <class T, class S>                                                                \
  ATTR index_t quant_##SUFFIX(const T* x, index_t n, T step, T zb, S* q) {                   \
    return quant_body(x, n, step, zb, q);                                                    \
  }                                                                                          \
  template <class T, class S>                                                                \
  ATTR void dequant_##SUFFIX(const S* q, index_t n, T step, T* out) {                        \
    dequant_body(q, n, step, out);                                                           \
  }                                                                                          \
  template <class T, class S>                                                                \
  QuantKernels<T, S> make_quant_##SUFFIX() {                                                 \
    return QuantKernels<T, S>{&quant_##SUFFIX<T, S>, &dequant_##SUFFIX<T, S>};               \
  }

// One set of kernels per instruction set. QN_TARGET is empty for the baseline.
#define QN_DEFINE_KERNELS(SUFFIX, ATTR, STREAM)                                                 \
  template <class T>                                                                           \
  ATTR void cmul_##SUFFIX(const T* a, const T* p, T* out, index_t n) { cmul_body(a, p, out, n); } \
  template <class T>                                                                           \
  ATTR void cmul_conj_##SUFFIX(const T* a, const T* p, T* out, index_t n) {                    \
    cmul_conj_body(a, p, out, n);                                                              \
  }                                                                                            \
  template <class T>                                                                           \
  ATTR void rmul_##SUFFIX(const T* x, const T* p, T* out, index_t n) { rmul_body(x, p, out, n); } \
  template <class T>                                                                           \
  ATTR void rmul_conj_##SUFFIX(const T* x, const T* p, T* out, index_t n) {                    \
    rmul_conj_body(x, p, out, n);                                                              \
  }                                                                                            \
  template <class T>                                                                           \
  ATTR void r2c_##SUFFIX(const T* x, T* out, index_t n) { r2c_body(x, out, n); }               \
  template <class T>                                                                           \
  Kernels<T> make_##SUFFIX() {                                                                 \
    return Kernels<T>{&cmul_##SUFFIX<T>, &cmul_conj_##SUFFIX<T>, &rmul_##SUFFIX<T>,            \
                      &rmul_conj_##SUFFIX<T>, &r2c_##SUFFIX<T>, &STREAM<T>};                   \
  }

#define QN_NO_ATTR
#if defined(QN_X86_64)
QN_DEFINE_KERNELS(base, QN_NO_ATTR, stream_sse2)
#else
QN_DEFINE_KERNELS(base, QN_NO_ATTR, stream_plain)
#endif
QN_DEFINE_QUANT(base, QN_NO_ATTR)
QN_DEFINE_FIXED(base, QN_NO_ATTR)
#if defined(QN_X86_64)
QN_DEFINE_KERNELS(avx2, QN_AVX2_ATTR, stream_avx2_path)
QN_DEFINE_KERNELS(avx512, QN_AVX512_ATTR, stream_avx512_path)
QN_DEFINE_QUANT(avx2, __attribute__((target("avx2,fma"))))
QN_DEFINE_QUANT(avx512, __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,fma"))))
QN_DEFINE_FIXED(avx2, __attribute__((target("avx2,fma"))))
QN_DEFINE_FIXED(avx512, __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,fma"))))
#endif

#if defined(QN_X86_64)
const char* const kBaseName = "sse2";
#elif defined(__aarch64__) || defined(__ARM_NEON)
const char* const kBaseName = "neon";
#else
const char* const kBaseName = "scalar";
#endif

struct Selection {
  std::string name;
  int level;  // 0 base, 1 avx2, 2 avx512
};

Selection detect() {
  int best = 0;
#if defined(QN_X86_64)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = 1;
  if (best == 1 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw"))
    best = 2;
#endif
  int level = best;
  if (const char* forced = std::getenv("QUANTONIUM_SIMD")) {
    const std::string f(forced);
    int want = -1;
    if (f == kBaseName) want = 0;
#if defined(QN_X86_64)
    if (f == "avx2") want = 1;
    if (f == "avx512f") want = 2;
#endif
    // An unknown or unsupported request is ignored: the widest supported path
    // is kept, and build_info() reports what actually runs.
    if (want >= 0 && want <= best) level = want;
  }
  static const char* const names[] = {kBaseName, "avx2", "avx512f"};
  return Selection{names[level], level};
}

const Selection& selection() {
  static const Selection s = detect();
  return s;
}

}  // namespace

template <class T>
const Kernels<T>& kernels() {
  static const Kernels<T> k = [] {
#if defined(QN_X86_64)
    switch (selection().level) {
      case 2:
        return make_avx512<T>();
      case 1:
        return make_avx2<T>();
      default:
        break;
    }
#endif
    return make_base<T>();
  }();
  return k;
}

template const Kernels<float>& kernels<float>();
template const Kernels<double>& kernels<double>();

template <class T, class S>
const QuantKernels<T, S>& quant_kernels() {
  static const QuantKernels<T, S> k = [] {
#if defined(QN_X86_64)
    switch (selection().level) {
      case 2:
        return make_quant_avx512<T, S>();
      case 1:
        return make_quant_avx2<T, S>();
      default:
        break;
    }
#endif
    return make_quant_base<T, S>();
  }();
  return k;
}

const FixedKernels& fixed_kernels() {
  static const FixedKernels k = [] {
#if defined(QN_X86_64)
    switch (selection().level) {
      case 2:
        return FixedKernels{&fixed32_avx512, &fixed64_avx512, &minmax_avx512};
      case 1:
        return FixedKernels{&fixed32_avx2, &fixed64_avx2, &minmax_avx2};
      default:
        break;
    }
#endif
    return FixedKernels{&fixed32_base, &fixed64_base, &minmax_base};
  }();
  return k;
}

template const QuantKernels<float, std::int8_t>& quant_kernels<float, std::int8_t>();
template const QuantKernels<float, std::int16_t>& quant_kernels<float, std::int16_t>();
template const QuantKernels<double, std::int8_t>& quant_kernels<double, std::int8_t>();
template const QuantKernels<double, std::int16_t>& quant_kernels<double, std::int16_t>();

void stream_fence() {
#if defined(QN_X86_64)
  _mm_sfence();
#endif
}

std::vector<std::string> compiled_paths() {
#if defined(QN_X86_64)
  return {"sse2", "avx2", "avx512f"};
#else
  return {kBaseName};
#endif
}

std::string selected_path() { return selection().name; }

}  // namespace qn::simd
