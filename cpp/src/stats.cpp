// Fidelity sums (include/quantonium/stats.hpp).
#include "quantonium/stats.hpp"

#include <vector>

#include "parallel.hpp"

namespace qn {

template <class T>
EnergySums energy_sums(const T* x, const T* y, index_t count, int nthreads) {
  const index_t blocks = ceil_div(count, kStatsBlock);
  std::vector<double> sig(static_cast<std::size_t>(blocks)), err(static_cast<std::size_t>(blocks));
  detail::parallel_for(blocks, nthreads, 1, [&](index_t b0, index_t b1) {
    for (index_t b = b0; b < b1; ++b) {
      const index_t i0 = b * kStatsBlock, i1 = std::min(count, i0 + kStatsBlock);
      double s0 = 0, s1 = 0, s2 = 0, s3 = 0, e0 = 0, e1 = 0, e2 = 0, e3 = 0;
      index_t i = i0;
      if (y) {
        for (; i + 4 <= i1; i += 4) {
          const double a0 = x[i], a1 = x[i + 1], a2 = x[i + 2], a3 = x[i + 3];
          const double d0 = a0 - static_cast<double>(y[i]), d1 = a1 - static_cast<double>(y[i + 1]);
          const double d2 = a2 - static_cast<double>(y[i + 2]), d3 = a3 - static_cast<double>(y[i + 3]);
          s0 += a0 * a0, s1 += a1 * a1, s2 += a2 * a2, s3 += a3 * a3;
          e0 += d0 * d0, e1 += d1 * d1, e2 += d2 * d2, e3 += d3 * d3;
        }
        for (; i < i1; ++i) {
          const double a = x[i], d = a - static_cast<double>(y[i]);
          s0 += a * a, e0 += d * d;
        }
      } else {
        for (; i + 4 <= i1; i += 4) {
          const double a0 = x[i], a1 = x[i + 1], a2 = x[i + 2], a3 = x[i + 3];
          s0 += a0 * a0, s1 += a1 * a1, s2 += a2 * a2, s3 += a3 * a3;
        }
        for (; i < i1; ++i) s0 += static_cast<double>(x[i]) * x[i];
      }
      sig[static_cast<std::size_t>(b)] = (s0 + s1) + (s2 + s3);
      err[static_cast<std::size_t>(b)] = (e0 + e1) + (e2 + e3);
    }
  });
  EnergySums out;
  for (index_t b = 0; b < blocks; ++b) {
    out.signal += sig[static_cast<std::size_t>(b)];
    out.error += err[static_cast<std::size_t>(b)];
  }
  return out;
}

template EnergySums energy_sums<float>(const float*, const float*, index_t, int);
template EnergySums energy_sums<double>(const double*, const double*, index_t, int);

}  // namespace qn
