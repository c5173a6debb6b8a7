// CRC32C: the SSE4.2 instruction where available, slice-by-8 tables otherwise.
#include "wal/crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace rpool::wal {
namespace {

constexpr std::uint32_t poly_reflected = 0x82F63B78u;

// tables[k][b] is the CRC of byte b followed by k zero bytes, so eight bytes can be folded in with
// eight lookups and no per-bit loop.
struct Tables {
  std::array<std::array<std::uint32_t, 256>, 8> t{};
  constexpr Tables() {
    for (std::uint32_t b = 0; b < 256; ++b) {
      std::uint32_t c = b;
      for (int bit = 0; bit < 8; ++bit) c = (c & 1u) ? (c >> 1) ^ poly_reflected : c >> 1;
      t[0][b] = c;
    }
    for (std::size_t k = 1; k < 8; ++k) {
      for (std::size_t b = 0; b < 256; ++b)
        t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xFFu];
    }
  }
};
constexpr Tables tables;
static_assert(tables.t[0][128] == poly_reflected);  // the byte 0x80 is the polynomial itself

bool detect_sse42() {
#if defined(__x86_64__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0) return false;
  return (ecx & bit_SSE4_2) != 0;
#else
  return false;
#endif
}

const bool has_sse42 = detect_sse42();

}  // namespace

std::uint32_t crc32c_table(std::uint32_t crc, ByteView data) {
  const auto& t = tables.t;
  std::uint32_t c = ~crc;
  const std::uint8_t* p = data.data();
  std::size_t n = data.size();
  while (n >= 8) {
    const std::uint32_t lo = load_u32le(p) ^ c;
    const std::uint32_t hi = load_u32le(p + 4);
    c = t[7][lo & 0xFFu] ^ t[6][(lo >> 8) & 0xFFu] ^ t[5][(lo >> 16) & 0xFFu] ^ t[4][lo >> 24] ^
        t[3][hi & 0xFFu] ^ t[2][(hi >> 8) & 0xFFu] ^ t[1][(hi >> 16) & 0xFFu] ^ t[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) c = (c >> 8) ^ t[0][(c ^ *p++) & 0xFFu];
  return ~c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) std::uint32_t crc32c_hardware(std::uint32_t crc, ByteView data) {
  std::uint64_t c = ~crc;
  const std::uint8_t* p = data.data();
  std::size_t n = data.size();
  while (n >= 8) {
    std::uint64_t word;
    std::memcpy(&word, p, 8);  // x86 is little-endian, as the CRC's byte order requires
    c = __builtin_ia32_crc32di(c, word);
    p += 8;
    n -= 8;
  }
  auto c32 = static_cast<std::uint32_t>(c);
  while (n-- > 0) c32 = __builtin_ia32_crc32qi(c32, *p++);
  return ~c32;
}
bool crc32c_hardware_available() { return has_sse42; }
#else
std::uint32_t crc32c_hardware(std::uint32_t crc, ByteView data) { return crc32c_table(crc, data); }
bool crc32c_hardware_available() { return false; }
#endif

std::uint32_t crc32c(std::uint32_t crc, ByteView data) {
  return has_sse42 ? crc32c_hardware(crc, data) : crc32c_table(crc, data);
}

}  // namespace rpool::wal
