// Strided descriptions of batches of rows, shared by every transform.
//
// A transform of length n is applied to each "row" of a batch. Rows are
// addressed as (outer, inner) pairs: element k of row (o, i) lives at
//     data + o * s_outer + i * s_inner + k * s_elem
// in units of the *real scalar* type T (float or double). A complex element
// stores its imaginary part at offset im_off from its real part (1 for an
// ordinary complex array; the real-orthogonal transform uses the distance
// between x[2j] and x[2j+1]). A real input (real == true) has imaginary part 0.
//
// These descriptions let the engine read and write any numpy layout that
// collapses to (outer, n, inner) without copying it first.
#pragma once

#include <cstddef>

namespace qn {

using index_t = std::ptrdiff_t;

/// Shape of a batch: `outer * inner` rows of length `n` (the transform axis).
struct Batch {
  index_t outer = 1;
  index_t n = 1;
  index_t inner = 1;
  index_t rows() const noexcept { return outer * inner; }
};

/// A batch of input rows (read only).
template <class T>
struct RowsIn {
  const T* data = nullptr;
  index_t s_outer = 0;
  index_t s_inner = 0;
  index_t s_elem = 2;
  index_t im_off = 1;
  bool real = false;  ///< true: the rows are real; imaginary parts are zero
};

/// A batch of complex output rows.
template <class T>
struct RowsOut {
  T* data = nullptr;
  index_t s_outer = 0;
  index_t s_inner = 0;
  index_t s_elem = 2;
  index_t im_off = 1;
};

enum class Direction { forward, inverse };

}  // namespace qn
