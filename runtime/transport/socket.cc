#include "runtime/transport/socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <memory>

namespace genie::transport {
namespace {

constexpr int kBufferBytes = 4 << 20;

void Tune(int fd, bool tcp) {
  int one = 1;
  if (tcp) ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  int buf = kBufferBytes;
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
}

// The addresses of "host:port" (`passive`: for listening), freed with the result.
using AddrList = std::unique_ptr<addrinfo, void (*)(addrinfo*)>;

Result<AddrList> Resolve(const std::string& address, bool passive) {
  std::string host;
  int port;
  GENIE_RETURN_IF_ERROR(SplitAddress(address, &host, &port));
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (passive) hints.ai_flags = AI_PASSIVE;
  int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (rc != 0) return Status::IOError("cannot resolve " + address + ": " + gai_strerror(rc));
  return AddrList(res, ::freeaddrinfo);
}

constexpr char kUnixPrefix[] = "unix:";

// The sockaddr of "unix:PATH" or "unix:@NAME" and its length.
Status UnixAddress(const std::string& address, sockaddr_un* out, socklen_t* len) {
  std::string name = address.substr(sizeof(kUnixPrefix) - 1);
  *out = sockaddr_un{};
  out->sun_family = AF_UNIX;
  if (name.empty() || name == "@" || name.size() >= sizeof(out->sun_path))
    return Status::InvalidArgument("'" + address + "' is not unix:PATH or unix:@NAME of at most " +
                                   std::to_string(sizeof(out->sun_path) - 1) + " bytes");
  std::memcpy(out->sun_path, name.data(), name.size());
  if (name[0] == '@') {
    out->sun_path[0] = '\0';  // the abstract namespace: the name is the bytes that follow, unterminated
    *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
  } else {
    *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() + 1);
  }
  return Status::OK();
}

// Connects `fd` (non-blocking) to `addr`, waiting up to `timeout_ms`; 0 or -1 with errno set.
int ConnectWithin(int fd, const sockaddr* addr, socklen_t len, int timeout_ms) {
  int rc = ::connect(fd, addr, len);
  if (rc != 0 && (errno == EINPROGRESS || errno == EAGAIN)) {
    pollfd p{fd, POLLOUT, 0};
    rc = ::poll(&p, 1, timeout_ms);
    if (rc == 1) {
      int err = 0;
      socklen_t n = sizeof(err);
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &n);
      rc = err == 0 ? 0 : -1;
      errno = err;
    } else {
      int saved = rc == 0 ? ETIMEDOUT : errno;
      rc = -1;
      errno = saved;
    }
  }
  return rc;
}

Socket Connected(int fd, const std::string& address, bool tcp) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  Tune(fd, tcp);
  Socket s(fd);
  s.set_peer(address);
  return s;
}

}  // namespace

bool IsUnixAddress(const std::string& address) { return address.rfind(kUnixPrefix, 0) == 0; }

Status SplitAddress(const std::string& address, std::string* host, int* port) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size())
    return Status::InvalidArgument("'" + address + "' is not HOST:PORT");
  *host = address.substr(0, colon);
  char* end = nullptr;
  long p = std::strtol(address.c_str() + colon + 1, &end, 10);
  if (*end != '\0' || p < 0 || p > 65535) return Status::InvalidArgument("'" + address + "' has a bad port");
  *port = static_cast<int>(p);
  return Status::OK();
}

Socket& Socket::operator=(Socket&& o) noexcept {
  if (this != &o) {
    Close();
    fd_ = o.fd_;
    peer_ = std::move(o.peer_);
    rbuf_ = std::move(o.rbuf_);
    rpos_ = o.rpos_;
    rend_ = o.rend_;
    spin_us_ = o.spin_us_;
    last_wait_us_ = o.last_wait_us_;
    o.fd_ = -1;
    o.rpos_ = o.rend_ = 0;
  }
  return *this;
}

void Socket::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Result<Socket> Socket::Connect(const std::string& address, int timeout_ms) {
  if (IsUnixAddress(address)) {
    sockaddr_un addr;
    socklen_t len;
    GENIE_RETURN_IF_ERROR(UnixAddress(address, &addr, &len));
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return Status::IOError(std::string("socket: ") + std::strerror(errno));
    if (ConnectWithin(fd, reinterpret_cast<sockaddr*>(&addr), len, timeout_ms) == 0)
      return Connected(fd, address, false);
    std::string why = std::strerror(errno);
    ::close(fd);
    return Status::IOError("cannot reach runtime " + address + ": " + why);
  }
  GENIE_ASSIGN_OR_RETURN(AddrList res, Resolve(address, false));
  std::string last = "no address";
  for (addrinfo* ai = res.get(); ai; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) continue;
    if (ConnectWithin(fd, ai->ai_addr, ai->ai_addrlen, timeout_ms) == 0) return Connected(fd, address, true);
    last = std::strerror(errno);
    ::close(fd);
  }
  return Status::IOError("cannot reach runtime " + address + ": " + last);
}

Status Socket::SendAll(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t k = ::send(fd_, p, n, MSG_NOSIGNAL);
    if (k < 0) {
      if (errno == EINTR) continue;
      return Status::IOError("connection to " + peer_ + " lost: " + std::strerror(errno));
    }
    p += k;
    n -= static_cast<size_t>(k);
  }
  return Status::OK();
}

Status Socket::RecvAll(void* data, size_t n) {
  char* p = static_cast<char*>(data);
  size_t buffered = std::min(n, rend_ - rpos_);
  if (buffered > 0) {
    std::memcpy(p, rbuf_.get() + rpos_, buffered);
    rpos_ += buffered;
    p += buffered;
    n -= buffered;
  }
  while (n > 0) {
    // A large rest goes straight into `data`; a small one reads ahead.
    bool direct = n >= kReadAhead;
    if (!direct && !rbuf_) rbuf_ = std::make_unique<char[]>(kReadAhead);
    ssize_t k = direct ? Recv(p, n) : Recv(rbuf_.get(), kReadAhead);
    if (k == 0) return Status::IOError("connection to " + peer_ + " closed");
    if (k < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Status::IOError(peer_ + " did not answer in time");
      return Status::IOError("connection to " + peer_ + " lost: " + std::strerror(errno));
    }
    size_t got = static_cast<size_t>(k);
    if (!direct) {
      size_t take = std::min(n, got);
      std::memcpy(p, rbuf_.get(), take);
      rpos_ = take;
      rend_ = got;
      got = take;
    }
    p += got;
    n -= got;
  }
  return Status::OK();
}

ssize_t Socket::Recv(char* into, size_t want) {
  if (spin_us_ <= 0) return ::recv(fd_, into, want, 0);
  ssize_t k = ::recv(fd_, into, want, MSG_DONTWAIT);
  if (k >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
    last_wait_us_ = 0;
    return k;
  }
  auto start = std::chrono::steady_clock::now();
  if (last_wait_us_ <= spin_us_) {
    auto until = start + std::chrono::microseconds(spin_us_);
    do {
      k = ::recv(fd_, into, want, MSG_DONTWAIT);
    } while (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && std::chrono::steady_clock::now() < until);
  }
  if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) k = ::recv(fd_, into, want, 0);
  last_wait_us_ =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count();
  return k;
}

void Socket::SetRecvTimeout(int ms) {
  timeval tv{ms / 1000, (ms % 1000) * 1000};
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

Result<Listener> Listener::Listen(const std::string& address) {
  if (IsUnixAddress(address)) {
    sockaddr_un addr;
    socklen_t len;
    GENIE_RETURN_IF_ERROR(UnixAddress(address, &addr, &len));
    Listener l;
    l.address_ = address;
    l.fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l.fd_ < 0) return Status::IOError("cannot listen on " + address + ": " + std::strerror(errno));
    bool file = addr.sun_path[0] != '\0';
    int rc = ::bind(l.fd_, reinterpret_cast<sockaddr*>(&addr), len);
    if (rc != 0 && errno == EADDRINUSE && file) {
      // A socket file a listener left behind when it died: replaced, unless something still accepts on it.
      struct stat st;
      bool stale = ::stat(addr.sun_path, &st) == 0 && S_ISSOCK(st.st_mode) && !Socket::Connect(address, 1000).ok();
      errno = EADDRINUSE;
      if (stale && ::unlink(addr.sun_path) == 0) rc = ::bind(l.fd_, reinterpret_cast<sockaddr*>(&addr), len);
    }
    if (rc != 0 || ::listen(l.fd_, 64) != 0)
      return Status::IOError("cannot listen on " + address + ": " + std::strerror(errno));
    if (file) l.file_ = addr.sun_path;
    return l;
  }
  GENIE_ASSIGN_OR_RETURN(AddrList res, Resolve(address, true));
  Listener l;
  l.fd_ = ::socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
  int one = 1;
  ::setsockopt(l.fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (l.fd_ < 0 || ::bind(l.fd_, res->ai_addr, res->ai_addrlen) != 0 || ::listen(l.fd_, 64) != 0)
    return Status::IOError("cannot listen on " + address + ": " + std::strerror(errno));
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  ::getsockname(l.fd_, reinterpret_cast<sockaddr*>(&ss), &len);
  l.port_ = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                           : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  l.address_ = address.substr(0, address.rfind(':')) + ":" + std::to_string(l.port_);
  return l;
}

Listener::~Listener() {
  if (fd_ >= 0) ::close(fd_);
  if (!file_.empty()) ::unlink(file_.c_str());
}

Result<Socket> Listener::Accept() {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  int fd = ::accept4(fd_, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC);
  if (fd < 0) {
    if (errno == EINTR) return Socket();
    return Status::IOError(std::string("accept: ") + std::strerror(errno));
  }
  Tune(fd, ss.ss_family != AF_UNIX);
  if (ss.ss_family == AF_UNIX) {
    Socket s(fd);
    s.set_peer(address_);
    return s;
  }
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
    port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
    port = ntohs(a->sin6_port);
  }
  Socket s(fd);
  s.set_peer(std::string(host) + ":" + std::to_string(port));
  return s;
}

}  // namespace genie::transport
