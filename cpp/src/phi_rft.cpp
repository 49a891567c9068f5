// Fast Phi-RFT and real-orthogonal Phi-RFT (shared/docs/RFT.md, sections 1-2).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>

#include "engine.hpp"
#include "fftw_plans.hpp"
#include "quantonium/checked.hpp"
#include "quantonium/rft.hpp"

namespace qn::detail {
void clear_canonical_cache();  // canonical_rft.cpp
}

namespace qn {
namespace {

constexpr double kTwoPi = 6.283185307179586476925286766559;

void check_params(index_t n, double beta, double sigma, int nthreads) {
  if (n < 1) throw std::invalid_argument("transform length must be >= 1, got " + std::to_string(n));
  if (n > kMaxTransformLength)
    throw std::invalid_argument("transform length " + std::to_string(n) + " exceeds FFTW's limit " +
                                std::to_string(kMaxTransformLength));
  if (!std::isfinite(beta)) throw std::invalid_argument("beta must be finite");
  if (!std::isfinite(sigma)) throw std::invalid_argument("sigma must be finite");
  if (nthreads < 1 || nthreads > kMaxThreads)
    throw std::invalid_argument("nthreads must be in 1.." + std::to_string(kMaxThreads) +
                                ", got " + std::to_string(nthreads));
}

double frac(double t) { return t - std::floor(t); }

template <class T>
using PhaseTable = std::vector<std::complex<T>>;
using PhaseKey = std::tuple<index_t, std::uint64_t, std::uint64_t>;

std::uint64_t bits(double v) {
  std::uint64_t u;
  std::memcpy(&u, &v, sizeof u);
  return u;
}

std::mutex& phase_mutex() {
  static auto* m = new std::mutex();
  return *m;
}

template <class T>
std::map<PhaseKey, std::shared_ptr<const PhaseTable<T>>>& phase_cache() {
  static auto* c = new std::map<PhaseKey, std::shared_ptr<const PhaseTable<T>>>();
  return *c;
}

template <class T>
std::shared_ptr<const PhaseTable<T>> phases_shared(index_t n, double beta, double sigma) {
  const PhaseKey key{n, bits(beta), bits(sigma)};
  {
    std::lock_guard<std::mutex> lock(phase_mutex());
    auto it = phase_cache<T>().find(key);
    if (it != phase_cache<T>().end()) return it->second;
  }
  auto table = std::make_shared<PhaseTable<T>>(static_cast<std::size_t>(n));
  const double scale = 1.0 / std::sqrt(static_cast<double>(n));
  for (index_t k = 0; k < n; ++k) {
    const double th = phi_rft_theta(k, n, beta, sigma);
    (*table)[static_cast<std::size_t>(k)] =
        std::complex<T>(static_cast<T>(std::cos(th) * scale), static_cast<T>(std::sin(th) * scale));
  }
  std::lock_guard<std::mutex> lock(phase_mutex());
  auto res = phase_cache<T>().emplace(key, std::move(table));
  return res.first->second;
}

/// The engine's op: one out-of-place FFTW plan over a chunk of rows (an
/// in-place plan makes FFTW copy every row through a buffer of its own).
template <class T>
struct FftOp {
  std::shared_ptr<const detail::Plan<T>> plan;
  void operator()(const std::complex<T>* src, std::complex<T>* dst, index_t) const {
    // The plan preserves its input (FFTW_PRESERVE_INPUT): the cast only
    // satisfies FFTW's non-const signature.
    plan->execute(const_cast<std::complex<T>*>(src), dst);
  }
};

}  // namespace

double phi_rft_theta(index_t k, index_t n, double beta, double sigma) {
  // Work in turns (units of 2*pi) and reduce exactly where we can:
  //   beta*frac(k/phi)                      (first term / 2pi)
  //   sigma*k^2/(2n) = sigma*(q + r/(2n))   with k^2 = q*(2n) + r, integers.
  const double t1 = beta * frac(static_cast<double>(k) / kPhi);
  const auto kk = static_cast<std::uint64_t>(k) * static_cast<std::uint64_t>(k);
  const auto two_n = 2 * static_cast<std::uint64_t>(n);
  const auto q = kk / two_n, r = kk % two_n;
  const double t2 = frac(sigma * static_cast<double>(q)) +
                    sigma * static_cast<double>(r) / static_cast<double>(two_n);
  return kTwoPi * frac(frac(t1) + t2);
}

template <class T>
std::vector<std::complex<T>> phi_rft_phases(index_t n, double beta, double sigma) {
  check_params(n, beta, sigma, 1);
  return *phases_shared<T>(n, beta, sigma);
}

template <class T>
void phi_rft(Direction dir, const Batch& b, const RowsIn<T>& in, const RowsOut<T>& out,
             double beta, double sigma, int nthreads) {
  check_params(b.n, beta, sigma, nthreads);
  if (b.rows() == 0) return;
  auto ph = phases_shared<T>(b.n, beta, sigma);
  const auto split = detail::split_work(b.rows(), b.n * index_t(sizeof(std::complex<T>)), nthreads);
  const int sign = dir == Direction::forward ? FFTW_FORWARD : FFTW_BACKWARD;
  // Forward: FFT, then the phases fused into the write-out. Inverse: the
  // conjugate phases fused into the read-in, then FFT.
  FftOp<T> op{detail::get_plan<T>(b.n, split.chunk, sign, false, split.op_threads)};
  if (dir == Direction::forward)
    detail::run_rows<T>(b, in, out, nullptr, false, ph->data(), split, op);
  else
    detail::run_rows<T>(b, in, out, ph->data(), true, nullptr, split, op);
}

template <class T>
void real_rft(Direction dir, const Batch& b, const T* in, index_t in_s_outer, index_t in_s_elem,
              index_t in_s_inner, T* out, index_t out_s_outer, index_t out_s_elem,
              index_t out_s_inner, double beta, double sigma, int nthreads) {
  check_params(b.n, beta, sigma, nthreads);
  if (b.rows() == 0) return;
  // Pairs (x[2j], x[2j+1]) are complex numbers whose imaginary part sits one
  // axis step after the real part.
  const Batch cb{b.outer, b.n / 2, b.inner};
  if (cb.n > 0) {
    RowsIn<T> ci{in, in_s_outer, in_s_inner, 2 * in_s_elem, in_s_elem, false};
    RowsOut<T> co{out, out_s_outer, out_s_inner, 2 * out_s_elem, out_s_elem};
    phi_rft<T>(dir, cb, ci, co, beta, sigma, nthreads);
  }
  if (b.n % 2 == 1) {  // odd length: the last element passes through unchanged
    const index_t last = b.n - 1;
    for (index_t o = 0; o < b.outer; ++o)
      for (index_t i = 0; i < b.inner; ++i)
        out[o * out_s_outer + i * out_s_inner + last * out_s_elem] =
            in[o * in_s_outer + i * in_s_inner + last * in_s_elem];
  }
}

template <class T>
void fftw_c2c_raw(Direction dir, index_t rows, index_t n, const std::complex<T>* in,
                  std::complex<T>* out, int nthreads, bool blocked) {
  check_params(n, 1.0, 1.0, nthreads);
  if (rows == 0) return;
  const int sign = dir == Direction::forward ? FFTW_FORWARD : FFTW_BACKWARD;
  const bool inplace = static_cast<const void*>(in) == static_cast<const void*>(out);
  // FFTW's new-array execute takes a non-const input; an out-of-place c2c
  // plan does not write to it (FFTW_DESTROY_INPUT is not set).
  auto* src = const_cast<std::complex<T>*>(in);
  if (!blocked) {
    auto plan = detail::get_plan<T>(n, rows, sign, inplace, nthreads, detail::alignment_offset(in),
                                    detail::alignment_offset(out));
    plan->execute(src, out);
    return;
  }
  const auto split = detail::split_work(rows, n * index_t(sizeof(std::complex<T>)), nthreads);
  const index_t B = split.chunk, nchunks = ceil_div(rows, B);
  auto work = [&](index_t c0, index_t c1) {
    for (index_t c = c0; c < c1; ++c) {
      const index_t r0 = c * B, cnt = std::min(B, rows - r0);
      auto* ci = src + r0 * n;
      auto* co = out + r0 * n;
      detail::get_plan<T>(n, cnt, sign, inplace, split.op_threads, detail::alignment_offset(ci),
                          detail::alignment_offset(co))
          ->execute(ci, co);
    }
  };
  const int W = static_cast<int>(std::min<index_t>(split.workers, nchunks));
  detail::run_workers(W, [&](int w) {
    work(detail::share_begin(nchunks, W, w), detail::share_begin(nchunks, W, w + 1));
  });
}

void clear_caches() {
  detail::clear_plan_cache();
  {
    std::lock_guard<std::mutex> lock(phase_mutex());
    phase_cache<float>().clear();
    phase_cache<double>().clear();
  }
  detail::clear_canonical_cache();
}

void set_planner_effort(const char* effort) {
  const std::string e(effort);
  unsigned f;
  if (e == "estimate")
    f = FFTW_ESTIMATE;
  else if (e == "measure")
    f = FFTW_MEASURE;
  else if (e == "patient")
    f = FFTW_PATIENT;
  else if (e == "exhaustive")
    f = FFTW_EXHAUSTIVE;
  else
    throw std::invalid_argument("planner effort must be one of 'estimate', 'measure', "
                                "'patient', 'exhaustive'; got '" + e + "'");
  detail::set_planner_flags(f);
}

const char* planner_effort() {
  switch (detail::planner_flags()) {
    case FFTW_ESTIMATE:
      return "estimate";
    case FFTW_PATIENT:
      return "patient";
    case FFTW_EXHAUSTIVE:
      return "exhaustive";
    default:
      return "measure";
  }
}

#define QN_INSTANTIATE(T)                                                                        \
  template std::vector<std::complex<T>> phi_rft_phases<T>(index_t, double, double);              \
  template void phi_rft<T>(Direction, const Batch&, const RowsIn<T>&, const RowsOut<T>&, double, \
                           double, int);                                                         \
  template void real_rft<T>(Direction, const Batch&, const T*, index_t, index_t, index_t, T*,    \
                            index_t, index_t, index_t, double, double, int);                     \
  template void fftw_c2c_raw<T>(Direction, index_t, index_t, const std::complex<T>*,             \
                                std::complex<T>*, int, bool);
QN_INSTANTIATE(float)
QN_INSTANTIATE(double)

}  // namespace qn
