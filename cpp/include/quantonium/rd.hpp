// Symbol histograms for rate-distortion curves (issue 9): what uniform
// quantisation at each of many steps would give, without coding anything.
//
// For float32 values c and a step s (float32, finite, > 0), exactly as
// quantize_uniform with dead_zone 0 computes it (quant.hpp):
//   t = c / s (float32 division), q = rint(t) (half to even),
//   e = c - float32(q) * s (float32, no fused multiply-add), sse = sum e^2 (float64).
// c is read once for all steps, in blocks that stay in the L1 cache.
// sse is summed in a fixed order (per block of 2^16 values, blocks in order),
// so every result is identical for any nthreads.
#pragma once

#include <cstdint>
#include <vector>

#include "quantonium/layout.hpp"

namespace qn {

struct StepHistogram {
  std::int64_t min_symbol = 0;         ///< rint(min(c) / s)
  std::vector<std::uint64_t> counts;   ///< counts[k]: symbols equal to min_symbol + k
  double sse = 0.0;                    ///< sum of squared errors
};

/// Throws std::invalid_argument on a non-finite value or step, a step <= 0,
/// or a symbol outside int16 (naming the step).
std::vector<StepHistogram> quantize_histograms(const float* c, index_t n, const float* steps,
                                               index_t nsteps, int nthreads);

}  // namespace qn
