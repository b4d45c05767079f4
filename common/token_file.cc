#include "common/token_file.h"

#include <cctype>
#include <fstream>
#include <sstream>

namespace genie {

Result<std::string> ReadToken(const std::string& path) {
  std::ifstream f(path);
  if (!f) return Status::NotFound("token file " + path + " cannot be read");
  std::stringstream ss;
  ss << f.rdbuf();
  std::string t = ss.str();
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.pop_back();
  size_t i = 0;
  while (i < t.size() && std::isspace(static_cast<unsigned char>(t[i]))) ++i;
  return t.substr(i);
}

}  // namespace genie
