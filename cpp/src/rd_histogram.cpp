// Symbol histograms for rate-distortion curves; see quantonium/rd.hpp.
//
// One pass over c: for each block of 4096 values (16 KiB, in L1), every step
// quantises the block into int32 symbols and a float64 error sum (a kernel
// compiled per instruction set, chosen at run time like simd_kernels.cpp),
// then counts the symbols. Counters are 32-bit per block of 2^16 values and
// added into 64-bit totals per thread.
#include "quantonium/rd.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>

#include "parallel.hpp"
#include "simd_kernels.hpp"

#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
#define QN_RD_X86 1
#endif
#if defined(__GNUC__)
#define QN_RD_INLINE inline __attribute__((always_inline))
#else
#define QN_RD_INLINE inline
#endif

namespace qn {
namespace {

constexpr index_t kBlock = 4096;
constexpr index_t kSuper = index_t(1) << 16;

// q = rint(x / s); returns sum (x - q * s)^2 in float64 (8 partial sums).
QN_RD_INLINE double quant_body(const float* x, index_t n, float s, std::int32_t* q) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  index_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) {
      const float r = std::nearbyint(x[i + j] / s);
      q[i + j] = static_cast<std::int32_t>(r);
      const float d = r * s;
      const float e = x[i + j] - d;
      acc[j] += static_cast<double>(e) * static_cast<double>(e);
    }
  }
  for (; i < n; ++i) {
    const float r = std::nearbyint(x[i] / s);
    q[i] = static_cast<std::int32_t>(r);
    const float d = r * s;
    const float e = x[i] - d;
    acc[i & 7] += static_cast<double>(e) * static_cast<double>(e);
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

using QuantFn = double (*)(const float*, index_t, float, std::int32_t*);

double quant_base(const float* x, index_t n, float s, std::int32_t* q) { return quant_body(x, n, s, q); }
#if defined(QN_RD_X86)
__attribute__((target("avx2,fma"))) double quant_avx2(const float* x, index_t n, float s, std::int32_t* q) {
  return quant_body(x, n, s, q);
}
__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,fma"))) double quant_avx512(
    const float* x, index_t n, float s, std::int32_t* q) {
  return quant_body(x, n, s, q);
}
#endif

QuantFn quant_kernel() {
  static const QuantFn f = [] {
#if defined(QN_RD_X86)
    const std::string p = simd::selected_path();
    if (p == "avx512f") return &quant_avx512;
    if (p == "avx2") return &quant_avx2;
#endif
    return &quant_base;
  }();
  return f;
}

}  // namespace

std::vector<StepHistogram> quantize_histograms(const float* c, index_t n, const float* steps,
                                               index_t nsteps, int nthreads) {
  if (n < 0 || nsteps < 0) throw std::invalid_argument("quantize_histograms: negative size");
  if (nthreads < 1) throw std::invalid_argument("quantize_histograms: nthreads must be >= 1");
  for (index_t k = 0; k < nsteps; ++k)
    if (!(steps[k] > 0.0f) || !std::isfinite(steps[k]))
      throw std::invalid_argument("quantize_histograms: every step must be finite and > 0 (step " +
                                  std::to_string(k) + ")");
  std::vector<StepHistogram> out(static_cast<std::size_t>(nsteps));
  if (n == 0) return out;
  // min and max (and finiteness) first: they fix every step's symbol range
  float cmin = std::numeric_limits<float>::infinity(), cmax = -cmin;
  bool finite = true;
  std::mutex mu;
  detail::parallel_for(n, nthreads, kSuper, [&](index_t b, index_t e) {
    float lo = c[b], hi = c[b];
    bool ok = true;
    for (index_t i = b; i < e; ++i) {
      lo = c[i] < lo ? c[i] : lo;
      hi = c[i] > hi ? c[i] : hi;
      ok &= std::isfinite(c[i]);
    }
    std::lock_guard<std::mutex> lock(mu);
    cmin = std::min(cmin, lo);
    cmax = std::max(cmax, hi);
    finite &= ok;
  });
  if (!finite) throw std::invalid_argument("quantize_histograms: the values are not all finite");
  std::vector<std::int32_t> qlo(static_cast<std::size_t>(nsteps));
  std::vector<std::size_t> span(static_cast<std::size_t>(nsteps)), base(static_cast<std::size_t>(nsteps) + 1, 0);
  for (index_t k = 0; k < nsteps; ++k) {
    // t = c / s and rint are monotonic, so the extremes give the symbol range
    const float a = std::nearbyint(cmin / steps[k]), b = std::nearbyint(cmax / steps[k]);
    if (!(a >= -32768.0f && b <= 32767.0f))
      throw std::invalid_argument("quantize_histograms: step " + std::to_string(k) + " (" +
                                  std::to_string(steps[k]) + ") gives symbols outside int16 (" +
                                  std::to_string(a) + " .. " + std::to_string(b) +
                                  "); use a larger step");
    qlo[k] = static_cast<std::int32_t>(a);
    span[k] = static_cast<std::size_t>(static_cast<std::int32_t>(b) - qlo[k] + 1);
    base[k + 1] = base[k] + span[k];
    out[k].min_symbol = qlo[k];
    out[k].counts.assign(span[k], 0);
  }
  const index_t nsuper = n / kSuper + (n % kSuper != 0);
  std::vector<double> sse_super(static_cast<std::size_t>(nsuper * nsteps), 0.0);
  const QuantFn quant = quant_kernel();
  detail::parallel_for(n, nthreads, kSuper, [&](index_t b, index_t e) {
    std::vector<std::uint32_t> h(base[nsteps], 0);  // flushed before any can reach 2^32
    std::vector<std::uint64_t> acc(base[nsteps], 0);
    std::vector<std::int32_t> q(kBlock);
    auto flush = [&] {
      for (std::size_t i = 0; i < h.size(); ++i) {
        acc[i] += h[i];
        h[i] = 0;
      }
    };
    index_t since_flush = 0;
    for (index_t s0 = b; s0 < e; s0 += kSuper) {
      const index_t s1 = std::min(e, s0 + kSuper);
      double* sse = sse_super.data() + (s0 / kSuper) * nsteps;
      for (index_t b0 = s0; b0 < s1; b0 += kBlock) {
        const index_t m = std::min(kBlock, s1 - b0);
        for (index_t k = 0; k < nsteps; ++k) {
          sse[k] += quant(c + b0, m, steps[k], q.data());
          std::uint32_t* hk = h.data() + base[k] - static_cast<std::size_t>(qlo[k]);
          for (index_t i = 0; i < m; ++i) ++hk[q[i]];
        }
      }
      since_flush += s1 - s0;
      if (since_flush >= (index_t(1) << 31)) {
        flush();
        since_flush = 0;
      }
    }
    flush();
    std::lock_guard<std::mutex> lock(mu);
    for (index_t k = 0; k < nsteps; ++k)
      for (std::size_t i = 0; i < span[k]; ++i) out[k].counts[i] += acc[base[k] + i];
  });
  for (index_t k = 0; k < nsteps; ++k) {
    double s = 0.0;
    for (index_t j = 0; j < nsuper; ++j) s += sse_super[static_cast<std::size_t>(j * nsteps + k)];
    out[k].sse = s;
  }
  return out;
}

}  // namespace qn
