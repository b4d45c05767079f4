#include <cstdio>
#include <string>

#include "cli/commands.h"

namespace genie::cli {

int Fail(const std::string& message, int code) {
  std::fprintf(stderr, "genie: error: %s\n", message.c_str());
  return code;
}

}  // namespace genie::cli
