// The canonical text and JSON forms of a trace (`genie trace dump`).
//
// Canonical means: value ids are renumbered %0, %1, ... in order of
// definition within each stream, payloads are named by a 16-hex-digit prefix
// of their content hash, floats are printed with a fixed format, and nothing
// that varies between two recordings of the same program (the creation time,
// capture durations) appears. Recording the same program twice therefore
// gives byte-identical dumps, which diff cleanly.
#pragma once

#include <ostream>

#include "common/status.h"
#include "traces/trace_reader.h"

namespace genie::traces {

enum class DumpFormat { kText, kJson };

// Streams every segment of `reader` to `out`; fails like TraceReader::Next,
// after writing what was read before the failure.
Status DumpTrace(TraceReader* reader, DumpFormat format, std::ostream& out);

// Header fields that differ between two recordings of one program; the dump leaves them out.
bool IsVolatileHeaderField(const std::string& key);

}  // namespace genie::traces
