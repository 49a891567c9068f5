// Runtime-dispatched SIMD kernels (see simd_kernels.hpp).
//
// The loop bodies are written once as plain C++ that GCC and Clang vectorise
// (this file is compiled with -O3), and instantiated inside functions carrying
// target attributes, so one binary holds an SSE2, an AVX2+FMA and an AVX-512
// version on x86-64. The choice is made once, from __builtin_cpu_supports.
// Compiler multiversioning was chosen over Highway/xsimd because the kernels
// are a handful of elementwise loops that GCC vectorises well; measured with
// BM_PhaseKernel (bench/cpp/bench_rft.cpp), the AVX2 path runs the phase
// multiply 2.2x faster than the SSE2 one (README, results).
#include "simd_kernels.hpp"

#include <cstdlib>
#include <cstring>

#if defined(__GNUC__)
#define QN_ALWAYS_INLINE inline __attribute__((always_inline))
#define QN_RESTRICT __restrict__
#else
#define QN_ALWAYS_INLINE inline
#define QN_RESTRICT
#endif

#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
#define QN_X86_64 1
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

// One set of kernels per instruction set. QN_TARGET is empty for the baseline.
#define QN_DEFINE_KERNELS(SUFFIX, ATTR)                                                         \
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
                      &rmul_conj_##SUFFIX<T>, &r2c_##SUFFIX<T>};                               \
  }

#define QN_NO_ATTR
QN_DEFINE_KERNELS(base, QN_NO_ATTR)
#if defined(QN_X86_64)
QN_DEFINE_KERNELS(avx2, __attribute__((target("avx2,fma"))))
QN_DEFINE_KERNELS(avx512, __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,fma"))))
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

std::vector<std::string> compiled_paths() {
#if defined(QN_X86_64)
  return {"sse2", "avx2", "avx512f"};
#else
  return {kBaseName};
#endif
}

std::string selected_path() { return selection().name; }

}  // namespace qn::simd
