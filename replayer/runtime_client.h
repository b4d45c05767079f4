// A connection to one runtime: the client side of the wire protocol, with
// byte and round-trip counters.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/content_hash.h"
#include "common/status.h"
#include "runtime/protocol/genie.pb.h"
#include "runtime/transport/socket.h"
#include "traces/graph.h"

namespace genie::replayer {

struct ClientCounters {
  uint64_t round_trips = 0;
  uint64_t bytes_up = 0;    // frames sent, payloads included
  uint64_t bytes_down = 0;  // frames received, payloads included
};

struct FetchedTensor {
  std::string dtype;
  std::vector<int64_t> sizes;
  std::string bytes;
};

struct ExecuteReply {
  std::vector<FetchedTensor> tensors;
  wire::ExecuteReply message;
  double download_ms = 0;  // reading the fetched bytes
};

class RuntimeClient {
 public:
  // Connects and says hello. Unreachable: IOError naming the address;
  // a refused token or protocol: PermissionDenied-like InvalidArgument with
  // the runtime's reason.
  static Result<RuntimeClient> Connect(const std::string& address, const std::string& token);
  RuntimeClient(RuntimeClient&&) = default;
  RuntimeClient& operator=(RuntimeClient&&) = default;
  // With a pushed answer still due, ends the connection in order: stops
  // sending and reads what is left (at most 500 ms), so that the unread push
  // does not make the close a reset, which the runtime would log as a drop.
  ~RuntimeClient();

  const wire::HelloReply& hello() const { return hello_; }
  const std::string& address() const { return address_; }
  const ClientCounters& counters() const { return counters_; }

  // Which of `hashes` the runtime holds (one round trip).
  Result<std::vector<bool>> QueryBlobs(const std::vector<ContentHash>& hashes);
  // Sends every blob, then reads every reply (one round trip in all).
  // `progress`, when set, is called with the payload bytes sent so far.
  Status PutBlobs(const std::vector<std::pair<ContentHash, std::string_view>>& blobs,
                  const std::function<void(uint64_t)>& progress = nullptr);
  // One heartbeat round trip; IOError when no answer comes within `timeout_ms`.
  Status Heartbeat(uint64_t nonce, int timeout_ms);
  // The connection's socket (to shut it down from another thread).
  int fd() const { return sock_.fd(); }
  // Whether bytes of the runtime's next messages were read ahead already (see Socket::buffered).
  bool buffered() const { return sock_.buffered() > 0; }

  // Runs one segment record (one round trip). `blobs` go up first, pipelined
  // with the segment; `release` names values the runtime frees after it.
  // When an upload or the segment fails, every reply is still read, so the
  // connection stays usable; the first error is returned.
  Result<ExecuteReply> Execute(const std::vector<std::string>& new_strings, const std::string& segment,
                               const std::vector<uint64_t>& fetch, const std::vector<uint64_t>& release = {},
                               const std::vector<std::pair<ContentHash, std::string_view>>& blobs = {});
  // The same for a request the caller filled in (a template run, genie.proto
  // Execute). `recorded` gives the metas of the values the segment fetches,
  // in fetch order, for a reply that leaves them out (as_recorded); such a
  // reply without them is Corruption.
  Result<ExecuteReply> Execute(wire::Envelope& request,
                               const std::vector<std::pair<ContentHash, std::string_view>>& blobs,
                               const std::vector<const traces::TensorMeta*>& recorded = {});
  // Execute in two halves, so that requests can go ahead of their replies:
  // SendExecute writes the blobs (a transient name's as a transient blob,
  // genie.proto PutBlob) and the request; ReadExecute reads the
  // replies of the oldest request sent and not yet read (`blobs` uploads,
  // then the ExecuteReply), counting a round trip when `waited`. `cycle`:
  // the request was a RunCycle, whose reply implies as_recorded.
  Status SendExecute(wire::Envelope& request, const std::vector<std::pair<ContentHash, std::string_view>>& blobs);
  Result<ExecuteReply> ReadExecute(size_t blobs, bool from_template, const std::vector<const traces::TensorMeta*>& recorded,
                                   bool waited, bool cycle = false);
  // One upload alone, its reply left to read: with the next request's
  // (ReadExecute counting it among `blobs`), or by ReadUploads.
  Status SendBlob(const ContentHash& h, std::string_view bytes);
  // SendBlob in pieces, as the bytes become available: BeginBlob sends the
  // PutBlob of `n` bytes, then SendBytes must bring exactly `n` bytes in all
  // before any other message (the connection is inside the blob till then).
  Status BeginBlob(const ContentHash& h, uint64_t n);
  Status SendBytes(std::string_view bytes);
  // Reads the replies of `n` uploads sent last; the first refusal among
  // them once all are read.
  Status ReadUploads(size_t n);

  // Cycles answered ahead (genie.proto CyclePush). After a reply that
  // offers a cycle the runtime pushes a message; the client reads it
  // before any later reply (and drops it there). TakePush reads it now:
  // the answer the next RunCycle gets, or nothing when the runtime pushed
  // none (the caller sends the RunCycle and reads its reply then). A
  // taken answer is the RunCycle's only reply: the client sends the
  // RunCycle itself, at SendCycle or before its next message.
  Result<std::optional<ExecuteReply>> TakePush(const std::vector<const traces::TensorMeta*>& recorded);
  Status SendCycle();

 private:
  RuntimeClient() = default;  // see Connect
  Status Send(wire::Envelope& env, const void* payload = nullptr, uint64_t n = 0);
  // Reads the next message; a push still due is read (and dropped) first.
  Status Receive(wire::Envelope* env);
  Status ReceiveOne(wire::Envelope* env);
  // Reads the CyclePush due (push_due_).
  Status ReceivePush(wire::Envelope* push);
  // The fetched tensors `reply` announces (or `recorded` gives), sized, then their bytes from the socket.
  Status ReadFetched(const wire::ExecuteReply& reply, uint64_t payload_bytes, bool from_template,
                     const std::vector<const traces::TensorMeta*>& recorded, bool cycle, ExecuteReply* out);

  transport::Socket sock_;
  std::string address_;
  wire::HelloReply hello_;
  ClientCounters counters_;
  bool push_due_ = false;    // a CyclePush comes before the next reply
  bool cycle_due_ = false;   // a pushed answer was taken: its RunCycle goes before the next message
};

}  // namespace genie::replayer
