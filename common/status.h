// Status and Result<T>: the one error type of Genie's libraries.
//
// A Status is OK or carries a code and a one-line message meant for the user
// ("trace.gtrace: chunk 3 checksum mismatch"). Libraries never throw; the CLI
// prints message() and exits non-zero.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace genie {

class Status {
 public:
  enum class Code { kOk, kInvalidArgument, kNotFound, kCorruption, kIOError, kUnsupported, kInternal };

  Status() = default;
  static Status OK() { return Status(); }
  static Status InvalidArgument(std::string msg) { return Status(Code::kInvalidArgument, std::move(msg)); }
  static Status NotFound(std::string msg) { return Status(Code::kNotFound, std::move(msg)); }
  static Status Corruption(std::string msg) { return Status(Code::kCorruption, std::move(msg)); }
  static Status IOError(std::string msg) { return Status(Code::kIOError, std::move(msg)); }
  static Status Unsupported(std::string msg) { return Status(Code::kUnsupported, std::move(msg)); }
  static Status Internal(std::string msg) { return Status(Code::kInternal, std::move(msg)); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // Returns a copy whose message is "context: message".
  Status WithContext(const std::string& context) const;

 private:
  Status(Code code, std::string msg) : code_(code), message_(std::move(msg)) {}
  Code code_ = Code::kOk;
  std::string message_;
};

// Holds either a value or a non-OK Status.
template <typename T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}                // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {}        // NOLINT: implicit by design

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() { return *value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace genie

#define GENIE_CONCAT_INNER(a, b) a##b
#define GENIE_CONCAT(a, b) GENIE_CONCAT_INNER(a, b)

// Returns the Status from the enclosing function when `expr` is not OK.
#define GENIE_RETURN_IF_ERROR(expr)              \
  do {                                           \
    ::genie::Status _genie_st = (expr);          \
    if (!_genie_st.ok()) return _genie_st;       \
  } while (0)

// `lhs = value of rexpr`, or returns its Status from the enclosing function.
#define GENIE_ASSIGN_OR_RETURN(lhs, rexpr)                               \
  auto GENIE_CONCAT(_genie_res_, __LINE__) = (rexpr);                    \
  if (!GENIE_CONCAT(_genie_res_, __LINE__).ok())                         \
    return GENIE_CONCAT(_genie_res_, __LINE__).status();                 \
  lhs = std::move(GENIE_CONCAT(_genie_res_, __LINE__)).value()
