// libFuzzer harness: bit unpacking (qn::unpack_bits) and the packed-size
// arithmetic (qn::packed_bytes).
//
// Input: [bits byte][8-byte raw count][packed bytes]. bits = 1 + (b & 15);
// b & 0x10 selects uint16 output (always for bits > 8). The raw count, any
// int64, checks packed_bytes against exact 128-bit arithmetic: it must equal
// ceil(count * bits / 8) or refuse (count < 0, or too large for int64). The
// packed bytes are then unpacked as the largest count they hold exactly (as
// the binding requires), into a heap buffer of exactly that many values;
// re-packing them must give the input back (padding bits cleared).
#include <cstdint>
#include <vector>

#include "fuzz_input.hpp"
#include "quantonium/quant.hpp"

namespace {

void check_packed_bytes(std::int64_t count, int bits) {
  qn::index_t got = 0;
  const bool bad = qnfuzz::refused([&] { got = qn::packed_bytes(count, bits); });
  if (count < 0) {
    qnfuzz::check(bad, "packed_bytes accepted a negative count");
    return;
  }
  const __int128 exact = (static_cast<__int128>(count) * bits + 7) / 8;
  if (exact > INT64_MAX)
    qnfuzz::check(bad, "packed_bytes did not refuse a size above 2^63 - 1");
  else
    qnfuzz::check(!bad && got == exact, "packed_bytes differs from ceil(count * bits / 8)");
}

template <class U>
void round_trip(const std::uint8_t* packed, std::size_t n, int bits) {
  const auto count = static_cast<qn::index_t>(static_cast<__int128>(n) * 8 / bits);
  if (qn::packed_bytes(count, bits) != static_cast<qn::index_t>(n)) return;  // binding refuses
  std::vector<U> values(static_cast<std::size_t>(count));
  qn::unpack_bits(packed, count, bits, values.data());
  for (U v : values) qnfuzz::check(v < (1u << bits), "unpack_bits: a value has more than `bits` bits");
  std::vector<std::uint8_t> again(n);
  qn::pack_bits(values.data(), count, bits, again.data());
  std::vector<std::uint8_t> expect(packed, packed + n);
  const int used = static_cast<int>((static_cast<__int128>(count) * bits) % 8);
  if (n > 0 && used > 0) expect[n - 1] &= static_cast<std::uint8_t>((1u << used) - 1);
  qnfuzz::check(again == expect, "pack_bits(unpack_bits(x)) != x");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  qnfuzz::Input in{data, size};
  const std::uint8_t b = in.u8();
  const int bits = 1 + (b & 15);
  const bool wide = bits > 8 || (b & 0x10);
  check_packed_bytes(in.i64(), bits);
  // bits outside 1..16 are refused before anything is read
  qnfuzz::check(qnfuzz::refused([] { qn::unpack_bits<std::uint16_t>(nullptr, 0, 17, nullptr); }),
                "unpack_bits accepted bits = 17");
  const std::size_t n = in.n;
  const std::uint8_t* packed = in.take(n);
  // an exactly sized copy: the fuzzer's buffer may have slack after it
  std::vector<std::uint8_t> own(packed, packed + n);
  if (wide)
    round_trip<std::uint16_t>(own.data(), n, bits);
  else
    round_trip<std::uint8_t>(own.data(), n, bits);
  return 0;
}
