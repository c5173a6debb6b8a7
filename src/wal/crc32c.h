// CRC32C (Castagnoli, polynomial 0x1EDC6F41, reflected 0x82F63B78), the checksum of every WAL
// record, segment header, hard state and snapshot file.
//
// crc32c() uses the SSE4.2 CRC32 instruction when the CPU has it (checked once with cpuid) and a
// slice-by-8 table otherwise. Both are checked against the RFC 3720 (iSCSI) test vectors.
#pragma once

#include <cstdint>

#include "base/bytes.h"

namespace rpool::wal {

// Extends `crc` (the value returned for the bytes before `data`; 0 to start) over `data`.
// crc32c(crc32c(0, a), b) == crc32c(0, a ++ b).
std::uint32_t crc32c(std::uint32_t crc, ByteView data);
inline std::uint32_t crc32c(ByteView data) { return crc32c(0, data); }

// The two implementations behind crc32c(), exposed so tests and the benchmark can check and time
// each one. crc32c_hardware() must only be called when crc32c_hardware_available().
std::uint32_t crc32c_table(std::uint32_t crc, ByteView data);
std::uint32_t crc32c_hardware(std::uint32_t crc, ByteView data);
bool crc32c_hardware_available();

}  // namespace rpool::wal
