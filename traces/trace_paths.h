// Where traces live when the user names none: ./traces/<program>-<time>.gtrace.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace genie::traces {

constexpr const char* kTraceDir = "traces";
constexpr const char* kTraceExtension = ".gtrace";

// Where `genie run PROGRAM` writes the segments it plans from: apart from
// recorded traces, which hold payloads and replay.
constexpr const char* kLiveTraceDir = "traces/live";

// "<dir>/<stem of program>-YYYYMMDD-HHMMSS.gtrace" (local time), with a
// numeric suffix when that name is taken. Creates the folder.
Result<std::string> DefaultTracePath(const std::string& program, const std::string& dir = kTraceDir);

// What names a command line's trace: the script when it starts a Python
// interpreter (`python3 train.py`), else the program itself. `argv` is not empty.
const std::string& ProgramOf(const std::vector<std::string>& argv);

// The most recently modified *.gtrace under `dir`, or NotFound naming `dir`.
Result<std::string> NewestTrace(const std::string& dir = kTraceDir);

// The trace a command was given, or the newest under ./traces/ when it was given none.
Result<std::string> TraceOrNewest(const std::string& given);

}  // namespace genie::traces
