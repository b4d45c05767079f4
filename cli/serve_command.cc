#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "common/log.h"
#include "common/token_file.h"
#include "runtime/server/server.h"

namespace genie::cli {
namespace {

// "8G", "512M", "1000000": bytes.
bool ParseBytes(const std::string& s, uint64_t* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  std::string unit(end);
  double mult = 1;
  if (unit == "" || unit == "B") mult = 1;
  else if (unit == "K" || unit == "KB") mult = 1e3;
  else if (unit == "M" || unit == "MB") mult = 1e6;
  else if (unit == "G" || unit == "GB") mult = 1e9;
  else if (unit == "KiB") mult = 1024.0;
  else if (unit == "MiB") mult = 1024.0 * 1024;
  else if (unit == "GiB") mult = 1024.0 * 1024 * 1024;
  else return false;
  if (v < 0) return false;
  *out = static_cast<uint64_t>(v * mult);
  return true;
}

struct ServeArgs {
  server::ServeOptions options;
  std::string token_file;
  std::string max_memory;
  std::string log_level;  // "" : $GENIE_LOG_LEVEL, else info
};

int RunServe(ServeArgs& a) {
  LogLevel level;
  if (!a.log_level.empty()) {
    if (!ParseLogLevel(a.log_level, &level)) return Fail("--log-level must be debug, info, warn or error", 2);
    SetLogLevel(level);
  }
  if (!a.max_memory.empty() && !ParseBytes(a.max_memory, &a.options.max_memory))
    return Fail("--max-memory '" + a.max_memory + "' is not a size (e.g. 8G, 512M, 1000000)", 2);
  if (!a.token_file.empty()) {
    auto token = ReadToken(a.token_file);
    if (!token.ok()) return Fail(token.status().message());
    if (token->empty()) return Fail("token file " + a.token_file + " is empty");
    a.options.token = token.value();
  }
  Status st = server::Serve(a.options, [&](const std::string& address) {
    std::printf("listening on %s\n", address.c_str());
    std::fflush(stdout);
  });
  if (!st.ok()) return Fail(st.message());
  return 0;
}

}  // namespace

void AddServeOptions(CLI::App* cmd, Action* action) {
  auto a = std::make_shared<ServeArgs>();
  cmd->add_option("--listen", a->options.listen,
                  "HOST:PORT to listen on (port 0: any free port), or for clients on this host unix:PATH (a socket "
                  "file) or unix:@NAME (abstract, no file)")
      ->capture_default_str();
  cmd->add_option("--device", a->options.device, "cpu, cuda or cuda:N")->capture_default_str();
  cmd->add_option("--token-file", a->token_file, "File holding the token clients must present");
  cmd->add_option("--max-memory", a->max_memory, "Bytes of cached tensors to keep (e.g. 8G); unpinned ones are evicted");
  cmd->add_flag("--tf32-conv", a->options.tf32_conv,
               "On CUDA, let convolutions use TF32 as eager PyTorch does by default (torch.backends.cudnn.allow_tf32); "
               "without it they run at full float32 precision, so replays verify against CPU recordings");
  cmd->add_flag("--run-ahead,!--no-run-ahead", a->options.run_ahead,
               "Run a decode loop's next step before its requests come, once two steps showed the loop "
               "(default on; off spends no compute on steps that may not come)");
  cmd->add_option("--run-ahead-steps", a->options.run_ahead_steps,
                  "Steps of a decode loop run ahead: 1 runs the next once the one before is asked for; 2 also runs "
                  "the one after, while the program works on the next's answer, which the runtime already sent")
      ->check(CLI::Range(1, 2))
      ->capture_default_str();
  cmd->add_option("--spin-us", a->options.spin_us,
                  "Microseconds a connection polls for a decode loop's next step before it sleeps, while the loop "
                  "runs ahead and its steps came within that time (0: never)")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  cmd->add_option("--log-level", a->log_level,
                  "debug, info (a line per request), warn or error (default: $GENIE_LOG_LEVEL, else info)");
  cmd->footer("Prints \"listening on ADDRESS\" once it accepts connections. SIGTERM or SIGINT stop it cleanly.");
  cmd->callback([a, action] { *action = [a] { return RunServe(*a); }; });
}

}  // namespace genie::cli
