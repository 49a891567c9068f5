// The batched row engine shared by every transform.
//
// Rows are processed in chunks of B rows (about 128 KiB, so that a chunk stays
// in cache), each through three steps:
//   1. gather: read B rows from the caller's layout (any strides, real or
//      complex) into an aligned per-thread scratch buffer, multiplying by an
//      optional "pre" diagonal;
//   2. op: transform the B rows out of place (an FFTW plan, or a GEMM);
//   3. scatter: write the rows to the caller's layout, multiplying by an
//      optional "post" diagonal.
// The diagonal products are the Phi-RFT's phases, fused into the pass that
// touches the chunk anyway, while it is hot in cache. Every chunk is B rows
// (a short last chunk still runs the same op), so a row's result never
// depends on how rows were split between threads.
//
// Why copies rather than running FFTW on the caller's rows directly: measured
// here (README, "Transforms"), FFTW reading or writing main memory itself was
// slower than a sequential copy into cache plus FFTW on the cached chunk, at
// n = 1024 to 8192; and writing the output with streaming stores saves the
// read-for-ownership that any ordinary store (FFTW's included) pays.
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
  // Measured flat between 64 and 256 KiB (bench/rft_vs_fftw.py, README).
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
/// `dst` in the caller's layout (through `row` when strided, as above). With
/// `stream`, a contiguous row is written with streaming stores: the phase
/// product is formed block by block in a small buffer (the same kernel, so the
/// same values) and streamed out from there.
template <class T>
inline void scatter_row(const RowsOut<T>& out, const T* src, index_t n, const T* post, T* dst,
                        T* row, bool stream) {
  const bool contiguous = out.s_elem == 2 && out.im_off == 1;
  if (contiguous && stream) {
    if (post == nullptr) {
      simd::kernels<T>().stream(src, dst, n);
      return;
    }
    constexpr index_t kBlock = 256;  // complex elements: 2 or 4 KiB, in L1
    alignas(64) T blk[2 * kBlock];
    for (index_t k = 0; k < n; k += kBlock) {
      const index_t len = std::min(kBlock, n - k);
      simd::kernels<T>().cmul(src + 2 * k, post + 2 * k, blk, len);
      simd::kernels<T>().stream(blk, dst + 2 * k, len);
    }
    return;
  }
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

/// Distance in scalars between consecutive rows of a batch laid out with
/// strides (s_outer, s_inner), or 0 when rows are not equally spaced.
inline index_t row_distance(const Batch& b, index_t s_outer, index_t s_inner) {
  if (b.inner == 1) return s_outer;
  if (b.outer == 1) return s_inner;
  return s_outer == b.inner * s_inner ? s_inner : 0;
}

/// Outputs larger than this are written with streaming stores (see
/// scatter_row): they cannot all be in cache when the caller reads them.
constexpr index_t kStreamBytes = index_t(8) << 20;

/// Runs `op` over every row of the batch, in chunks of B = split.chunk rows.
/// `op(src, dst, B)` transforms B contiguous complex rows (row distance n)
/// from the scratch buffer `src` into the scratch buffer `dst` (out of place:
/// FFTW's in-place plans copy each row through a buffer of their own).
/// `pre`/`post` are interleaved complex diagonals of length n, or nullptr.
///
/// A chunk whose input rows are contiguous complex rows and that needs no
/// `pre` is read with one memcpy (a single long sequential read, measurably
/// faster for short rows than one copy per row); outputs larger than
/// kStreamBytes are written with streaming stores. Neither changes a value.
template <class T, class Op>
void run_rows(const Batch& b, const RowsIn<T>& in, const RowsOut<T>& out,
              const std::complex<T>* pre, bool pre_conj, const std::complex<T>* post,
              const ThreadSplit& split, const Op& op) {
  const index_t rows = b.rows();
  if (rows == 0) return;
  const index_t n = b.n, B = split.chunk;
  const index_t nchunks = ceil_div(rows, B);
  const T* pre_s = reinterpret_cast<const T*>(pre);
  const T* post_s = reinterpret_cast<const T*>(post);
  const bool block_copy = pre == nullptr && !in.real && in.s_elem == 2 && in.im_off == 1 &&
                          row_distance(b, in.s_outer, in.s_inner) == 2 * n;
  const bool stream = rows * n * 2 * index_t(sizeof(T)) > kStreamBytes;
  auto in_row = [&](index_t r) {
    return in.data + (r / b.inner) * in.s_outer + (r % b.inner) * in.s_inner;
  };
  auto out_row = [&](index_t r) {
    return out.data + (r / b.inner) * out.s_outer + (r % b.inner) * out.s_inner;
  };

  auto work = [&](index_t chunk_begin, index_t chunk_end) {
    AlignedBuffer<T> ibuf(static_cast<std::size_t>(B * n));
    AlignedBuffer<T> obuf(static_cast<std::size_t>(B * n));
    AlignedBuffer<T> row(static_cast<std::size_t>(n));
    T* row_s = reinterpret_cast<T*>(row.ptr);
    for (index_t c = chunk_begin; c < chunk_end; ++c) {
      const index_t r0 = c * B, r1 = std::min(rows, r0 + B);
      if (block_copy)
        std::memcpy(static_cast<void*>(ibuf.ptr), in_row(r0),
                    static_cast<std::size_t>((r1 - r0) * n) * sizeof(std::complex<T>));
      else
        for (index_t r = r0; r < r1; ++r)
          gather_row(in, in_row(r), n, pre_s, pre_conj,
                     reinterpret_cast<T*>(ibuf.ptr + (r - r0) * n), row_s);
      op(static_cast<const std::complex<T>*>(ibuf.ptr), obuf.ptr, B);
      for (index_t r = r0; r < r1; ++r)
        scatter_row(out, reinterpret_cast<const T*>(obuf.ptr + (r - r0) * n), n, post_s,
                    out_row(r), row_s, stream);
    }
    if (stream) simd::stream_fence();
  };

  const int W = static_cast<int>(std::min<index_t>(split.workers, nchunks));
  run_workers(W, [&](int w) { work(share_begin(nchunks, W, w), share_begin(nchunks, W, w + 1)); });
}

}  // namespace qn::detail
