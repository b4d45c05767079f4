#include "common/json_writer.h"

#include <cmath>
#include <cstdio>

namespace genie {

std::string JsonQuote(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\n': o += "\\n"; break;
      case '\r': o += "\\r"; break;
      case '\t': o += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          o += buf;
        } else {
          o.push_back(static_cast<char>(c));
        }
    }
  }
  o += '"';
  return o;
}

void JsonWriter::BeforeValue() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (!first_.empty()) {
    if (!first_.back()) out_ += ',';
    first_.back() = false;
  }
}

JsonWriter& JsonWriter::BeginObject() { BeforeValue(); out_ += '{'; first_.push_back(true); return *this; }
JsonWriter& JsonWriter::EndObject() { out_ += '}'; first_.pop_back(); return *this; }
JsonWriter& JsonWriter::BeginArray() { BeforeValue(); out_ += '['; first_.push_back(true); return *this; }
JsonWriter& JsonWriter::EndArray() { out_ += ']'; first_.pop_back(); return *this; }

JsonWriter& JsonWriter::Key(const std::string& k) {
  BeforeValue();
  out_ += JsonQuote(k);
  out_ += ':';
  after_key_ = true;
  return *this;
}

JsonWriter& JsonWriter::String(const std::string& s) { BeforeValue(); out_ += JsonQuote(s); return *this; }
JsonWriter& JsonWriter::Int(int64_t v) { BeforeValue(); out_ += std::to_string(v); return *this; }
JsonWriter& JsonWriter::Uint(uint64_t v) { BeforeValue(); out_ += std::to_string(v); return *this; }
JsonWriter& JsonWriter::Bool(bool v) { BeforeValue(); out_ += v ? "true" : "false"; return *this; }
JsonWriter& JsonWriter::Null() { BeforeValue(); out_ += "null"; return *this; }

JsonWriter& JsonWriter::Double(double v) {
  if (!std::isfinite(v)) return String(std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf"));
  BeforeValue();
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  out_ += buf;
  return *this;
}

}  // namespace genie
