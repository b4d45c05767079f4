"""The frontend's side of the unix socket to the genie process."""
import collections
import ctypes
import fcntl
import mmap
import os
import socket
import struct
import time

from . import codes

_FRAME_HEAD = struct.Struct("<IB")
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
_EARLY_HEAD = struct.Struct("<QQ")  # an EARLY frame's value id and PART count
_EARLY_READ = 1 << 16  # bytes take_early reads at once


class RemoteError(RuntimeError):
    """The genie process or the runtime could not execute a segment."""


# Frames the genie process only stores until a segment names them: those up
# to _BATCH_BYTES in all wait in the channel and go out with the next frame it
# acts on, in one write (a decode step's token and its segment, a training
# step's dropout masks and its part: one wake-up of the genie process, not
# several). A larger payload (a parameter's upload) goes at once, uncopied.
_DEFERRED = frozenset((codes.FRAME_PAYLOAD, codes.FRAME_INPUT_PAYLOAD, codes.FRAME_STRINGS, codes.FRAME_TEMPLATE,
                       codes.FRAME_WRITES))
_BATCH_BYTES = 1 << 20

# Waiting for a reply, the program first polls the socket for up to this
# long (GENIE_SPIN_US microseconds; 0: never) when the previous reply came
# within it: a decode step's answer comes back in a few hundred
# microseconds, sooner than a sleeping process is woken and scheduled. A
# reply that takes longer (a training step's loss, while the runtime
# computes) is waited for asleep, and so is the next one, until one comes
# back within the time again.
_SPIN = int(os.environ.get("GENIE_SPIN_US", "400")) * 1e-6
_now = time.perf_counter

# Large single-use payloads (a batch of images moved to the device) go
# through a ring of shared memory rather than the socket (frontend_protocol.h,
# RING): one copy into memory the genie process maps too, which sends them on
# to the runtime from there, instead of a copy into the socket, one out of it
# and one more in the genie process; and the program goes on once its copy is
# made. From RING_MIN bytes up to half the ring (GENIE_RING_MB, 0: no ring);
# made at the first such payload. A payload that finds no room (the genie
# process has not caught up) goes through the socket, as does every payload
# of a process forked from the one that made the ring.
_RING_BYTES = int(os.environ.get("GENIE_RING_MB", "64")) << 20
RING_MIN = 64 << 10
_RING_PAYLOAD = struct.Struct("<qQQQ")
_U64 = struct.Struct("<Q")
_NOW_BYTES = 1 << 20  # a ring payload from this size is announced at once: genie run sends it on

# From _PIECES_FROM bytes, a ring payload is copied and announced in pieces
# of _PIECE_BYTES: genie run sends each to the runtime while the program
# copies the next (a 4.8 MB batch: one thread copies it in about 0.45 ms on
# an H200's host, and sending it takes about 0.85 ms).
_PIECE_BYTES = 1 << 20
_PIECES_FROM = 2 << 20


class Channel:
    """Sends frames to the genie process. Sends block when the genie process
    is behind, which is the backpressure a recording program needs."""

    def __init__(self, path):
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(path)
        self._pending = []
        self._pending_bytes = 0
        self._last_wait = 0.0  # seconds the previous reply took to arrive
        self.runs_ahead = False  # the last reply's (see recv_reply)
        self.answered_early = False  # the last reply's (see recv_reply)
        self._early = None  # (value id, parts, tensor) of the last EARLY frame (see take_early)
        self._ahead = bytearray()  # bytes take_early read past the EARLY frames
        self._ring = None  # (mmap, address of its first ring byte, pid that made it); False: none to be had
        self._ring_head = 0  # ring position after the last payload placed in it
        self._ring_placed = collections.deque()  # (position, end) of the payloads genie has not given back

    def send(self, frame_type, *parts):
        """Sends one frame whose body is the concatenation of `parts`
        (bytes-like objects); small deferred frames are copied and held back
        until the next frame that is not, large ones are not joined in memory."""
        size = sum(len(p) if not isinstance(p, memoryview) else p.nbytes for p in parts)
        if size > codes.MAX_FRAME_BODY:
            raise ValueError(f"genie: frame of {size} bytes exceeds the {codes.MAX_FRAME_BODY} byte limit")
        head = _FRAME_HEAD.pack(size, frame_type)
        if self._pending_bytes + size < _BATCH_BYTES:
            self._pending.append(head)
            self._pending.extend(bytes(p) for p in parts)  # the program may change its tensor before the write
            self._pending_bytes += len(head) + size
            if frame_type not in _DEFERRED:
                self._write_pending()
            return
        self._write_pending()
        self._sock.sendall(head)
        for p in parts:
            self._sock.sendall(p)

    def defer(self, frame_type, head, body):
        """send(frame_type, head, body) of a small deferred frame (a payload)
        whose parts are bytes already: held back without copies."""
        size = len(head) + len(body)
        pending = self._pending
        pending.append(_FRAME_HEAD.pack(size, frame_type))
        pending.append(head)
        pending.append(body)
        self._pending_bytes += _FRAME_HEAD.size + size
        if self._pending_bytes >= _BATCH_BYTES:
            self._write_pending()

    def send_ring_payload(self, pid, address, total):
        """Sends payload `pid`, `total` bytes at `address`, as a RING_PAYLOAD
        (see _RING_BYTES): copies them into the ring and announces them, in
        pieces from _PIECES_FROM, at once from _NOW_BYTES, else with the next
        frame that is not deferred. False, having sent nothing, when the ring
        cannot take them now."""
        ring = self._ring
        if ring is None:
            ring = self._make_ring()
        if not ring or total > _RING_BYTES // 2 or ring[2] != os.getpid():
            return False
        mm, base, _ = ring
        (released,) = _U64.unpack_from(mm, 0)
        placed = self._ring_placed
        while placed and placed[0][1] <= released:
            placed.popleft()
        head = self._ring_head
        if not placed or head % _RING_BYTES + total > _RING_BYTES:
            # Nothing in flight: back to the ring's start, whose pages are warm; or it would wrap.
            head = -(-head // _RING_BYTES) * _RING_BYTES
        if head + total - (placed[0][0] if placed else head) > _RING_BYTES:
            return False  # the genie process has not caught up
        dst = base + head % _RING_BYTES
        self._ring_head = head + total
        placed.append((head, head + total))
        frame_head = _FRAME_HEAD.pack(_RING_PAYLOAD.size, codes.FRAME_RING_PAYLOAD)
        if total >= _PIECES_FROM:
            self._write_pending()
            for at in range(0, total, _PIECE_BYTES):
                n = min(_PIECE_BYTES, total - at)
                ctypes.memmove(dst + at, address + at, n)
                self._sock.sendall(frame_head + _RING_PAYLOAD.pack(pid, total, head, at + n))
            return True
        ctypes.memmove(dst, address, total)
        self._pending.extend((frame_head, _RING_PAYLOAD.pack(pid, total, head, total)))
        self._pending_bytes += _FRAME_HEAD.size + _RING_PAYLOAD.size
        if total >= _NOW_BYTES or self._pending_bytes >= _BATCH_BYTES:
            self._write_pending()
        return True

    def _make_ring(self):
        """Makes the ring and sends the RING frame with its file descriptor:
        the ring, or False where there is none to be had."""
        self._ring = False
        if _RING_BYTES <= 0 or not hasattr(os, "memfd_create") or not hasattr(socket, "send_fds"):
            return False
        size = codes.RING_HEADER_BYTES + _RING_BYTES
        try:
            fd = os.memfd_create("genie-ring", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        except OSError:
            return False
        try:
            os.ftruncate(fd, size)
            # The genie process maps it: it must not shrink under that mapping.
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
            mm = mmap.mmap(fd, size)
            self._write_pending()
            socket.send_fds(self._sock, [_FRAME_HEAD.pack(8, codes.FRAME_RING) + _U64.pack(_RING_BYTES)], [fd])
        except OSError:
            return False
        finally:
            os.close(fd)
        base = ctypes.addressof(ctypes.c_char.from_buffer(mm)) + codes.RING_HEADER_BYTES
        self._ring = (mm, base, os.getpid())
        return self._ring

    def _write_pending(self):
        if self._pending:
            pending, self._pending, self._pending_bytes = self._pending, [], 0
            self._sock.sendall(b"".join(pending))

    def _recv_exact(self, n, spin=0.0):
        if self._ahead:  # read by take_early
            buf = self._ahead[:n]
            del self._ahead[:n]
            if len(buf) == n:
                return buf
            got = len(buf)
            buf.extend(bytes(n - got))
            spin = 0.0
        else:
            buf = bytearray(n)
            got = 0
        view = memoryview(buf)
        if spin:
            until = _now() + spin
            while _now() < until:
                try:
                    k = self._sock.recv_into(view, n, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    continue
                if k == 0:
                    raise RemoteError("genie: the genie process closed the connection (it exited or was killed)")
                got = k
                break
        while got < n:
            k = self._sock.recv_into(view[got:], n - got)
            if k == 0:
                raise RemoteError("genie: the genie process closed the connection (it exited or was killed)")
            got += k
        return buf

    def recv_reply(self):
        """Reads one REPLY frame: returns (tensors, scalars), where tensors are
        (dtype code, sizes, bytearray) and scalars are Python values. A failed
        segment raises RemoteError with the genie process's message. Sets
        `runs_ahead` (see frontend_protocol.h, REPLY). An EARLY frame before
        it is dropped: the segment asked for its value already."""
        self._early = None
        start = _now()
        spin = _SPIN if self._last_wait <= _SPIN else 0.0
        while True:
            size, frame_type = _FRAME_HEAD.unpack(self._recv_exact(_FRAME_HEAD.size, spin))
            if frame_type != codes.FRAME_EARLY:
                break
            self._recv_exact(size)
        self._last_wait = _now() - start
        if frame_type != codes.FRAME_REPLY:
            raise RemoteError(f"genie: expected a reply frame, got frame type {frame_type}")
        body = self._recv_exact(size)
        if body[0] == 1:
            raise RemoteError(bytes(memoryview(body)[1:]).decode("utf-8", "replace"))
        self.runs_ahead = body[0] == 2  # the runtime runs the program's next step ahead
        self.answered_early = body[0] == 3  # answered from a value its step's first part fetched
        return _reply_values(body, 1)

    def take_early(self, vid):
        """The value `vid` from an EARLY frame the genie process pushed (see
        frontend_protocol.h), as (parts, tensor): `parts` the PART frames it
        had read then, `tensor` as recv_reply's; None when none came for it.
        Reads only frames there already, without waiting."""
        try:
            data = self._sock.recv(_EARLY_READ, socket.MSG_DONTWAIT)
        except BlockingIOError:
            data = None
        else:
            if not data:
                raise RemoteError("genie: the genie process closed the connection (it exited or was killed)")
            self._ahead += data
        ahead = self._ahead
        # Whole EARLY frames only (nothing else comes unasked); the rest waits for recv_reply.
        while len(ahead) >= _FRAME_HEAD.size:
            size, frame_type = _FRAME_HEAD.unpack_from(ahead, 0)
            end = _FRAME_HEAD.size + size
            if frame_type != codes.FRAME_EARLY or len(ahead) < end:
                break
            early_id, parts = _EARLY_HEAD.unpack_from(ahead, _FRAME_HEAD.size)
            tensors, _ = _reply_values(ahead[:end], _FRAME_HEAD.size + _EARLY_HEAD.size + 1)
            self._early = (early_id, parts, tensors[0])
            del ahead[:end]
        early, self._early = self._early, None
        if early is None or early[0] != vid:
            return None
        return early[1], early[2]

    def close(self):
        try:
            self._write_pending()
        finally:
            self._sock.close()


def _reply_values(body, pos):
    """The tensors and scalars of a REPLY body from `pos`, past its status byte."""
    (count,) = _U32.unpack_from(body, pos)
    pos += 4
    tensors = []
    for _ in range(count):
        dtype, rank = body[pos], body[pos + 1]
        pos += 2
        sizes = [_I64.unpack_from(body, pos + 8 * i)[0] for i in range(rank)]
        pos += 8 * rank
        (nbytes,) = _I64.unpack_from(body, pos)
        pos += 8
        tensors.append((dtype, sizes, body[pos:pos + nbytes]))
        pos += nbytes
    (count,) = _U32.unpack_from(body, pos)
    pos += 4
    scalars = []
    for _ in range(count):
        kind = body[pos]
        pos += 1
        if kind == 0:
            scalars.append(None)
        elif kind == 3:
            scalars.append(_F64.unpack_from(body, pos)[0])
        else:
            v = _I64.unpack_from(body, pos)[0]
            scalars.append(bool(v) if kind == 1 else v)
        pos += 8
    return tensors, scalars


def pack_strings(strings):
    """`u32 count` then `u32 length | utf-8 bytes` for each string."""
    out = [struct.pack("<I", len(strings))]
    for s in strings:
        b = s.encode("utf-8")
        out.append(struct.pack("<I", len(b)))
        out.append(b)
    return b"".join(out)
