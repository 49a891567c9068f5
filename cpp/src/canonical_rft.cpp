// Canonical RFT (shared/docs/RFT.md, section 3): the Gram-normalised
// golden-ratio exponential basis, built once per n with Eigen's Hermitian
// eigensolver (in double precision), checked for unitarity, cached, and
// applied to batches of rows as a dense complex GEMM.
#include <Eigen/Dense>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "engine.hpp"
#include "quantonium/checked.hpp"
#include "quantonium/rft.hpp"

namespace qn {
namespace {

constexpr double kTwoPi = 6.283185307179586476925286766559;
constexpr double kUnitarityTolerance = 1e-10;

template <class T>
using RowMat = Eigen::Matrix<std::complex<T>, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct Basis {
  std::vector<std::complex<double>> phi_t;  // Phi_tilde, column-major
  double unitarity_error = 0.0;
  // Row-vector forms: forward X_row = x_row * conj(Phi_tilde), inverse
  // x_row = X_row * Phi_tilde^T.
  RowMat<double> fwd_d, inv_d;
  RowMat<float> fwd_f, inv_f;
  std::string refusal;  // non-empty: this n is refused, with this message
};

std::mutex& basis_mutex() {
  static auto* m = new std::mutex();
  return *m;
}

std::map<index_t, std::shared_ptr<const Basis>>& basis_cache() {
  static auto* c = new std::map<index_t, std::shared_ptr<const Basis>>();
  return *c;
}

std::shared_ptr<const Basis> build(index_t n) {
  auto b = std::make_shared<Basis>();
  using Mat = Eigen::MatrixXcd;
  const auto N = static_cast<Eigen::Index>(n);
  Mat P(N, N);
  const double s = 1.0 / std::sqrt(static_cast<double>(n));
  for (Eigen::Index k = 0; k < N; ++k) {
    const double fk = std::fmod(static_cast<double>(k + 1) * kPhi, 1.0);
    for (Eigen::Index j = 0; j < N; ++j) {
      const double turns = std::fmod(fk * static_cast<double>(j), 1.0);
      P(j, k) = std::polar(s, kTwoPi * turns);
    }
  }
  const Mat G = P.adjoint() * P;
  Eigen::SelfAdjointEigenSolver<Mat> es(G);
  if (es.info() != Eigen::Success) {
    b->refusal = "canonical RFT: the eigendecomposition of the Gram matrix failed for n=" +
                 std::to_string(n);
    return b;
  }
  const Eigen::VectorXd w = es.eigenvalues();
  if (w.minCoeff() <= 0.0) {
    b->refusal = "canonical RFT: the Gram matrix is singular for n=" + std::to_string(n);
    return b;
  }
  const Mat& V = es.eigenvectors();
  const Mat Ginv_sqrt = V * w.cwiseSqrt().cwiseInverse().asDiagonal() * V.adjoint();
  const Mat Pt = P * Ginv_sqrt;
  const double err = (Pt.adjoint() * Pt - Mat::Identity(N, N)).cwiseAbs().maxCoeff();
  b->unitarity_error = err;
  if (!(err < kUnitarityTolerance)) {
    b->refusal = "canonical RFT: the basis for n=" + std::to_string(n) +
                 " is not unitary to 1e-10 (max |Phi^H Phi - I| = " + std::to_string(err) +
                 "); use the fast Phi-RFT instead";
    return b;
  }
  b->phi_t.assign(Pt.data(), Pt.data() + Pt.size());
  b->fwd_d = Pt.conjugate();
  b->inv_d = Pt.transpose();
  b->fwd_f = b->fwd_d.cast<std::complex<float>>();
  b->inv_f = b->inv_d.cast<std::complex<float>>();
  return b;
}

std::shared_ptr<const Basis> basis(index_t n) {
  if (n < 1) throw std::invalid_argument("transform length must be >= 1, got " + std::to_string(n));
  if (n > kCanonicalMaxN)
    throw std::domain_error("canonical RFT: n=" + std::to_string(n) +
                            " exceeds the supported maximum " + std::to_string(kCanonicalMaxN) +
                            " (the basis costs O(n^3) to build and its Gram matrix grows "
                            "ill-conditioned); use the fast Phi-RFT (rft_forward) instead");
  std::lock_guard<std::mutex> lock(basis_mutex());
  auto& c = basis_cache();
  auto it = c.find(n);
  if (it == c.end()) it = c.emplace(n, build(n)).first;
  if (!it->second->refusal.empty()) throw std::domain_error(it->second->refusal);
  return it->second;
}

template <class T>
const RowMat<T>& matrix(const Basis& b, Direction dir);
template <>
const RowMat<double>& matrix<double>(const Basis& b, Direction dir) {
  return dir == Direction::forward ? b.fwd_d : b.inv_d;
}
template <>
const RowMat<float>& matrix<float>(const Basis& b, Direction dir) {
  return dir == Direction::forward ? b.fwd_f : b.inv_f;
}

template <class T>
struct GemmOp {
  const RowMat<T>* A;
  index_t n;
  void operator()(const std::complex<T>* src, std::complex<T>* dst, index_t rows) const {
    const auto R = static_cast<Eigen::Index>(rows), N = static_cast<Eigen::Index>(n);
    Eigen::Map<const RowMat<T>> X(src, R, N);
    Eigen::Map<RowMat<T>> Y(dst, R, N);
    Y.noalias() = X * (*A);
  }
};

}  // namespace

namespace detail {
void clear_canonical_cache() {
  std::map<index_t, std::shared_ptr<const Basis>> old;
  std::lock_guard<std::mutex> lock(basis_mutex());
  old.swap(basis_cache());
}
}  // namespace detail

std::vector<std::complex<double>> canonical_basis(index_t n) { return basis(n)->phi_t; }

double canonical_unitarity_error(index_t n) { return basis(n)->unitarity_error; }

template <class T>
void canonical_rft(Direction dir, const Batch& b, const RowsIn<T>& in, const RowsOut<T>& out,
                   int nthreads) {
  if (nthreads < 1 || nthreads > kMaxThreads)
    throw std::invalid_argument("nthreads must be in 1.." + std::to_string(kMaxThreads) +
                                ", got " + std::to_string(nthreads));
  auto B = basis(b.n);
  if (b.rows() == 0) return;
  // GEMM chunks: enough rows to amortise the basis, bounded to stay in cache.
  auto split = detail::split_work(b.rows(), b.n * index_t(sizeof(std::complex<T>)) / 8, nthreads);
  GemmOp<T> op{&matrix<T>(*B, dir), b.n};
  detail::run_rows<T>(b, in, out, nullptr, false, nullptr, split, op);
}

template void canonical_rft<float>(Direction, const Batch&, const RowsIn<float>&,
                                   const RowsOut<float>&, int);
template void canonical_rft<double>(Direction, const Batch&, const RowsIn<double>&,
                                    const RowsOut<double>&, int);

}  // namespace qn
