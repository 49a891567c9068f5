// Overflow-checked size arithmetic and the limits every entry point shares.
//
// Every size that is computed from numbers a caller or a file supplies (a
// count, a group size, a number of bits, a shape) goes through these helpers:
// a product or sum that does not fit in index_t (64-bit signed) throws
// std::invalid_argument naming what was being computed, instead of wrapping
// (signed overflow is undefined behaviour, and a wrapped size turns a range
// check into an out-of-bounds access). The Python bindings turn
// std::invalid_argument into ValueError.
#pragma once

#include <limits>
#include <stdexcept>
#include <string>

#include "quantonium/layout.hpp"

namespace qn {

inline constexpr index_t kIndexMax = std::numeric_limits<index_t>::max();

/// Most threads one call may use (`nthreads` above it is refused): a bound on
/// the threads a single call starts, far above any machine's useful number.
inline constexpr int kMaxThreads = 1024;

/// Longest transform axis: FFTW takes lengths and batch counts as int.
inline constexpr index_t kMaxTransformLength = std::numeric_limits<int>::max();

/// a * b in *r; false (and *r unspecified) if it does not fit in index_t.
inline bool mul_fits(index_t a, index_t b, index_t* r) noexcept {
  return !__builtin_mul_overflow(a, b, r);
}

/// a + b in *r; false if it does not fit in index_t.
inline bool add_fits(index_t a, index_t b, index_t* r) noexcept {
  return !__builtin_add_overflow(a, b, r);
}

/// a * b; throws std::invalid_argument("<what> overflows: a * b") if it does not fit.
inline index_t checked_mul(index_t a, index_t b, const char* what) {
  index_t r;
  if (!mul_fits(a, b, &r))
    throw std::invalid_argument(std::string(what) + " overflows 64-bit sizes (" +
                                std::to_string(a) + " * " + std::to_string(b) + ")");
  return r;
}

/// a + b; throws std::invalid_argument if it does not fit.
inline index_t checked_add(index_t a, index_t b, const char* what) {
  index_t r;
  if (!add_fits(a, b, &r))
    throw std::invalid_argument(std::string(what) + " overflows 64-bit sizes (" +
                                std::to_string(a) + " + " + std::to_string(b) + ")");
  return r;
}

/// a * b for a, b >= 0, clamped to kIndexMax: for work-splitting hints
/// (grains), never for the size of anything.
inline index_t saturating_mul(index_t a, index_t b) noexcept {
  index_t r;
  return mul_fits(a, b, &r) ? r : kIndexMax;
}

/// ceil(a / b) for a >= 0 and b >= 1, without forming a + b - 1 (which
/// overflows for large a or b).
inline constexpr index_t ceil_div(index_t a, index_t b) noexcept { return a / b + (a % b != 0); }

}  // namespace qn
