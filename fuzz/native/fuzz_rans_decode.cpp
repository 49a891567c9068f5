// libFuzzer harness: the rANS decoder (qn::rans_decode) on int8, int16 and
// uint8 symbols.
//
// Input: [mode byte][rANS stream]. mode % 3 picks the symbol type (int8,
// int16, uint8). The expected count is the one the stream itself claims (its
// first varint), as when a file's index and stream agree; when mode & 0x80 it
// is off by -3..+4 from the claim, as when they disagree (the decoder must
// refuse). The output is a heap buffer of exactly `count` symbols, so any
// write past it is caught by AddressSanitizer. A refused stream must throw
// std::invalid_argument and nothing else.
#include <cstdint>
#include <vector>

#include "fuzz_input.hpp"
#include "quantonium/entropy.hpp"

namespace {

constexpr std::int64_t kMaxCount = std::int64_t(1) << 20;  // bounds the harness's own buffer

/// The stream's claimed count (LEB128), or 0 if it is not a valid varint.
std::int64_t claimed_count(const std::uint8_t* p, std::size_t n) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n && i < 10; ++i) {
    v |= static_cast<std::uint64_t>(p[i] & 0x7F) << (7 * i);
    if (!(p[i] & 0x80)) return v > static_cast<std::uint64_t>(INT64_MAX) ? 0 : static_cast<std::int64_t>(v);
  }
  return 0;
}

template <class S>
void decode(const std::uint8_t* data, std::size_t size, std::int64_t count) {
  std::vector<S> out(static_cast<std::size_t>(count));
  const bool bad = qnfuzz::refused([&] {
    qn::rans_decode<S>(data, static_cast<qn::index_t>(size), count, out.data());
  });
  if (bad) return;
  // A stream that decodes decodes the same way twice (no hidden state).
  std::vector<S> again(static_cast<std::size_t>(count));
  qn::rans_decode<S>(data, static_cast<qn::index_t>(size), count, again.data());
  qnfuzz::check(out == again, "rans_decode: two decodes of one stream differ");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  qnfuzz::Input in{data, size};
  const std::uint8_t mode = in.u8();
  const std::uint8_t* stream = in.p;
  const std::size_t n = in.n;
  std::int64_t count = claimed_count(stream, n);
  if (count > kMaxCount) return 0;
  if (mode & 0x80) count += static_cast<std::int64_t>((mode >> 2) & 7) - 3;
  if (count < 0) return 0;  // the caller's count: the binding refuses < 0  // the caller's count: the binding refuses < 0
  switch (mode % 3) {
    case 0:
      decode<std::int8_t>(stream, n, count);
      break;
    case 1:
      decode<std::int16_t>(stream, n, count);
      break;
    default:
      decode<std::uint8_t>(stream, n, count);
      break;
  }
  return 0;
}
