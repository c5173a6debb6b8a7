#include <doctest/doctest.h>

#include <array>
#include <random>

#include "wal/crc32c.h"

namespace rpool::wal {
namespace {

struct Vector {
  const char* name;
  Bytes data;
  std::uint32_t crc;
};

// RFC 3720 (iSCSI), appendix B.4, plus the customary "123456789" check value.
std::vector<Vector> rfc3720_vectors() {
  std::vector<Vector> v;
  v.push_back({"32 bytes of zeros", Bytes(32, 0x00), 0x8A9136AAu});
  v.push_back({"32 bytes of ones", Bytes(32, 0xFF), 0x62A8AB43u});
  Bytes up(32), down(32);
  for (int i = 0; i < 32; ++i) {
    up[i] = static_cast<std::uint8_t>(i);
    down[i] = static_cast<std::uint8_t>(31 - i);
  }
  v.push_back({"32 incrementing bytes", up, 0x46DD794Eu});
  v.push_back({"32 decrementing bytes", down, 0x113FDB5Cu});
  v.push_back({"an iSCSI read command PDU",
               Bytes{0x01, 0xC0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                     0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
                     0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
                     0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},
               0xD9963A56u});
  const std::string digits = "123456789";
  v.push_back({"\"123456789\"", Bytes(digits.begin(), digits.end()), 0xE3069283u});
  v.push_back({"the empty string", Bytes{}, 0x00000000u});
  return v;
}

TEST_CASE("crc32c table implementation matches the RFC 3720 test vectors") {
  for (const auto& v : rfc3720_vectors()) {
    INFO(v.name);
    CHECK(crc32c_table(0, v.data) == v.crc);
  }
}

TEST_CASE("crc32c hardware implementation matches the RFC 3720 test vectors") {
  if (!crc32c_hardware_available()) {
    MESSAGE("no SSE4.2 on this CPU; only the table implementation is checked");
    return;
  }
  for (const auto& v : rfc3720_vectors()) {
    INFO(v.name);
    CHECK(crc32c_hardware(0, v.data) == v.crc);
    CHECK(crc32c(v.data) == v.crc);
  }
}

TEST_CASE("crc32c extends over split input, and both implementations agree on random data") {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 300; ++round) {
    Bytes data(rng() % 300);
    for (auto& b : data) b = static_cast<std::uint8_t>(rng());
    const std::size_t split = data.empty() ? 0 : rng() % data.size();
    const ByteView all(data);
    const std::uint32_t whole = crc32c_table(0, all);
    CHECK(crc32c_table(crc32c_table(0, all.first(split)), all.subspan(split)) == whole);
    CHECK(crc32c(crc32c(all.first(split)), all.subspan(split)) == whole);
    if (crc32c_hardware_available()) CHECK(crc32c_hardware(0, all) == whole);
  }
}

}  // namespace
}  // namespace rpool::wal
