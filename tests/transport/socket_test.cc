#include "runtime/transport/socket.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tests/catch.h"

using genie::transport::Socket;

namespace {

// A connected pair: what one side's SendAll writes, the other's RecvAll reads.
std::pair<Socket, Socket> Pair() {
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
  return {Socket(fds[0]), Socket(fds[1])};
}

std::string Pattern(size_t n, char seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(seed + i * 7);
  return s;
}

}  // namespace

TEST_CASE("receives read ahead: pipelined messages, a moved socket, and large bodies straight into place") {
  auto [a, b] = Pair();
  // Three small length-prefixed messages written at once, as pipelined replies arrive.
  std::string wire;
  std::vector<std::string> bodies = {Pattern(5, 'a'), Pattern(300, 'b'), Pattern(1, 'c')};
  for (const auto& body : bodies) {
    uint32_t len = static_cast<uint32_t>(body.size());
    wire.append(reinterpret_cast<const char*>(&len), 4);
    wire += body;
  }
  // And a body larger than the read-ahead buffer, whose start arrives with the rest.
  std::string big = Pattern(3 * Socket::kReadAhead + 11, 'd');
  uint32_t big_len = static_cast<uint32_t>(big.size());
  wire.append(reinterpret_cast<const char*>(&big_len), 4);
  bool sent = false;  // Catch2's assertions are not for other threads
  std::thread writer([&a = a, &wire, &big, &sent] {
    sent = a.SendAll(wire.data(), wire.size()).ok() && a.SendAll(big.data(), big.size()).ok();
  });
  auto read_message = [](Socket& s) {
    uint32_t len = 0;
    REQUIRE(s.RecvAll(&len, 4).ok());
    std::string body(len, '\0');
    REQUIRE(s.RecvAll(body.data(), len).ok());
    return body;
  };
  CHECK(read_message(b) == bodies[0]);
  // What the first receive read ahead moves with the socket.
  Socket moved(std::move(b));
  CHECK(read_message(moved) == bodies[1]);
  CHECK(read_message(moved) == bodies[2]);
  CHECK(read_message(moved) == big);
  writer.join();
  CHECK(sent);
  // A closed peer is an error, after the bytes it sent.
  const char tail[3] = {'x', 'y', 'z'};
  REQUIRE(a.SendAll(tail, 3).ok());
  a.Close();
  char got[2];
  REQUIRE(moved.RecvAll(got, 2).ok());
  CHECK(std::string(got, 2) == "xy");
  char more[4];
  genie::Status st = moved.RecvAll(more, 4);
  CHECK_FALSE(st.ok());
  CHECK(st.message().find("closed") != std::string::npos);
}

namespace {

// CPU time of the calling thread, in milliseconds.
double ThreadCpuMs() {
  timespec t{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

}  // namespace

TEST_CASE("a spinning receive: bytes that come within the spin or after it, a quiet peer, errors kept") {
  auto [a, b] = Pair();
  b.SetSpin(20000);  // 20 ms
  const std::string first = Pattern(70000, 'f'), second = Pattern(100, 's'), third = Pattern(3, 't');
  bool sent = false;
  std::thread writer([&a = a, &first, &second, &third, &sent] {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // within the spin
    bool ok = a.SendAll(first.data(), first.size()).ok();
    std::this_thread::sleep_for(std::chrono::milliseconds(60));  // past it: the receive sleeps for the rest
    ok = ok && a.SendAll(second.data(), second.size()).ok();
    std::this_thread::sleep_for(std::chrono::milliseconds(60));  // the last wait was long: no spin at all
    sent = ok && a.SendAll(third.data(), third.size()).ok();
  });
  std::string got(first.size(), '\0');
  REQUIRE(b.RecvAll(got.data(), got.size()).ok());  // larger than the read-ahead: straight into place
  CHECK(got == first);
  double before = ThreadCpuMs();
  got.assign(second.size(), '\0');
  REQUIRE(b.RecvAll(got.data(), got.size()).ok());
  CHECK(got == second);
  double spun = ThreadCpuMs() - before;
  Socket moved(std::move(b));  // the spin and the last wait move with the socket
  before = ThreadCpuMs();
  got.assign(third.size(), '\0');
  REQUIRE(moved.RecvAll(got.data(), got.size()).ok());
  CHECK(got == third);
  double slept = ThreadCpuMs() - before;
  writer.join();
  CHECK(sent);
  // The second wait polled for its 20 ms (on a loaded machine the thread may
  // get part of them); the third, after a wait longer than the spin, slept.
  CHECK(spun > 5);
  CHECK(slept < 5);
  // A closed peer is still an error, found while spinning.
  a.Close();
  char more[4];
  genie::Status st = moved.RecvAll(more, 4);
  CHECK_FALSE(st.ok());
  CHECK(st.message().find("closed") != std::string::npos);

  // And so is a receive that waits past its timeout.
  auto [c, d] = Pair();
  d.SetSpin(1000);
  d.SetRecvTimeout(50);
  st = d.RecvAll(more, 4);
  CHECK_FALSE(st.ok());
  CHECK(st.message().find("did not answer in time") != std::string::npos);
}

namespace {

// Listens on `address`, connects to it and checks that bytes cross both ways; returns the listener's address.
std::string RoundTrip(const std::string& address) {
  auto listener = genie::transport::Listener::Listen(address);
  REQUIRE(listener.ok());
  auto client = Socket::Connect(listener->address());
  REQUIRE(client.ok());
  auto server = listener->Accept();
  REQUIRE(server.ok());
  std::string up = Pattern(100000, 'u'), down = Pattern(7, 'd');
  bool sent = false;
  std::thread writer([&c = *client, &up, &sent] { sent = c.SendAll(up.data(), up.size()).ok(); });
  std::string got(up.size(), '\0');
  REQUIRE(server->RecvAll(got.data(), got.size()).ok());
  writer.join();
  CHECK(sent);
  CHECK(got == up);
  REQUIRE(server->SendAll(down.data(), down.size()).ok());
  std::string back(down.size(), '\0');
  REQUIRE(client->RecvAll(back.data(), back.size()).ok());
  CHECK(back == down);
  return listener->address();
}

}  // namespace

TEST_CASE("TCP and unix addresses: a listener, a connection, bytes both ways") {
  std::string tcp = RoundTrip("127.0.0.1:0");
  CHECK(tcp.rfind("127.0.0.1:", 0) == 0);
  CHECK(tcp != "127.0.0.1:0");  // the port bound
  std::string name = "unix:@genie-socket-test-" + std::to_string(::getpid());
  CHECK(RoundTrip(name) == name);

  char dir[] = "/tmp/genie-socket-test-XXXXXX";
  REQUIRE(::mkdtemp(dir) != nullptr);
  std::string path = std::string(dir) + "/runtime.sock";
  CHECK(RoundTrip("unix:" + path) == "unix:" + path);
  // The listener took its socket file with it, and a file a dead listener
  // left (here: bound, never accepted on) is replaced.
  CHECK(::access(path.c_str(), F_OK) != 0);
  {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, path.c_str());
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    ::close(fd);
  }
  CHECK(RoundTrip("unix:" + path) == "unix:" + path);
  {
    // One still accepting is not.
    auto live = genie::transport::Listener::Listen("unix:" + path);
    REQUIRE(live.ok());
    auto second = genie::transport::Listener::Listen("unix:" + path);
    CHECK_FALSE(second.ok());
  }
  CHECK(::rmdir(dir) == 0);  // empty again
}

TEST_CASE("unix addresses that cannot work are one clear error") {
  auto none = Socket::Connect("unix:@genie-socket-test-nobody-" + std::to_string(::getpid()));
  REQUIRE_FALSE(none.ok());
  CHECK(none.status().message().find("cannot reach runtime unix:@genie-socket-test-nobody") != std::string::npos);
  auto missing = Socket::Connect("unix:/nonexistent/genie.sock");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().message().find("No such file") != std::string::npos);
  for (const std::string& bad : {std::string("unix:"), std::string("unix:@"), "unix:/" + std::string(200, 'x')}) {
    auto c = Socket::Connect(bad);
    REQUIRE_FALSE(c.ok());
    CHECK(c.status().message().find("is not unix:PATH or unix:@NAME") != std::string::npos);
    CHECK_FALSE(genie::transport::Listener::Listen(bad).ok());
  }
}
