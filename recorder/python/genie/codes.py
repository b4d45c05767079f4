"""Numeric codes shared with the genie process (recorder/frontend_protocol.h).

Frames on the unix socket are `u32 body length | u8 frame type | body`; the
layout of each body is documented in frontend_protocol.h. Every code here has
the same value there. This module imports nothing, so an interpreter
without torch can still say hello.
"""
PROTOCOL_VERSION = 6
MAX_FRAME_BODY = 64 << 20  # larger payloads travel as several PAYLOAD frames
MAX_TEMPLATES = 1 << 16    # TEMPLATE frames per connection

# Frame types.
FRAME_HELLO = 1
FRAME_STRINGS = 2
FRAME_SEGMENT = 3
FRAME_PAYLOAD = 4
FRAME_END = 5
FRAME_REPLY = 6  # genie -> frontend, live mode only: the answer to a SEGMENT
FRAME_PART = 7   # live mode: a segment's ops sent ahead, executed without an answer
FRAME_TEMPLATE = 8  # a replayed module call's records, which RUN steps name
FRAME_WRITES = 9    # the arguments ops write in place (live mode's early answers)
FRAME_EARLY = 10    # genie -> frontend, live mode only: a value fetched early, before it is asked for
FRAME_ANSWERED = 11 # live mode: a SEGMENT whose one value the frontend took from an EARLY frame
FRAME_INPUT_PAYLOAD = 12  # a PAYLOAD that one INPUT record names: a batch, a drawn value (live mode need not hash it)
FRAME_RING = 13     # shared memory for large INPUT_PAYLOADs, its file descriptor passed with the frame
FRAME_RING_PAYLOAD = 14  # an INPUT_PAYLOAD whose bytes are in the ring
RING_HEADER_BYTES = 4096

# Step tags inside a SEGMENT frame's word stream.
TAG_INPUT = 1
TAG_OP = 2
TAG_MATERIALIZE = 3
TAG_RELEASE = 4  # live mode: values the program no longer holds
TAG_RUN = 5      # a TEMPLATE's records for one call

# TEMPLATE patch kinds: what a RUN puts at a patched word.
PATCH_ID = 0          # the run's first value id + a
PATCH_ARG_ID = 1      # the value id of argument a
PATCH_ARG_STORAGE = 2 # the storage value id of argument a
PATCH_AFFINE = 3      # a * T_1 + b
PATCH_FLOAT = 4       # a, an index into the template's floats
PATCH_TERM = 5        # the word so far + a * T_(b+1)

# Argument kinds (traces/graph.h Arg::Kind).
ARG_NONE = 0
ARG_BOOL = 1
ARG_INT = 2
ARG_FLOAT = 3
ARG_STRING = 4
ARG_TENSOR = 5
ARG_LIST = 6
ARG_DTYPE = 7
ARG_DEVICE = 8
ARG_LAYOUT = 9
ARG_MEMORY_FORMAT = 10

# Input kinds (traces/graph.h Input::Kind).
INPUT_PARAMETER = 0
INPUT_TENSOR = 1
INPUT_CONSTANT = 2

# Phases (traces/graph.h Phase).
PHASE_NONE = 0
PHASE_FORWARD = 1
PHASE_BACKWARD = 2
PHASE_OPTIMIZER = 3
PHASE_PREFILL = 4
PHASE_DECODE = 5

# Materialization kinds (traces/graph.h Materialization::How).
HOW_CPU = 0
HOW_ITEM = 1
HOW_TOLIST = 2
HOW_NUMPY = 3
HOW_PRINT = 4

# Op flags (traces/graph.h Op::Flags).
FLAG_RANDOM = 1

NO_PAYLOAD = -1

# dtype codes (traces/graph.h DType): the torch dtype names, in code order.
DTYPE_NAMES = [
    "bool", "uint8", "int8", "int16", "int32", "int64",
    "float16", "bfloat16", "float32", "float64", "complex64", "complex128",
]
