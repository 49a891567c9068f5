#include "fftw_plans.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <new>
#include <stdexcept>
#include <string>
#include <tuple>

namespace qn::detail {
namespace {

// FFTW's SIMD alignment is at most 64 bytes (AVX-512); comparing offsets
// modulo 64 is conservative for every build of FFTW.
constexpr std::uintptr_t kAlign = 64;

// Most threads FFTW itself is given for one plan (see get_plan).
constexpr int kMaxFftwThreads = 64;

using Key = std::tuple<index_t, index_t, int, bool, int, int, int, unsigned>;

template <class T>
std::map<Key, std::shared_ptr<const Plan<T>>>& cache() {
  // Leaked on purpose: plans must not be destroyed during static destruction,
  // after FFTW or the mutex may already be gone.
  static auto* c = new std::map<Key, std::shared_ptr<const Plan<T>>>();
  return *c;
}

unsigned& flags_ref() {
  static unsigned flags = FFTW_MEASURE;
  return flags;
}

bool threads_ready = false;

}  // namespace

std::mutex& planner_mutex() {
  static auto* m = new std::mutex();
  return *m;
}

template <class T>
Plan<T>::~Plan() {
  std::lock_guard<std::mutex> lock(planner_mutex());
  Fftw<T>::destroy(p_);
}

int alignment_offset(const void* p) {
  return static_cast<int>(reinterpret_cast<std::uintptr_t>(p) % kAlign);
}

template <class T>
AlignedBuffer<T>::AlignedBuffer(std::size_t count) {
  if (count > std::numeric_limits<std::size_t>::max() / sizeof(std::complex<T>))
    throw std::bad_alloc();
  const std::size_t bytes = count * sizeof(std::complex<T>);
  ptr = static_cast<std::complex<T>*>(Fftw<T>::malloc(bytes == 0 ? 1 : bytes));
  if (ptr == nullptr) throw std::bad_alloc();
  std::memset(static_cast<void*>(ptr), 0, bytes);
}

template <class T>
std::shared_ptr<const Plan<T>> get_plan(index_t n, index_t howmany, int sign, bool inplace,
                                        int nthreads, int align_in, int align_out) {
  if (n < 1 || howmany < 1 || n > std::numeric_limits<int>::max() ||
      howmany > std::numeric_limits<int>::max() / n)
    throw std::invalid_argument("FFT of " + std::to_string(howmany) + " rows of length " +
                                std::to_string(n) + " exceeds FFTW's int sizes");
  std::lock_guard<std::mutex> lock(planner_mutex());
  const Key key{n, howmany, sign, inplace, nthreads, align_in, align_out, flags_ref()};
  auto& c = cache<T>();
  auto it = c.find(key);
  if (it != c.end()) return it->second;

  // FFTW's thread count is a process-wide setting that other users of the
  // same library (another extension, ctypes) may change: set it for every
  // plan, after initialising FFTW's threads once.
  if (!threads_ready) {
    if (fftw_init_threads() == 0 || fftwf_init_threads() == 0)
      throw std::runtime_error("FFTW could not initialise its threads");
    threads_ready = true;
  }
  // FFTW's own threads are capped: FFTW aborts the process if one of its
  // threads cannot be started (it checks pthread_create with an assertion),
  // and one transform gains nothing from more than a few dozen threads.
  if (threads_ready) Fftw<T>::plan_with_nthreads(std::min(nthreads, kMaxFftwThreads));

  // Planning with FFTW_MEASURE overwrites its arrays: plan on scratch arrays
  // that have the same alignment offsets as the arrays the plan will run on.
  const std::size_t count = static_cast<std::size_t>(n) * static_cast<std::size_t>(howmany);
  const std::size_t bytes = count * sizeof(std::complex<T>) + kAlign;
  using cpx = typename Fftw<T>::cpx_t;
  void* raw_in = Fftw<T>::malloc(bytes);
  void* raw_out = inplace ? nullptr : Fftw<T>::malloc(bytes);
  if (raw_in == nullptr || (!inplace && raw_out == nullptr)) {
    Fftw<T>::free(raw_in);
    Fftw<T>::free(raw_out);
    throw std::bad_alloc();
  }
  auto shift = [](void* base, int off) {
    auto b = reinterpret_cast<std::uintptr_t>(base);
    const std::uintptr_t aligned = (b + kAlign - 1) / kAlign * kAlign;
    return reinterpret_cast<cpx*>(aligned + static_cast<std::uintptr_t>(off));
  };
  cpx* in = shift(raw_in, align_in);
  cpx* out = inplace ? in : shift(raw_out, align_out);
  // Out of place, the input is preserved (FFTW's default for c2c, made
  // explicit: _fftw_c2c runs these plans on the caller's read-only rows).
  const unsigned flags = flags_ref() | (inplace ? 0u : unsigned(FFTW_PRESERVE_INPUT));
  auto p = Fftw<T>::plan_many(static_cast<int>(n), static_cast<int>(howmany), in, out, sign,
                              flags);
  Fftw<T>::free(raw_in);
  Fftw<T>::free(raw_out);
  if (p == nullptr)
    throw std::runtime_error("FFTW could not create a plan for n=" + std::to_string(n));
  std::shared_ptr<const Plan<T>> plan;
  try {
    plan = std::make_shared<const Plan<T>>(p);
  } catch (...) {
    Fftw<T>::destroy(p);
    throw;
  }
  c.emplace(key, plan);
  return plan;
}

void clear_plan_cache() {
  std::map<Key, std::shared_ptr<const Plan<double>>> d;
  std::map<Key, std::shared_ptr<const Plan<float>>> f;
  {
    std::lock_guard<std::mutex> lock(planner_mutex());
    d.swap(cache<double>());
    f.swap(cache<float>());
  }
  // d and f are destroyed here, outside the lock (each Plan takes it).
}

unsigned planner_flags() {
  std::lock_guard<std::mutex> lock(planner_mutex());
  return flags_ref();
}

void set_planner_flags(unsigned flags) {
  std::lock_guard<std::mutex> lock(planner_mutex());
  flags_ref() = flags;
}

template class Plan<float>;
template class Plan<double>;
template struct AlignedBuffer<float>;
template struct AlignedBuffer<double>;
template std::shared_ptr<const Plan<float>> get_plan<float>(index_t, index_t, int, bool, int, int,
                                                            int);
template std::shared_ptr<const Plan<double>> get_plan<double>(index_t, index_t, int, bool, int,
                                                              int, int);

}  // namespace qn::detail
