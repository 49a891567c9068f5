// The batched row engine shared by every transform.
//
// Rows are processed in chunks of B contiguous rows held in a per-thread,
// aligned scratch buffer small enough to stay in cache (about 128 KiB):
//   1. gather: read B rows from the caller's layout (any strides, real or
//      complex) into scratch, multiplying by an optional "pre" diagonal;
//   2. op: transform the B rows in scratch (an FFTW plan, or a GEMM);
//   3. scatter: write the rows to the caller's layout, multiplying by an
//      optional "post" diagonal.
// The diagonal products are the Phi-RFT's phases, fused into the passes that
// touch the FFT buffer anyway, while it is hot in cache. Every chunk is B rows
// (a short last chunk still runs the same plan), so a row's result never
// depends on how rows were split between threads.
#pragma once

#include <algorithm>
#include <complex>
#include <cstring>

#include "fftw_plans.hpp"
#include "parallel.hpp"
#include "quantonium/layout.hpp"
#include "simd_kernels.hpp"

namespace qn::detail {

/// How a call is spread over threads.
struct ThreadSplit {
  int workers = 1;      ///< threads that each take a share of the chunks
  int op_threads = 1;   ///< threads the op itself may use (FFTW's own threads)
  index_t chunk = 1;    ///< rows per chunk (B)
};

/// Rows per chunk for rows of `row_bytes`, and the thread split for `rows`
/// rows and `nthreads` threads: rows are shared among threads when there are
/// enough of them; a single long row uses the op's own threads.
inline ThreadSplit split_work(index_t rows, index_t row_bytes, int nthreads) {
  constexpr index_t kChunkBytes = 128 * 1024;
  ThreadSplit s;
  s.workers = static_cast<int>(std::max<index_t>(1, std::min<index_t>(nthreads, rows)));
  s.op_threads = (s.workers == 1 && nthreads > 1) ? nthreads : 1;
  const index_t per_worker = ceil_div(rows, s.workers);
  s.chunk = std::max<index_t>(1, std::min<index_t>(kChunkBytes / std::max<index_t>(1, row_bytes),
                                                   per_worker));
  return s;
}

/// Reads row `src` (caller's layout) into contiguous complex `dst`, times the
/// optional diagonal `pre`. Strided rows are first copied into `row` (n
/// complex of scratch) so that the arithmetic always runs in the same SIMD
/// kernel: a result never depends on the memory layout.
template <class T>
inline void gather_row(const RowsIn<T>& in, const T* src, index_t n, const T* pre, bool pre_conj,
                       T* dst, T* row) {
  const auto& K = simd::kernels<T>();
  if (in.real) {
    const T* x = src;
    if (in.s_elem != 1) {
      for (index_t k = 0; k < n; ++k) row[k] = src[k * in.s_elem];
      x = row;
    }
    if (pre == nullptr)
      K.real_to_complex(x, dst, n);
    else if (pre_conj)
      K.rmul_conj(x, pre, dst, n);
    else
      K.rmul(x, pre, dst, n);
    return;
  }
  const T* z = src;
  if (in.s_elem != 2 || in.im_off != 1) {
    T* target = pre == nullptr ? dst : row;
    for (index_t k = 0; k < n; ++k) {
      target[2 * k] = src[k * in.s_elem];
      target[2 * k + 1] = src[k * in.s_elem + in.im_off];
    }
    if (pre == nullptr) return;
    z = row;
  }
  if (pre == nullptr)
    std::memcpy(dst, z, static_cast<std::size_t>(n) * 2 * sizeof(T));
  else if (pre_conj)
    K.cmul_conj(z, pre, dst, n);
  else
    K.cmul(z, pre, dst, n);
}

/// Writes contiguous complex `src`, times the optional diagonal `post`, to
/// `dst` in the caller's layout (through `row` when strided, as above).
template <class T>
inline void scatter_row(const RowsOut<T>& out, const T* src, index_t n, const T* post, T* dst,
                        T* row) {
  const bool contiguous = out.s_elem == 2 && out.im_off == 1;
  if (contiguous) {
    if (post == nullptr)
      std::memcpy(dst, src, static_cast<std::size_t>(n) * 2 * sizeof(T));
    else
      simd::kernels<T>().cmul(src, post, dst, n);
    return;
  }
  const T* z = src;
  if (post != nullptr) {
    simd::kernels<T>().cmul(src, post, row, n);
    z = row;
  }
  for (index_t k = 0; k < n; ++k) {
    dst[k * out.s_elem] = z[2 * k];
    dst[k * out.s_elem + out.im_off] = z[2 * k + 1];
  }
}

/// Runs `op` over every row of the batch. `op(buf, tmp, B)` transforms B
/// contiguous rows held in `buf` and returns the buffer holding the result
/// (`buf` or `tmp`). `pre`/`post` are interleaved complex diagonals of length
/// n, or nullptr.
template <class T, class Op>
void run_rows(const Batch& b, const RowsIn<T>& in, const RowsOut<T>& out,
              const std::complex<T>* pre, bool pre_conj, const std::complex<T>* post,
              const ThreadSplit& split, bool needs_tmp, const Op& op) {
  const index_t rows = b.rows();
  if (rows == 0) return;
  const index_t n = b.n, B = split.chunk;
  const index_t nchunks = ceil_div(rows, B);
  const T* pre_s = reinterpret_cast<const T*>(pre);
  const T* post_s = reinterpret_cast<const T*>(post);

  auto work = [&](index_t chunk_begin, index_t chunk_end) {
    AlignedBuffer<T> buf(static_cast<std::size_t>(B * n));
    AlignedBuffer<T> tmp(needs_tmp ? static_cast<std::size_t>(B * n) : 0);
    AlignedBuffer<T> row(static_cast<std::size_t>(n));
    T* row_s = reinterpret_cast<T*>(row.ptr);
    for (index_t c = chunk_begin; c < chunk_end; ++c) {
      const index_t r0 = c * B, r1 = std::min(rows, r0 + B);
      for (index_t r = r0; r < r1; ++r) {
        const index_t o = r / b.inner, i = r % b.inner;
        gather_row(in, in.data + o * in.s_outer + i * in.s_inner, n, pre_s, pre_conj,
                   reinterpret_cast<T*>(buf.ptr + (r - r0) * n), row_s);
      }
      const std::complex<T>* res = op(buf.ptr, tmp.ptr, B);
      for (index_t r = r0; r < r1; ++r) {
        const index_t o = r / b.inner, i = r % b.inner;
        scatter_row(out, reinterpret_cast<const T*>(res + (r - r0) * n), n, post_s,
                    out.data + o * out.s_outer + i * out.s_inner, row_s);
      }
    }
  };

  const int W = static_cast<int>(std::min<index_t>(split.workers, nchunks));
  run_workers(W, [&](int w) { work(share_begin(nchunks, W, w), share_begin(nchunks, W, w + 1)); });
}

}  // namespace qn::detail
