"""The frontend's side of the unix socket to the genie process."""
import socket
import struct

from . import codes

_FRAME_HEAD = struct.Struct("<IB")


class Channel:
    """Sends frames to the genie process. Sends block when the genie process
    is behind, which is the backpressure a recording program needs."""

    def __init__(self, path):
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(path)

    def send(self, frame_type, *parts):
        """Sends one frame whose body is the concatenation of `parts`
        (bytes-like objects), without joining them in memory."""
        size = sum(len(p) if not isinstance(p, memoryview) else p.nbytes for p in parts)
        if size > codes.MAX_FRAME_BODY:
            raise ValueError(f"genie: frame of {size} bytes exceeds the {codes.MAX_FRAME_BODY} byte limit")
        self._sock.sendall(_FRAME_HEAD.pack(size, frame_type))
        for p in parts:
            self._sock.sendall(p)

    def close(self):
        self._sock.close()


def pack_strings(strings):
    """`u32 count` then `u32 length | utf-8 bytes` for each string."""
    out = [struct.pack("<I", len(strings))]
    for s in strings:
        b = s.encode("utf-8")
        out.append(struct.pack("<I", len(b)))
        out.append(b)
    return b"".join(out)
