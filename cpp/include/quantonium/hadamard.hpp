// Walsh-Hadamard transform of real rows, for any length n = m * 2^k with a
// Hadamard matrix of order m built here (the peer of the real-orthogonal
// Phi-RFT for "incoherence processing" before fixed-rate quantisation).
//
//   H_n = (H_m kron H_p) / sqrt(n),  p = 2^k,  H_p Sylvester's,
//   H_m: order 1 or 2 (Sylvester), q + 1 for a prime q = 3 mod 4 (Paley I),
//        2 (q + 1) for a prime q = 1 mod 4 (Paley II), m <= kHadamardMaxM.
//   forward: y = H_n x        inverse: x = H_n^T y
//
// With the row viewed as an (m, p) matrix X (element a*p + b), the forward
// transform is H_m X H_p / sqrt(n): a fast Walsh-Hadamard butterfly of length
// p on each of the m segments, then the dense m x m matrix across segments
// (additions and subtractions only). Cost O(n log p + n m) per row. The numpy
// reference is quantonium.reference.wht_forward / wht_inverse.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "quantonium/layout.hpp"

namespace qn {

/// Largest order of a Paley Hadamard matrix built here.
inline constexpr index_t kHadamardMaxM = 256;

/// (m, p) with n = m * p, p the largest power of two such that a Hadamard
/// matrix of order m is built here. Throws std::domain_error when there is none
/// (or n < 1).
std::pair<index_t, index_t> hadamard_factor(index_t n);

/// The Hadamard matrix of order m (row-major, entries +1/-1), built, checked
/// (H H^T = m I) and cached on first use. Throws std::domain_error for an
/// order not built here.
const std::vector<std::int8_t>& hadamard_matrix(index_t m);

/// Orthonormal Walsh-Hadamard transform along the middle axis of a real
/// (outer, n, inner) array, strides in elements of T. `in` and `out` may be the
/// same array. Throws std::domain_error for a length hadamard_factor refuses.
template <class T>
void wht(Direction dir, const Batch& b, const T* in, index_t in_s_outer, index_t in_s_elem,
         index_t in_s_inner, T* out, index_t out_s_outer, index_t out_s_elem, index_t out_s_inner,
         int nthreads);

}  // namespace qn
