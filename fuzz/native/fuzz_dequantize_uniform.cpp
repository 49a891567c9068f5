// libFuzzer harness: uniform dequantisation (qn::dequantize_uniform) with
// fuzzed group size, count and nthreads, int8/int16 symbols, float/double out.
//
// Input: [mode byte][8-byte raw group size][8-byte raw count][float32 steps]
// [symbols]. mode & 1: int16 symbols, mode & 2: double output, nthreads =
// 1 + (mode >> 2) % 4. A group size < 1 must be refused; the raw count is
// reduced modulo what the data could hold. Buffers are exactly sized heap
// copies; the result must equal q * step in the output precision, and equal
// the result with nthreads = 1 bit for bit.
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz_input.hpp"
#include "quantonium/quant.hpp"

namespace {

template <class S, class T>
void run(qnfuzz::Input& in, std::int64_t group_size, std::int64_t raw_count, int nthreads) {
  if (group_size < 1) {
    const bool bad = qnfuzz::refused([&] {
      qn::dequantize_uniform<S, T>(nullptr, 0, nullptr, group_size, nullptr, 1);
    });
    qnfuzz::check(bad, "dequantize_uniform accepted group_size < 1");
    return;
  }
  const std::int64_t cap = static_cast<std::int64_t>(in.n / sizeof(S));
  const std::int64_t count = raw_count < 0 ? 0 : raw_count % (cap + 1);
  const qn::index_t groups = qn::group_count(count, group_size);
  const std::size_t need = static_cast<std::size_t>(groups) * 4 + static_cast<std::size_t>(count) * sizeof(S);
  if (need > in.n) return;  // the binding refuses sizes that do not match
  std::vector<float> steps(static_cast<std::size_t>(groups));
  qnfuzz::copy(steps.data(), in.take(steps.size() * 4), steps.size() * 4);
  std::vector<S> q(static_cast<std::size_t>(count));
  qnfuzz::copy(q.data(), in.take(q.size() * sizeof(S)), q.size() * sizeof(S));
  std::vector<T> out(q.size()), one(q.size());
  qn::dequantize_uniform(q.data(), count, steps.data(), group_size, out.data(), nthreads);
  qn::dequantize_uniform(q.data(), count, steps.data(), group_size, one.data(), 1);
  qnfuzz::check(qnfuzz::same_bytes(out, one),
                "dequantize_uniform: nthreads changes the result");
  for (std::size_t i = 0; i < q.size(); ++i) {
    const T expect = static_cast<T>(q[i]) * static_cast<T>(steps[i / static_cast<std::size_t>(group_size)]);
    qnfuzz::check(qnfuzz::same(out[i], expect), "dequantize_uniform differs from q * step");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  qnfuzz::Input in{data, size};
  const std::uint8_t mode = in.u8();
  const int nthreads = 1 + (mode >> 2) % 4;
  const std::int64_t group_size = in.i64();
  const std::int64_t raw_count = in.i64();
  switch (mode & 3) {
    case 0:
      run<std::int8_t, float>(in, group_size, raw_count, nthreads);
      break;
    case 1:
      run<std::int16_t, float>(in, group_size, raw_count, nthreads);
      break;
    case 2:
      run<std::int8_t, double>(in, group_size, raw_count, nthreads);
      break;
    default:
      run<std::int16_t, double>(in, group_size, raw_count, nthreads);
      break;
  }
  return 0;
}
