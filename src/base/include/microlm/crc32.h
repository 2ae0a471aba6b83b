// CRC-32 as ZIP and PNG define it (IEEE 802.3 polynomial, reflected, 0xFFFFFFFF in and out).
#pragma once

#include <cstdint>
#include <span>

namespace microlm {

// `crc` carries a running value: crc32(b, crc32(a)) == crc32(a followed by b).
uint32_t crc32(std::span<const uint8_t> data, uint32_t crc = 0);

}  // namespace microlm
