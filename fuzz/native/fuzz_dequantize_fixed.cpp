// libFuzzer harness: fixed-rate dequantisation (qn::dequantize_fixed) with
// fuzzed bits, group size, count and nthreads.
//
// Input: [mode byte][8-byte raw group size][8-byte raw count][fp16 scales]
// [fp16 minimums, asymmetric only][packed symbols]. mode: bits = 2 + (m & 7)
// (9 and 10 must be refused), m & 0x08 asymmetric, nthreads = 1 + (m >> 4) % 4.
// The raw group size is any int64 (values that are not a positive multiple of
// 8 must be refused); the raw count is reduced modulo what the data could hold
// and must pass the same size checks as in the binding (packed_bytes,
// group_count). Buffers are exactly sized heap copies, so a read past them is
// caught. The result must equal a scalar reference, and equal the result with
// nthreads = 1 bit for bit.
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz_input.hpp"
#include "quantonium/quant.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  qnfuzz::Input in{data, size};
  const std::uint8_t mode = in.u8();
  const int bits = 2 + (mode & 7);
  const bool asym = mode & 0x08;
  const int nthreads = 1 + (mode >> 4) % 4;
  const std::int64_t group_size = in.i64();
  const std::int64_t raw_count = in.i64();
  const std::size_t avail = in.n;
  if (bits > 8 || group_size < 1 || group_size % 8 != 0) {
    // refused before anything is read or written
    const bool bad = qnfuzz::refused([&] {
      qn::dequantize_fixed(nullptr, 0, bits, group_size, nullptr, nullptr, nullptr, 1);
    });
    qnfuzz::check(bad, "dequantize_fixed accepted bad bits or group_size");
    return 0;
  }
  // count: at most what the data could hold if it were all symbols
  const std::int64_t cap = static_cast<std::int64_t>(avail) * 8 / bits;
  const std::int64_t count = raw_count < 0 ? raw_count : raw_count % (cap + 1);
  qn::index_t packed = 0, groups = 0;
  const bool bad = qnfuzz::refused([&] {
    packed = qn::packed_bytes(count, bits);
    groups = qn::group_count(count, group_size);
  });
  if (count < 0) {
    qnfuzz::check(bad, "packed_bytes/group_count accepted a negative count");
    return 0;
  }
  qnfuzz::check(!bad, "packed_bytes/group_count refused a count the data holds");
  const std::size_t need_scales = static_cast<std::size_t>(groups) * 2;
  const std::size_t need = need_scales * (asym ? 2 : 1) + static_cast<std::size_t>(packed);
  if (need > avail) return 0;  // the binding refuses sizes that do not match
  std::vector<std::uint16_t> scales(static_cast<std::size_t>(groups)), mins;
  qnfuzz::copy(scales.data(), in.take(need_scales), need_scales);
  if (asym) {
    mins.resize(static_cast<std::size_t>(groups));
    qnfuzz::copy(mins.data(), in.take(need_scales), need_scales);
  }
  const std::uint8_t* p = in.take(static_cast<std::size_t>(packed));
  std::vector<std::uint8_t> sym_bytes(p, p + packed);
  std::vector<float> out(static_cast<std::size_t>(count)), one(static_cast<std::size_t>(count));
  const std::uint16_t* mp = asym ? mins.data() : nullptr;
  qn::dequantize_fixed(sym_bytes.data(), count, bits, group_size, scales.data(), mp, out.data(),
                       nthreads);
  qn::dequantize_fixed(sym_bytes.data(), count, bits, group_size, scales.data(), mp, one.data(), 1);
  qnfuzz::check(qnfuzz::same_bytes(out, one),
                "dequantize_fixed: nthreads changes the result");
  // scalar reference
  std::vector<std::uint8_t> sym(static_cast<std::size_t>(count));
  qn::unpack_bits(sym_bytes.data(), count, bits, sym.data());
  const int qmax = (1 << (bits - 1)) - 1;
  for (std::int64_t i = 0; i < count; ++i) {
    const auto g = static_cast<std::size_t>(i / group_size);
    const float scale = qn::half_to_float(scales[g]);
    const float expect = asym ? qn::half_to_float(mins[g]) + static_cast<float>(sym[i]) * scale
                              : static_cast<float>(static_cast<int>(sym[i]) - qmax) * scale;
    qnfuzz::check(qnfuzz::same(out[static_cast<std::size_t>(i)], expect),
                  "dequantize_fixed differs from the scalar reference");
  }
  return 0;
}
