// Public C++ API of the Quantonium RFT core. Definitions: shared/docs/RFT.md.
//
//  * Fast Phi-RFT (section 1):   y = exp(i*theta) * FFT_ortho(x),
//        theta_k = 2*pi*beta*frac(k/phi) + pi*sigma*k^2/n
//  * Real-orthogonal Phi-RFT (section 2): a real row of even length n is packed
//        as z_j = x[2j] + i*x[2j+1], transformed with the Phi-RFT of length n/2,
//        and written back interleaved (Re y_0, Im y_0, Re y_1, ...). For odd n the
//        last element is passed through unchanged (the map stays orthogonal).
//  * Canonical RFT (section 3): dense, Gram-normalised golden-ratio basis.
//
// All functions are thread safe: FFTW planning is serialised behind one lock,
// execution runs concurrently. Errors are reported with std::invalid_argument
// (bad parameters) or std::domain_error (a size the transform refuses).
// NaN and inf propagate as IEEE arithmetic makes them: a non-finite input
// element makes every output element of its row non-finite.
#pragma once

#include <complex>
#include <vector>

#include "quantonium/layout.hpp"

namespace qn {

/// Golden ratio phi = (1 + sqrt 5) / 2.
inline constexpr double kPhi = 1.6180339887498948482045868343656;

/// Largest length accepted by the canonical RFT (the basis costs O(n^3) to
/// build and O(n^2) memory; its Gram matrix grows ill-conditioned with n).
inline constexpr index_t kCanonicalMaxN = 1024;

/// Phase angle theta_k of the Phi-RFT, computed in double precision and
/// reduced to [0, 2*pi).
double phi_rft_theta(index_t k, index_t n, double beta, double sigma);

/// exp(i*theta_k) / sqrt(n) for k = 0..n-1 (a copy of the table cached per
/// (n, beta, sigma): clear_caches() may drop the cached one at any time).
template <class T>
std::vector<std::complex<T>> phi_rft_phases(index_t n, double beta, double sigma);

/// Fast Phi-RFT of every row of a batch (complex output).
template <class T>
void phi_rft(Direction dir, const Batch& b, const RowsIn<T>& in, const RowsOut<T>& out,
             double beta, double sigma, int nthreads);

/// Real-orthogonal Phi-RFT along the middle axis of a real (outer, n, inner)
/// array. Strides in elements of T. `in` and `out` may be the same array.
template <class T>
void real_rft(Direction dir, const Batch& b, const T* in, index_t in_s_outer, index_t in_s_elem,
              index_t in_s_inner, T* out, index_t out_s_outer, index_t out_s_elem,
              index_t out_s_inner, double beta, double sigma, int nthreads);

/// Canonical RFT of every row (complex output). Refuses n > kCanonicalMaxN and
/// sizes whose basis is not unitary to 1e-10 (std::domain_error).
template <class T>
void canonical_rft(Direction dir, const Batch& b, const RowsIn<T>& in, const RowsOut<T>& out,
                   int nthreads);

/// The canonical basis Phi_tilde (n x n, column-major order of the definition:
/// element (j, k) at [j + k*n]) in complex128, built and checked on first use.
/// A copy: clear_caches() may drop the cached basis at any time.
std::vector<std::complex<double>> canonical_basis(index_t n);

/// Measured max |Phi_tilde^H Phi_tilde - I| of the cached basis of length n.
double canonical_unitarity_error(index_t n);

/// Plain unnormalised FFTW c2c transform of contiguous rows (the performance
/// floor used by the benchmarks): out[r, :] = FFT(in[r, :]) (sign -1 forward).
/// `blocked` = false: one FFTW plan over the whole batch, FFTW's threads.
/// `blocked` = true: the rows in the same cache-sized chunks the Phi-RFT uses
/// (chunks shared among nthreads threads), without phases or copies.
template <class T>
void fftw_c2c_raw(Direction dir, index_t rows, index_t n, const std::complex<T>* in,
                  std::complex<T>* out, int nthreads, bool blocked = false);

/// Drop every cached FFTW plan, phase table and canonical basis.
void clear_caches();

/// FFTW planner effort for plans made from now on: "estimate", "measure"
/// (default), "patient" or "exhaustive".
void set_planner_effort(const char* effort);
const char* planner_effort();

}  // namespace qn
