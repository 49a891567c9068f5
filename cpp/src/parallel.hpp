// A minimal parallel-for over [0, n) in contiguous blocks, exceptions rethrown.
#pragma once

#include <algorithm>
#include <exception>
#include <thread>
#include <vector>

#include "quantonium/layout.hpp"

namespace qn::detail {

/// Calls body(begin, end) on up to `nthreads` contiguous blocks of [0, n).
/// Blocks are cut at multiples of `grain` so that work units are not split.
template <class Body>
void parallel_for(index_t n, int nthreads, index_t grain, const Body& body) {
  if (n <= 0) return;
  grain = std::max<index_t>(1, grain);
  const index_t units = (n + grain - 1) / grain;
  const int W = static_cast<int>(std::max<index_t>(1, std::min<index_t>(nthreads, units)));
  if (W == 1) {
    body(index_t(0), n);
    return;
  }
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(W));
  std::vector<std::thread> threads;
  auto run = [&](int w) {
    const index_t b = std::min(n, units * w / W * grain), e = std::min(n, units * (w + 1) / W * grain);
    try {
      if (b < e) body(b, e);
    } catch (...) {
      errors[static_cast<std::size_t>(w)] = std::current_exception();
    }
  };
  for (int w = 1; w < W; ++w) threads.emplace_back(run, w);
  run(0);
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace qn::detail
