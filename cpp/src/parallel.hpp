// The one thread fan-out of the core: run_workers (W shares of work, the
// caller's thread included, exceptions captured and rethrown) and
// parallel_for over [0, n) built on it.
#pragma once

#include <algorithm>
#include <exception>
#include <new>
#include <system_error>
#include <thread>
#include <vector>

#include "quantonium/checked.hpp"
#include "quantonium/layout.hpp"

namespace qn::detail {

/// First item of share w when `total` items are cut into W contiguous shares
/// of total / W or total / W + 1 items (share W starts at total). Never
/// forms total * w.
inline index_t share_begin(index_t total, int W, int w) {
  return total / W * w + std::min<index_t>(w, total % W);
}

/// Calls work(w) for every w in [0, W): w >= 1 on new threads, w = 0 on the
/// calling thread. A share whose thread cannot be started (the system refuses
/// more threads) runs on the calling thread instead, so the result is the
/// same; an exception thrown by any share is rethrown after every thread has
/// been joined (the first one, by share index).
template <class Work>
void run_workers(int W, const Work& work) {
  if (W <= 1) {
    work(0);
    return;
  }
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(W));
  auto guarded = [&](int w) {
    try {
      work(w);
    } catch (...) {
      errors[static_cast<std::size_t>(w)] = std::current_exception();
    }
  };
  std::vector<std::thread> threads;
  std::vector<int> inline_shares;
  try {
    threads.reserve(static_cast<std::size_t>(W - 1));
  } catch (...) {
    // no room for the handles: every share runs on this thread
  }
  for (int w = 1; w < W; ++w) {
    try {
      threads.emplace_back(guarded, w);
    } catch (const std::system_error&) {
      inline_shares.push_back(w);
    } catch (const std::bad_alloc&) {
      inline_shares.push_back(w);
    }
  }
  guarded(0);
  for (int w : inline_shares) guarded(w);
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

/// Calls body(begin, end) on up to `nthreads` contiguous blocks of [0, n).
/// Blocks are cut at multiples of `grain` so that work units are not split
/// (callers pass a multiple of their unit, e.g. a group size). No
/// intermediate value overflows, whatever n, grain and nthreads are.
template <class Body>
void parallel_for(index_t n, int nthreads, index_t grain, const Body& body) {
  if (n <= 0) return;
  grain = std::max<index_t>(1, grain);
  const index_t units = ceil_div(n, grain);
  const int W = static_cast<int>(std::max<index_t>(1, std::min<index_t>(nthreads, units)));
  if (W == 1) {
    body(index_t(0), n);
    return;
  }
  auto position = [&](index_t u) { return u >= units ? n : u * grain; };  // u * grain < n
  run_workers(W, [&](int w) {
    const index_t b = position(share_begin(units, W, w)), e = position(share_begin(units, W, w + 1));
    if (b < e) body(b, e);
  });
}

}  // namespace qn::detail
