#include "runtime/transport/socket.h"

#include <sys/socket.h>
#include <unistd.h>

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
