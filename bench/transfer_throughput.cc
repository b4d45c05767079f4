// Loopback throughput of a 256 MB tensor: uploaded to a real `genie serve`
// through the wire protocol (framing, the runtime's hash check, storing it as
// a tensor), against a plain copy of the same bytes over a loopback TCP socket
// in the same process. The runtime runs with a memory limit, so it receives
// into its pre-faulted arena. Prints medians and their ratio (target: >= 80%).
//
//   build/bench/transfer_throughput build/cli/genie [--mb 256] [--repeats 5]
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_util.h"
#include "replayer/runtime_client.h"
#include "runtime/transport/socket.h"

using namespace genie;
using bench::Median;
using Clock = std::chrono::steady_clock;

namespace {

void Fill(std::string& buf, uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i + 8 <= buf.size(); i += 8) {
    uint64_t x = rng();
    std::memcpy(&buf[i], &x, 8);
  }
}

// Seconds to send `buf` over loopback TCP to a thread that reads it all.
double PlainCopy(const std::string& buf) {
  auto listener = transport::Listener::Listen("127.0.0.1:0");
  if (!listener.ok()) std::exit(1);
  std::string sink(buf.size(), '\0');
  std::thread reader([&] {
    auto s = listener->Accept();
    if (!s.ok() || !s->RecvAll(sink.data(), sink.size()).ok()) std::exit(1);
    char ack = 1;
    s->SendAll(&ack, 1);
  });
  auto c = transport::Socket::Connect("127.0.0.1:" + std::to_string(listener->port()));
  if (!c.ok()) std::exit(1);
  auto t0 = Clock::now();
  if (!c->SendAll(buf.data(), buf.size()).ok()) std::exit(1);
  char ack;
  if (!c->RecvAll(&ack, 1).ok()) std::exit(1);
  double s = std::chrono::duration<double>(Clock::now() - t0).count();
  reader.join();
  return s;
}

pid_t StartServe(const char* genie, const char* memory, std::string* address) {
  int out[2];
  if (::pipe(out) != 0) std::exit(1);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    // A memory limit reserves the runtime's receive arena up front.
    ::execl(genie, genie, "serve", "--listen", "127.0.0.1:0", "--log-level", "warn", "--max-memory", memory, nullptr);
    ::_exit(127);
  }
  ::close(out[1]);
  std::string line;
  char ch;
  while (::read(out[0], &ch, 1) == 1 && ch != '\n') line.push_back(ch);
  if (line.rfind("listening on ", 0) != 0) {
    std::fprintf(stderr, "genie serve did not start\n");
    std::exit(1);
  }
  *address = line.substr(13);
  return pid;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: transfer_throughput GENIE [--mb N] [--repeats N]\n");
    return 2;
  }
  size_t mb = 256;
  int repeats = 5;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--mb")) mb = std::stoul(argv[i + 1]);
    if (!std::strcmp(argv[i], "--repeats")) repeats = std::stoi(argv[i + 1]);
  }
  std::string address;
  // Room for every repeat's tensor, as each is a new blob.
  std::string memory = std::to_string((mb << 20) * (repeats + 1));
  pid_t serve = StartServe(argv[1], memory.c_str(), &address);
  std::string buf(mb << 20, '\0');
  std::vector<double> plain, genie_s;
  for (int r = 0; r < repeats; ++r) {
    Fill(buf, r + 1);  // new bytes each time, so the runtime cannot skip them by hash
    ContentHash h = ContentHash::Of(buf.data(), buf.size());
    plain.push_back(PlainCopy(buf));
    auto client = replayer::RuntimeClient::Connect(address, "");
    if (!client.ok()) {
      std::fprintf(stderr, "%s\n", client.status().message().c_str());
      return 1;
    }
    auto t0 = Clock::now();
    Status st = client->PutBlobs({{h, std::string_view(buf)}});
    genie_s.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    if (!st.ok()) {
      std::fprintf(stderr, "%s\n", st.message().c_str());
      return 1;
    }
  }
  ::kill(serve, SIGTERM);
  ::waitpid(serve, nullptr, 0);
  double gb = static_cast<double>(buf.size()) / 1e9;
  double p = gb / Median(plain), g = gb / Median(genie_s);
  std::printf("tensor %zu MB, %d repeats, medians\n", mb, repeats);
  std::printf("plain loopback socket copy: %.2f GB/s\n", p);
  std::printf("genie upload (PutBlob to genie serve, hash checked, stored): %.2f GB/s\n", g);
  std::printf("genie / plain: %.0f%% (target >= 80%%)\n", 100 * g / p);
  return 0;
}
