// Fidelity sums over large tensors (issue 9): the SNR of every coded tensor is
// measured on its decoded payload, so these run once per tensor over all of
// it. Float64 accumulation in fixed blocks of kStatsBlock values whose
// partial sums are added in block order: the result does not depend on the
// number of threads.
#pragma once

#include <cstdint>

#include "quantonium/layout.hpp"

namespace qn {

inline constexpr index_t kStatsBlock = 1 << 16;

struct EnergySums {
  double signal = 0.0;  ///< sum x^2
  double error = 0.0;   ///< sum (x - y)^2 (0 when y is null)
};

/// sum x^2 and sum (x - y)^2 over `count` values (y may be null).
template <class T>
EnergySums energy_sums(const T* x, const T* y, index_t count, int nthreads);

}  // namespace qn
