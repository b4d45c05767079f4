// Tokens that authenticate clients to runtimes live in files.
#pragma once

#include <string>

#include "common/status.h"

namespace genie {

// The token in `path`, surrounding whitespace removed; NotFound when the
// file cannot be read.
Result<std::string> ReadToken(const std::string& path);

}  // namespace genie
