// C++ microbenchmarks of the native core (Google Benchmark).
//
// Build and run (see bench/README.md):
//   cmake -S . -B build/bench -DQN_BUILD_BENCHMARKS=ON && cmake --build build/bench -j2
//   build/bench/qn_bench_rft --benchmark_format=json > bench/results/cpp.json
//
// Each case transforms `rows` contiguous rows of length n (rows*n ~ 4M
// points), single thread: the Phi-RFT forward and inverse through the public
// API, and two floors: a raw out-of-place FFTW c2c with one plan over the
// whole batch (BM_FftwC2c<T, false>) and the same in the cache-sized chunks
// the Phi-RFT uses (BM_FftwC2c<T, true>): the phase pass costs the gap
// between the second floor and the Phi-RFT.
// Plans are made before the timed loop. Items processed are points; bytes processed are the complex input bytes.
#include <benchmark/benchmark.h>

#include <complex>
#include <cstring>
#include <random>
#include <vector>

#include "quantonium/rft.hpp"
#include "../../cpp/src/simd_kernels.hpp"  // internal: the phase kernel alone

namespace {

constexpr long kPoints = 1L << 22;

template <class T>
std::vector<std::complex<T>> random_rows(long count) {
  std::mt19937_64 gen(42);
  std::normal_distribution<double> d;
  std::vector<std::complex<T>> v(static_cast<std::size_t>(count));
  for (auto& z : v) z = std::complex<T>(static_cast<T>(d(gen)), static_cast<T>(d(gen)));
  return v;
}

template <class T>
void set_counters(benchmark::State& state, long n, long rows) {
  state.SetItemsProcessed(state.iterations() * n * rows);
  state.SetBytesProcessed(state.iterations() * n * rows * long(sizeof(std::complex<T>)));
  state.counters["n"] = static_cast<double>(n);
  state.counters["rows"] = static_cast<double>(rows);
}

template <class T, qn::Direction D>
void BM_PhiRft(benchmark::State& state) {
  const long n = state.range(0), rows = kPoints / n;
  auto in = random_rows<T>(n * rows);
  std::vector<std::complex<T>> out(in.size());
  const qn::Batch b{rows, n, 1};
  const qn::RowsIn<T> ri{reinterpret_cast<const T*>(in.data()), 2 * n, 0, 2, 1, false};
  const qn::RowsOut<T> ro{reinterpret_cast<T*>(out.data()), 2 * n, 0, 2, 1};
  qn::phi_rft<T>(D, b, ri, ro, 1.0, 1.0, 1);  // plan outside the timed loop
  for (auto _ : state) {
    qn::phi_rft<T>(D, b, ri, ro, 1.0, 1.0, 1);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_counters<T>(state, n, rows);
}

template <class T>
void BM_RealRft(benchmark::State& state) {
  const long n = state.range(0), rows = kPoints / n;
  std::vector<T> in(static_cast<std::size_t>(n * rows), T(1)), out(in.size());
  const qn::Batch b{rows, n, 1};
  qn::real_rft<T>(qn::Direction::forward, b, in.data(), n, 1, 0, out.data(), n, 1, 0, 1.0, 1.0, 1);
  for (auto _ : state) {
    qn::real_rft<T>(qn::Direction::forward, b, in.data(), n, 1, 0, out.data(), n, 1, 0, 1.0, 1.0,
                    1);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * n * rows);
  state.SetBytesProcessed(state.iterations() * n * rows * long(sizeof(T)));
}

template <class T, bool Blocked>
void BM_FftwC2c(benchmark::State& state) {
  const long n = state.range(0), rows = kPoints / n;
  auto in = random_rows<T>(n * rows);
  std::vector<std::complex<T>> out(in.size());
  qn::fftw_c2c_raw<T>(qn::Direction::forward, rows, n, in.data(), out.data(), 1, Blocked);
  for (auto _ : state) {
    qn::fftw_c2c_raw<T>(qn::Direction::forward, rows, n, in.data(), out.data(), 1, Blocked);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_counters<T>(state, n, rows);
}

// The fused phase multiply alone, on 4096 complex values held in cache: the
// kernel that the SIMD paths differ in (choose one with QUANTONIUM_SIMD).
template <class T>
void BM_PhaseKernel(benchmark::State& state) {
  const long n = 4096;
  auto a = random_rows<T>(n), p = random_rows<T>(n);
  std::vector<std::complex<T>> out(static_cast<std::size_t>(n));
  const auto& K = qn::simd::kernels<T>();
  for (auto _ : state) {
    K.cmul(reinterpret_cast<const T*>(a.data()), reinterpret_cast<const T*>(p.data()),
           reinterpret_cast<T*>(out.data()), n);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * n);
  state.SetLabel(qn::simd::selected_path());
}
BENCHMARK(BM_PhaseKernel<float>);
BENCHMARK(BM_PhaseKernel<double>);

// Writing a 32 MiB output (4M complex64), larger than the cache: ordinary
// stores (as FFTW's and the phase kernel's are) against the streaming stores
// the engine uses for outputs above 8 MiB.
template <class T, bool Stream>
void BM_WriteOut(benchmark::State& state) {
  const long count = kPoints;
  auto src = random_rows<T>(count);
  std::vector<std::complex<T>> dst(static_cast<std::size_t>(count));
  const auto& K = qn::simd::kernels<T>();
  for (auto _ : state) {
    if (Stream) {
      K.stream(reinterpret_cast<const T*>(src.data()), reinterpret_cast<T*>(dst.data()), count);
      qn::simd::stream_fence();
    } else {
      // Row by row (1024 complex), as the engine writes: a copy this short
      // never takes glibc's own streaming path (used above ~3/4 of the LLC).
      for (long r = 0; r < count; r += 1024)
        std::memcpy(static_cast<void*>(dst.data() + r), src.data() + r, 1024 * sizeof(dst[0]));
    }
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * count * long(sizeof(std::complex<T>)));
  state.SetLabel(qn::simd::selected_path());
}
BENCHMARK(BM_WriteOut<float, false>)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_WriteOut<float, true>)->Unit(benchmark::kMillisecond)->UseRealTime();

#define QN_SIZES ->Arg(256)->Arg(1024)->Arg(4096)->Arg(8192)->Unit(benchmark::kMillisecond)->UseRealTime()

BENCHMARK(BM_FftwC2c<float, false>) QN_SIZES;
BENCHMARK(BM_FftwC2c<float, true>) QN_SIZES;
BENCHMARK(BM_PhiRft<float, qn::Direction::forward>) QN_SIZES;
BENCHMARK(BM_PhiRft<float, qn::Direction::inverse>) QN_SIZES;
BENCHMARK(BM_RealRft<float>) QN_SIZES;
BENCHMARK(BM_FftwC2c<double, false>) QN_SIZES;
BENCHMARK(BM_FftwC2c<double, true>) QN_SIZES;
BENCHMARK(BM_PhiRft<double, qn::Direction::forward>) QN_SIZES;
BENCHMARK(BM_PhiRft<double, qn::Direction::inverse>) QN_SIZES;
BENCHMARK(BM_RealRft<double>) QN_SIZES;

}  // namespace

BENCHMARK_MAIN();
