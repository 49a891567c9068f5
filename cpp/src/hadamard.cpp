// Walsh-Hadamard transform of any length m * 2^k (see quantonium/hadamard.hpp).
#include "quantonium/hadamard.hpp"

#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "parallel.hpp"

namespace qn {

namespace {

bool is_prime(index_t q) {
  if (q < 2) return false;
  for (index_t d = 2; d * d <= q; ++d)
    if (q % d == 0) return false;
  return true;
}

/// Q[i][j] = chi(j - i), chi the quadratic character of GF(q), q prime.
std::vector<int> jacobsthal(index_t q) {
  std::vector<int> chi(static_cast<std::size_t>(q), -1);
  chi[0] = 0;
  for (index_t x = 1; x < q; ++x) chi[static_cast<std::size_t>((x * x) % q)] = 1;
  std::vector<int> Q(static_cast<std::size_t>(q * q));
  for (index_t i = 0; i < q; ++i)
    for (index_t j = 0; j < q; ++j) Q[static_cast<std::size_t>(i * q + j)] = chi[static_cast<std::size_t>(((j - i) % q + q) % q)];
  return Q;
}

/// Builds the matrix, or returns an empty vector when order m is not built here.
std::vector<std::int8_t> build(index_t m) {
  std::vector<int> h;
  if (m == 1) {
    h = {1};
  } else if (m == 2) {
    h = {1, 1, 1, -1};
  } else if (m % 4 == 0 && m <= kHadamardMaxM && is_prime(m - 1) && (m - 1) % 4 == 3) {
    // Paley I: H = I + S, S = [[0, 1^T], [-1, Q]]
    const index_t q = m - 1;
    const auto Q = jacobsthal(q);
    h.assign(static_cast<std::size_t>(m * m), 0);
    for (index_t i = 0; i < m; ++i)
      for (index_t j = 0; j < m; ++j) {
        int s;
        if (i == 0) s = j == 0 ? 0 : 1;
        else if (j == 0) s = -1;
        else s = Q[static_cast<std::size_t>((i - 1) * q + (j - 1))];
        h[static_cast<std::size_t>(i * m + j)] = s + (i == j ? 1 : 0);
      }
  } else if (m % 4 == 0 && m <= kHadamardMaxM && is_prime(m / 2 - 1) && (m / 2 - 1) % 4 == 1) {
    // Paley II: H = C kron [[1, -1], [-1, -1]] + I kron [[1, 1], [1, -1]], C = [[0, 1^T], [1, Q]]
    const index_t q = m / 2 - 1, c = q + 1;
    const auto Q = jacobsthal(q);
    const int A[2][2] = {{1, -1}, {-1, -1}}, B[2][2] = {{1, 1}, {1, -1}};
    h.assign(static_cast<std::size_t>(m * m), 0);
    for (index_t i = 0; i < c; ++i)
      for (index_t j = 0; j < c; ++j) {
        int cij;
        if (i == 0) cij = j == 0 ? 0 : 1;
        else if (j == 0) cij = 1;
        else cij = Q[static_cast<std::size_t>((i - 1) * q + (j - 1))];
        for (int u = 0; u < 2; ++u)
          for (int v = 0; v < 2; ++v)
            h[static_cast<std::size_t>((2 * i + u) * m + 2 * j + v)] = cij * A[u][v] + (i == j ? B[u][v] : 0);
      }
  } else {
    return {};
  }
  for (index_t i = 0; i < m; ++i)  // H H^T = m I: a construction error is a bug, never input
    for (index_t j = 0; j < m; ++j) {
      long dot = 0;
      for (index_t k = 0; k < m; ++k)
        dot += h[static_cast<std::size_t>(i * m + k)] * h[static_cast<std::size_t>(j * m + k)];
      if (dot != (i == j ? m : 0))
        throw std::logic_error("Hadamard construction of order " + std::to_string(m) + " failed");
    }
  return std::vector<std::int8_t>(h.begin(), h.end());
}

std::mutex& cache_mutex() {
  static std::mutex m;
  return m;
}

/// order -> matrix (nullptr: not built here); entries are never removed, so references stay valid
std::map<index_t, std::unique_ptr<const std::vector<std::int8_t>>>& cache() {
  static std::map<index_t, std::unique_ptr<const std::vector<std::int8_t>>> c;
  return c;
}

const std::vector<std::int8_t>* lookup(index_t m) {
  std::lock_guard<std::mutex> lock(cache_mutex());
  auto& c = cache();
  auto it = c.find(m);
  if (it == c.end()) {
    auto h = build(m);
    it = c.emplace(m, h.empty() ? nullptr : std::make_unique<const std::vector<std::int8_t>>(std::move(h))).first;
  }
  return it->second.get();
}

std::string unsupported(index_t n) {
  return "no Hadamard matrix of order " + std::to_string(n) +
         " is built here: n must be m * 2^k with m = 1, 2, or a Paley order (q + 1 for a prime q = 3 "
         "mod 4, 2 (q + 1) for a prime q = 1 mod 4) up to " + std::to_string(kHadamardMaxM);
}

/// Unnormalised Sylvester butterflies on a contiguous segment of length p (a power of two).
template <class T>
void fwht(T* x, index_t p) {
  for (index_t h = 1; h < p; h *= 2)
    for (index_t s = 0; s < p; s += 2 * h)
      for (index_t j = s; j < s + h; ++j) {
        const T a = x[j], c = x[j + h];
        x[j] = a + c;
        x[j + h] = a - c;
      }
}

}  // namespace

std::pair<index_t, index_t> hadamard_factor(index_t n) {
  if (n < 1) throw std::domain_error("a Walsh-Hadamard transform needs a length >= 1, not " + std::to_string(n));
  for (index_t p = n & -n; p >= 1; p /= 2)
    if (lookup(n / p) != nullptr) return {n / p, p};
  throw std::domain_error(unsupported(n));
}

const std::vector<std::int8_t>& hadamard_matrix(index_t m) {
  const auto* h = m >= 1 ? lookup(m) : nullptr;
  if (h == nullptr) throw std::domain_error(unsupported(m));
  return *h;
}

template <class T>
void wht(Direction dir, const Batch& b, const T* in, index_t in_s_outer, index_t in_s_elem,
         index_t in_s_inner, T* out, index_t out_s_outer, index_t out_s_elem, index_t out_s_inner,
         int nthreads) {
  if (nthreads < 1) throw std::invalid_argument("nthreads must be >= 1");
  const index_t n = b.n;
  const auto [m, p] = hadamard_factor(n);
  const auto& H = hadamard_matrix(m);
  const bool transpose = dir == Direction::inverse;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(n)));
  const index_t rows = b.rows();
  if (rows == 0) return;
  // Rows are processed in blocks of R, laid out segment-major in the scratch buffer: segment c of row r
  // (elements c*p .. c*p + p - 1) at X + (c*R + r)*p, so that mixing segments is one long vector loop
  // over R*p values per pair (a, c) instead of R short ones.
  const index_t R = std::max<index_t>(1, std::min<index_t>(rows, 16384 / n));
  detail::parallel_for(rows, nthreads, R, [&](index_t r0, index_t r1) {
    std::vector<T> X(static_cast<std::size_t>(R * n)), Y(static_cast<std::size_t>(m > 1 ? R * n : 0));
    std::vector<int> sign(static_cast<std::size_t>(m * m));
    for (index_t a = 0; a < m; ++a)
      for (index_t c = 0; c < m; ++c)
        sign[static_cast<std::size_t>(a * m + c)] = transpose ? H[static_cast<std::size_t>(c * m + a)]
                                                              : H[static_cast<std::size_t>(a * m + c)];
    for (index_t rb = r0; rb < r1; rb += R) {
      const index_t cnt = std::min(R, r1 - rb), L = cnt * p;
      for (index_t rr = 0; rr < cnt; ++rr) {
        const index_t r = rb + rr, o = r / b.inner, i = r % b.inner;
        const T* src = in + o * in_s_outer + i * in_s_inner;
        for (index_t c = 0; c < m; ++c) {
          T* seg = X.data() + (c * cnt + rr) * p;
          for (index_t j = 0; j < p; ++j) seg[j] = src[(c * p + j) * in_s_elem];
          fwht(seg, p);
        }
      }
      const T* res = X.data();
      if (m > 1) {  // Y_a = sum_c H[a][c] X_c (H^T for the inverse), over all rows of the block at once
        for (index_t a = 0; a < m; ++a) {
          T* ya = Y.data() + a * L;
          const T* x0 = X.data();
          if (sign[static_cast<std::size_t>(a * m)] > 0)
            for (index_t j = 0; j < L; ++j) ya[j] = x0[j];
          else
            for (index_t j = 0; j < L; ++j) ya[j] = -x0[j];
          for (index_t c = 1; c < m; ++c) {
            const T* xc = X.data() + c * L;
            if (sign[static_cast<std::size_t>(a * m + c)] > 0)
              for (index_t j = 0; j < L; ++j) ya[j] += xc[j];
            else
              for (index_t j = 0; j < L; ++j) ya[j] -= xc[j];
          }
        }
        res = Y.data();
      }
      for (index_t rr = 0; rr < cnt; ++rr) {
        const index_t r = rb + rr, o = r / b.inner, i = r % b.inner;
        T* dst = out + o * out_s_outer + i * out_s_inner;
        for (index_t a = 0; a < m; ++a) {
          const T* seg = res + (a * cnt + rr) * p;
          for (index_t j = 0; j < p; ++j) dst[(a * p + j) * out_s_elem] = seg[j] * scale;
        }
      }
    }
  });
}

template void wht<float>(Direction, const Batch&, const float*, index_t, index_t, index_t, float*,
                         index_t, index_t, index_t, int);
template void wht<double>(Direction, const Batch&, const double*, index_t, index_t, index_t,
                          double*, index_t, index_t, index_t, int);

}  // namespace qn
