// CRC-32C (Castagnoli), the checksum of trace chunks.
#pragma once

#include <cstddef>
#include <cstdint>

namespace genie {

// Extends `crc` (0 for a fresh checksum) over `n` bytes at `data`.
uint32_t Crc32c(const void* data, size_t n, uint32_t crc = 0);

}  // namespace genie
