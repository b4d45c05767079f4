// Stream sockets for the wire protocol: blocking, large buffers for bulk
// transfers. Addresses are "HOST:PORT" (TCP, with TCP_NODELAY: small
// requests never wait on Nagle) or, for a runtime on the same host,
// "unix:PATH" (a socket file) or "unix:@NAME" (Linux's abstract namespace:
// no file, gone with the listener). A unix socket skips the TCP stack, which
// on loopback costs each small message more than its wake-up does.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"

namespace genie::transport {

class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) : fd_(fd) {}
  Socket(Socket&& o) noexcept
      : fd_(o.fd_),
        peer_(std::move(o.peer_)),
        rbuf_(std::move(o.rbuf_)),
        rpos_(o.rpos_),
        rend_(o.rend_),
        spin_us_(o.spin_us_),
        last_wait_us_(o.last_wait_us_) {
    o.fd_ = -1;
    o.rpos_ = o.rend_ = 0;
  }
  Socket& operator=(Socket&& o) noexcept;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  ~Socket() { Close(); }

  // Connects to an address (above); an unreachable one is IOError naming it.
  static Result<Socket> Connect(const std::string& address, int timeout_ms = 5000);

  // Sends or receives exactly n bytes; a closed peer is IOError. Receives
  // read ahead into a buffer of kReadAhead bytes: a message's length and
  // body, or several pipelined replies, come in one recv. Large receives go
  // straight into `data` once the buffered bytes are taken.
  Status SendAll(const void* data, size_t n);
  Status RecvAll(void* data, size_t n);
  static constexpr size_t kReadAhead = 64 << 10;
  // Fails receives that wait longer than `ms` (0: wait forever).
  void SetRecvTimeout(int ms);
  // A receive that would block first polls the socket for up to `us`
  // microseconds (0: never, the default), unless the previous receive that
  // had to wait waited longer than that. Data that comes within the time is
  // taken without a sleep: the sender's wake-up of a sleeping receiver and
  // the receiver's return to its CPU cost each side tens of microseconds on a
  // virtual machine, more when the receiver's vCPU has halted meanwhile.
  // A peer that is quiet for longer (a program between requests) costs one
  // spin, then receives sleep until one comes within the time again.
  void SetSpin(int us) { spin_us_ = us; }

  void Close();
  bool valid() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  // Bytes received ahead and not yet taken: a poll of fd() does not see them.
  size_t buffered() const { return rend_ - rpos_; }
  const std::string& peer() const { return peer_; }
  void set_peer(std::string p) { peer_ = std::move(p); }

 private:
  ssize_t Recv(char* into, size_t want);  // one recv, spinning first per SetSpin

  int fd_ = -1;
  std::string peer_;
  std::unique_ptr<char[]> rbuf_;  // bytes received ahead: [rpos_, rend_)
  size_t rpos_ = 0;
  size_t rend_ = 0;
  int spin_us_ = 0;
  int64_t last_wait_us_ = 0;
};

class Listener {
 public:
  // Listens on an address (above; port 0: any free port). A socket file
  // is removed when the listener closes; one there already (a listener's
  // that died) is replaced only when nothing accepts on it.
  static Result<Listener> Listen(const std::string& address);
  Listener(Listener&& o) noexcept
      : fd_(o.fd_), port_(o.port_), address_(std::move(o.address_)), file_(std::move(o.file_)) {
    o.fd_ = -1;
    o.file_.clear();
  }
  ~Listener();
  // Waits for a connection; returns an invalid Socket when interrupted by a signal.
  Result<Socket> Accept();
  int port() const { return port_; }  // 0 for a unix socket
  // The address clients connect to: HOST:PORT with the port bound, or the unix address.
  const std::string& address() const { return address_; }
  int fd() const { return fd_; }

 private:
  Listener() = default;
  int fd_ = -1;
  int port_ = 0;
  std::string address_;
  std::string file_;  // the socket file to remove, if any
};

// Whether `address` names a unix socket ("unix:...").
bool IsUnixAddress(const std::string& address);

// Splits "host:port"; InvalidArgument when it is not one.
Status SplitAddress(const std::string& address, std::string* host, int* port);

}  // namespace genie::transport
