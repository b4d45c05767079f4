"""The capture session: turns dispatched ATen ops into segments and sends
them to the genie process (see codes.py and recorder/frontend_protocol.h).

A segment is every step (input, op) since the previous materialization point.
Ops run at once on the CPU values the LazyTensors hold, so outputs have real
shapes and the program sees eager results.
"""
import contextlib
import ctypes
import os
import struct
import time
from array import array

import torch

from . import DEVICE, codes, lazy
from .channel import RING_MIN, pack_strings
from .lazy import LazyTensor, meta_value

_META = torch.device("meta")
_TAG_OP = codes.TAG_OP
_NO_PAYLOAD = codes.NO_PAYLOAD
_RANDOM = codes.FLAG_RANDOM
_ARG_TENSOR = codes.ARG_TENSOR
_ARG_INT = codes.ARG_INT
_ARG_FLOAT = codes.ARG_FLOAT
_CPU = torch.device("cpu")
_make_wrapper = torch.Tensor._make_wrapper_subclass
_SEGMENT_HEAD = struct.Struct("<QII")  # duration_ns, word count, float count
_I64 = struct.Struct("<q")
_PAYLOAD_HEAD = struct.Struct("<qQQ")  # payload id, total bytes, offset of this piece
_QUIET_REPLIES = 3  # see RemoteSession.flush
_KEPT_PART_BYTES = 4 << 20  # see RemoteSession._sent_part
_TEMPLATE_HEAD = struct.Struct("<IIII")  # template id, word count, float count, patch count
_PIECE = 32 << 20
_SMALL_UPLOAD = 64 << 10  # bytes of a tensor RemoteSession.upload takes
# Lifted constants up to this size go up once per content (see add_input_words); at most this many are kept.
_CONSTANT_BYTES = 4096
_CONSTANT_LIMIT = 4096
_WHOLE = object()  # a foreach op recorded as itself

DTYPE_CODE = {getattr(torch, name): code for code, name in enumerate(codes.DTYPE_NAMES)}

_RANDOM_OPS = frozenset([
    "aten::rand", "aten::randn", "aten::randint", "aten::randperm", "aten::rand_like", "aten::randn_like",
    "aten::randint_like", "aten::normal", "aten::normal_", "aten::uniform_", "aten::bernoulli",
    "aten::bernoulli_", "aten::dropout", "aten::native_dropout", "aten::multinomial", "aten::exponential_",
    "aten::random_", "aten::geometric_", "aten::cauchy_", "aten::log_normal_", "aten::rrelu_with_noise",
    "aten::poisson", "aten::binomial", "aten::_standard_gamma", "aten::_sample_dirichlet", "aten::uniform",
    "aten::_fused_dropout",
])


class CaptureError(RuntimeError):
    """An op or argument that cannot be captured faithfully."""


def is_remote_device(dev):
    """True for "remote_accelerator[:N]", and for the meta device, which is
    what a LazyTensor's `.device` reports (so `torch.zeros(n, device=x.device)`
    lands next to x)."""
    if isinstance(dev, str):
        return dev.startswith(DEVICE) or dev == "meta"
    return isinstance(dev, torch.device) and dev.type == "meta"


_ONE_TENSOR = frozenset(["Tensor", "Optional[Tensor]"])  # schema argument types of one tensor


class _OpInfo:
    """What the session needs to know about an OpOverload, computed once."""
    __slots__ = ("func", "call", "name", "sid", "flags", "returns", "special", "single", "fresh", "written", "each",
                 "silent_writes", "writes")

    def __init__(self, func, session):
        schema = func._schema
        self.func = func
        self.call = getattr(func, "_op", func)  # the C++ operator, without OpOverload.__call__'s Python frame
        self.name = schema.name if not schema.overload_name else f"{schema.name}.{schema.overload_name}"
        self.sid = session.intern(self.name)
        session.note_writes(self.sid, schema)
        self.flags = codes.FLAG_RANDOM if schema.name in _RANDOM_OPS else 0
        # For each return: None, or (argument position, argument name, is_write)
        # of the argument it aliases.
        alias_of = {}
        for i, a in enumerate(schema.arguments):
            if a.alias_info is not None:
                for s in a.alias_info.before_set:
                    alias_of[s] = (i, a.name)
        self.returns = []
        for r in schema.returns:
            info = r.alias_info
            target = None
            if info is not None:
                for s in info.before_set:
                    if s in alias_of:
                        target = alias_of[s] + (bool(info.is_write),)
            self.returns.append(target)
        # One tensor return: handled inline by dispatch unless it is written in place.
        self.single = len(self.returns) == 1
        # Its one result is never an argument written in place: the shape
        # cache may answer with a _Fresh (live mode).
        self.fresh = self.single and (self.returns[0] is None or not self.returns[0][2])
        # Its one result is the argument at this position, written in place
        # (add_): what the shape cache's recipe says when that holds.
        self.written = [self.returns[0][0]] if self.single and not self.fresh else None
        # It returns nothing and writes these arguments in place (an
        # in-place foreach op recorded as itself: `_foreach_maximum_`).
        self.silent_writes = () if schema.returns else \
            tuple((i, a.name) for i, a in enumerate(schema.arguments) if a.alias_info is not None and a.alias_info.is_write)
        # The tensor arguments (not lists) it writes in place or as `out=`.
        self.writes = tuple((i, a.name) for i, a in enumerate(schema.arguments)
                            if a.alias_info is not None and a.alias_info.is_write and str(a.type) in _ONE_TENSOR)
        self.special = None
        self.each = _foreach_plan(func, session) if schema.name.startswith("aten::_foreach_") else None
        if self.each is not None:
            self.special = "foreach"
        elif schema.name == "aten::is_same_size":
            self.special = "same_size"
        elif schema.name == "aten::_local_scalar_dense":
            self.special = "item"
        elif schema.name == "aten::_to_copy":
            self.special = "to_copy"
        elif session.remote and _draws_without_reading(schema):
            self.special = "random"
        elif schema.name in _HOST_OPS:
            self.special = "host"
        elif "sparse" in schema.name:
            self.special = "sparse"

# Foreach ops (`torch._foreach_mul_(tensors, 0.9)`: what optimizers use with
# foreach=True) are recorded as the per-tensor op they apply to each element
# (`aten::mul_.Scalar` per tensor), so a trace holds the ops a runtime and
# the analyses know, each with its own result and version, while the
# program's process runs the foreach kernel once. Only these elementwise
# bases; others (norms) go through as the foreach op.
_FOREACH_BASES = frozenset([
    "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "addcmul", "addcmul_", "addcdiv", "addcdiv_",
    "sqrt", "sqrt_", "neg", "neg_", "zero_", "reciprocal", "reciprocal_", "exp", "exp_", "abs", "abs_",
    "sign", "sign_", "lerp", "lerp_", "maximum", "minimum", "clamp_min", "clamp_min_", "clamp_max",
    "clamp_max_", "pow", "pow_", "sigmoid", "sigmoid_", "log", "log_", "copy_",
])
_ELEMENT_TYPE = {"List[Tensor]": "Tensor", "List[number]": "number", "Tensor": "Tensor", "number": "number"}


def _foreach_plan(func, session):
    """(per-tensor _OpInfo, [(foreach argument name, "tensors" | "numbers" |
    "one" (the same for every element), per-tensor argument name, keyword
    only)]) or None."""
    schema = func._schema
    if schema.overload_name.endswith("out"):
        return None
    base = schema.name[len("aten::_foreach_"):]
    if base not in _FOREACH_BASES or not hasattr(torch.ops.aten, base):
        return None
    fargs = schema.arguments
    if not fargs or str(fargs[0].type) != "List[Tensor]":
        return None
    packet = getattr(torch.ops.aten, base)
    for name in packet.overloads():
        op = getattr(packet, name)
        pargs = op._schema.arguments
        if name.endswith("out") or len(pargs) < len(fargs) or len(op._schema.returns) != 1 or \
                any(not a.has_default_value() for a in pargs[len(fargs):]):
            continue
        plan = []
        for f, p in zip(fargs, pargs):
            element = _ELEMENT_TYPE.get(str(f.type))
            if element is None or element != str(p.type) or (f.has_default_value() and not p.kwarg_only):
                break
            kind = "tensors" if str(f.type) == "List[Tensor]" else "numbers" if str(f.type) == "List[number]" else "one"
            plan.append((f.name, kind, p.name, p.kwarg_only))
        else:
            return session._info(op), plan
    return None


# Ops that write arguments their schemas do not mark written (torch 1.13:
# native_batch_norm updates its running statistics in place).
_UNMARKED_WRITES = {"aten::native_batch_norm": ("running_mean", "running_var")}


_FOREACH_BUMPS = []  # [whether torch bumps a LazyTensor's version at an in-place foreach op], once asked
_foreach_zero = torch._foreach_zero_  # torch's own, before genie.steps wraps it


class _Ignoring:
    """A session that records nothing (see ignoring_ops)."""

    @staticmethod
    def dispatch(func, args, kwargs):
        return None


@contextlib.contextmanager
def ignoring_ops():
    """Ops on LazyTensors reach no session while active: for a call made only
    for what torch's dispatcher does on the way (bumping version counters)."""
    saved = lazy._session
    lazy.set_session(_Ignoring())
    try:
        yield
    finally:
        lazy.set_session(saved)


def _probe_foreach_bumps():
    """Whether torch bumps a LazyTensor's version counter at an in-place
    foreach op, as at any other in-place op. torch 2.x does. torch 1.13 has
    no ADInplaceOrView kernel for foreach ops, so it leaves the counter of a
    tensor subclass alone, where eager CPU's foreach loop bumps the counters
    through its per-tensor ops. Asked of a probe, by one call through the
    dispatcher that no session records; outside any dispatch (inside
    one, torch skips the key that bumps counters), when a session starts."""
    meta = torch.empty(1, device="meta")
    probe = LazyTensor._wrap(meta, meta.shape, meta.stride(), 0, -1, -1)
    probe._genie_alias = True  # no value of its own to release
    with ignoring_ops(), torch.no_grad():
        _foreach_zero([probe])
    return probe._version != 0


@contextlib.contextmanager
def _dispatch_off():
    """Python dispatch off: an op on a LazyTensor reaches only the wrapper's
    meta kernel, which records nothing and writes no data."""
    guard = torch._C._DisableTorchDispatch()  # torch 1.13: on while alive; 2.x: a context manager
    context = hasattr(guard, "__enter__")
    if context:
        guard.__enter__()
    try:
        yield
    finally:
        if context:
            guard.__exit__(None, None, None)
        del guard


def bump_versions(tensors):
    """Bumps each LazyTensor's autograd version counter, as an in-place op
    through torch's dispatcher does, recording nothing (zero_ with Python
    dispatch off)."""
    with _dispatch_off(), torch.no_grad():
        for t in tensors:
            t.zero_()


def restride(lazy, value):
    """Gives a LazyTensor the shape, strides and offset of `value`, which an
    op changed in place (squeeze_, t_, transpose_; a vector times a matrix
    ends in squeeze_ inside matmul; resize_). The runtime runs the op itself.
    A wrapper's meta storage spans only its own elements: one that now
    reaches past them (resize_ to more, as_strided_ to further along) gets
    a meta storage that spans them."""
    shape, stride, offset = value.shape, value.stride(), value.storage_offset()
    with _dispatch_off():
        try:
            torch.ops.aten.as_strided_.default(lazy, shape, stride, offset)
            return
        except RuntimeError:
            pass
        extent = 1 + sum((n - 1) * s for n, s in zip(shape, stride)) if all(n > 0 for n in shape) else 0
        meta = _empty((offset + extent,), dtype=value.dtype, device=_META)
        storage = meta.untyped_storage() if hasattr(meta, "untyped_storage") else meta.storage()
        torch.ops.aten.set_.source_Storage_storage_offset(lazy, storage, offset, shape, stride)


class Session:
    remote = False  # live mode (RemoteSession): values live on a runtime
    templates = None  # templates.Templates: module calls replayed without per-op capture
    drawn = None  # live mode: see RemoteSession
    lifted = None  # while templates prove a call: input id -> the CPU value of a constant lifted in it

    def __init__(self, channel, payload_mode):
        self.channel = channel
        self.payload_mode = payload_mode  # "full", "inputs" or "none"
        self.record_random = payload_mode != "none"  # random results travel with the trace
        self.exec_device = _CPU  # where ops run in the program's process
        self._strings = {}
        self._new_strings = []
        self._new_writes = []  # (op sid, argument position, name sid) for the next WRITES frame
        self._infos = {}
        self._layouts = {}  # a foreach call's form -> the records it makes (see _Layout)
        self._next_id = 0
        self._next_payload = 0
        self._constants = {}  # (dtype, shape, bytes) of a small lifted constant -> its payload id
        self.words = []
        self.floats = array("d")
        self.weight = 0  # the record words that RUN steps among `words` stand for, beyond their own
        self.templates_sent = 0
        self.made_on = []  # per template sent: the arguments its records make values on the storage of
        self.run_made = set()  # the storages the open segment's RUN steps make values on, or ops write silently (_finish)
        self.template_runs = 0  # RUN steps sent (see run_template)
        self._segment_start = time.perf_counter_ns()
        self.empty_sid = self.intern("")
        self.module_sid = self.empty_sid
        self.phase = codes.PHASE_NONE
        self.observed = False
        self.closed = False
        self.in_kernel = False  # live mode: inside a meta kernel, whose own factory calls are not the program's
        # The (foreach _OpInfo, _Layout, arguments) of the last foreach call recorded
        # from a _Layout, or that kept one (see steps.py); whoever reads it resets it.
        self.foreach_layout = None
        # Tensors requiring grad that in-place foreach ops wrote and whose
        # version counters torch left alone (see foreach_bumps), by id;
        # bumped by bump_written, outside any dispatch.
        self.unbumped = {}
        if not _FOREACH_BUMPS:
            _FOREACH_BUMPS.append(_probe_foreach_bumps())

    # ---- autograd version counters ----------------------------------------

    def foreach_bumps(self):
        """Whether torch bumps a LazyTensor's version counter at an in-place
        foreach op (see _probe_foreach_bumps)."""
        return _FOREACH_BUMPS[0]

    def note_foreach_written(self, targets):
        """An in-place foreach op wrote `targets`: those that require grad
        (parameters, which a forward's autograd graph may have saved) wait for
        bump_written where torch does not bump them itself."""
        if not _FOREACH_BUMPS[0] and targets[0].requires_grad:  # an optimizer's state lists require none
            for t in targets:
                if t.requires_grad:
                    self.unbumped[id(t)] = t

    def bump_written(self):
        """Bumps the version counters of the tensors note_foreach_written
        kept, so that a backward through a value an optimizer step changed
        since a forward saved it fails as in eager ("modified by an inplace
        operation"). Called at the end of an optimizer step and at the start
        of a backward, outside any dispatch: inside one, torch skips the
        ADInplaceOrView key that bumps counters."""
        if self.unbumped:
            tensors, self.unbumped = self.unbumped, {}
            bump_versions(tensors.values())

    # ---- interning and ids ----------------------------------------------

    def note_writes(self, sid, schema):
        """Queues the WRITES entries of an op (frontend_protocol.h): the
        arguments its schema marks written, and batch norm's running
        statistics, which torch 1.13's schema leaves unmarked."""
        for i, a in enumerate(schema.arguments):
            if (a.alias_info is not None and a.alias_info.is_write) or \
                    (schema.name in _UNMARKED_WRITES and a.name in _UNMARKED_WRITES[schema.name]):
                self._new_writes.extend((sid, i, self.intern(a.name)))

    def intern(self, s):
        sid = self._strings.get(s)
        if sid is None:
            sid = len(self._strings)
            self._strings[s] = sid
            self._new_strings.append(s)
        return sid

    def _new_id(self):
        vid = self._next_id
        self._next_id += 1
        return vid

    # ---- payloads and inputs --------------------------------------------

    def _send_payload(self, value, frame=codes.FRAME_PAYLOAD):
        """Sends the bytes of a CPU tensor; returns its stream-local payload
        id. `frame`: FRAME_INPUT_PAYLOAD for bytes that one INPUT record
        names and no other (see _payload_frame)."""
        pid = self._next_payload
        self._next_payload += 1
        if not value.is_contiguous() or value.is_conj() or value.is_neg():
            value = value.detach().resolve_conj().resolve_neg().contiguous()
        # The bytes in place, without ATen ops (a decode step's token costs
        # five of them through numpy); `value` outlives the sends below.
        total = value.numel() * value.element_size()
        if frame == codes.FRAME_INPUT_PAYLOAD and total >= RING_MIN and \
                self.channel.send_ring_payload(pid, value.data_ptr(), total):
            return pid
        data = memoryview((ctypes.c_char * total).from_address(value.data_ptr())).cast("B") if total \
            else memoryview(b"")
        offset = 0
        while True:
            piece = data[offset:offset + _PIECE]
            self.channel.send(frame, _PAYLOAD_HEAD.pack(pid, total, offset), piece)
            offset += piece.nbytes
            if offset >= total:
                return pid

    def _meta_words(self, value, storage_id, w):
        w.append(DTYPE_CODE[value.dtype])
        shape = value.shape
        w.append(len(shape))
        w.extend(shape)
        w.extend(value.stride())
        w.append(value.storage_offset())
        w.append(storage_id)

    def add_input(self, cpu_value, kind, constant=False):
        """Makes a LazyTensor holding a private contiguous copy of `cpu_value`
        (`constant`: one lifted while encoding an op, see add_input_words)."""
        if cpu_value.dtype not in DTYPE_CODE:
            raise CaptureError(f"genie: tensors of dtype {cpu_value.dtype} cannot be moved to remote_accelerator")
        value = cpu_value.detach().clone(memory_format=torch.contiguous_format)
        vid = self._new_id()
        payload = codes.NO_PAYLOAD if self.payload_mode == "none" else \
            self._constant_payload(value) if constant else self._send_payload(value, _payload_frame(kind))
        w = [codes.TAG_INPUT, vid, kind]
        self._meta_words(value, vid, w)
        w.append(payload)
        self.words.extend(w)
        return LazyTensor(value, vid, vid)

    # ---- ops ------------------------------------------------------------

    def _info(self, func):
        info = self._infos.get(func)
        if info is None:
            info = self._infos[func] = _OpInfo(func, self)
        return info

    def _arg(self, a, w, pre):
        """Appends the encoding of argument `a` to `w` and returns what the CPU
        op receives in its place. CPU tensors mixed in are lifted to constant
        inputs, whose records go to `pre` (they precede the op)."""
        t = type(a)
        if t is LazyTensor:
            w.append(codes.ARG_TENSOR)
            w.append(a._genie_id)
            return a if self.remote else a._genie_value
        if t is int:
            w.append(codes.ARG_INT)
            w.append(a)
            return a
        if t is float:
            w.append(codes.ARG_FLOAT)
            w.append(len(self.floats))
            self.floats.append(a)
            return a
        if t is bool:
            w.append(codes.ARG_BOOL)
            w.append(int(a))
            return a
        if a is None:
            w.append(codes.ARG_NONE)
            return None
        if t is list or t is tuple:
            w.append(codes.ARG_LIST)
            w.append(len(a))
            return [self._arg(x, w, pre) for x in a]
        if t is torch.dtype:
            code = DTYPE_CODE.get(a)
            if code is None:
                raise CaptureError(f"genie: dtype {a} is not supported on remote_accelerator")
            w.append(codes.ARG_DTYPE)
            w.append(code)
            return a
        if t is torch.device:
            w.append(codes.ARG_DEVICE)
            if a.type == "meta":
                w.append(self.intern(DEVICE))
                return self.exec_device
            w.append(self.intern(str(a)))
            return a
        if t is torch.layout:
            w.append(codes.ARG_LAYOUT)
            w.append(self.intern(str(a).replace("torch.", "")))
            return a
        if t is torch.memory_format:
            w.append(codes.ARG_MEMORY_FORMAT)
            w.append(self.intern(str(a).replace("torch.", "")))
            return a
        if t is str:
            w.append(codes.ARG_STRING)
            w.append(self.intern(a))
            return a
        if isinstance(a, torch.Tensor):
            if a.device.type != "cpu":
                raise CaptureError(f"genie: a tensor on {a.device} was mixed with remote_accelerator tensors")
            lifted = self.add_input_words(a, pre)
            w.append(codes.ARG_TENSOR)
            w.append(lifted._genie_id)
            return lifted if self.remote else lifted._genie_value
        if isinstance(a, bool):
            return self._arg(bool(a), w, pre)
        if isinstance(a, int):
            return self._arg(int(a), w, pre)
        if isinstance(a, float):
            return self._arg(float(a), w, pre)
        raise CaptureError(f"genie: cannot capture an argument of type {t.__name__}")

    def add_input_words(self, cpu_value, pre):
        """Like add_input, with the record going to `pre` (a constant lifted
        while encoding an op). A small constant whose bytes went up before
        names that payload again (triu_indices' pairs at every call), so a
        module call that lifts it records the same words each time."""
        saved = self.words
        self.words = []
        try:
            lazy = self.add_input(cpu_value, codes.INPUT_CONSTANT, constant=True)
            pre.extend(self.words)
        finally:
            self.words = saved
        t = self.templates
        if self.lifted is not None and t is not None and (t.capturing or t.learning):
            self.lifted[lazy._genie_id] = cpu_value.detach().clone()
        return lazy

    def _constant_payload(self, value):
        """The payload id of `value`, a contiguous lifted constant: sent once per content while small."""
        n = value.numel() * value.element_size()
        if n > _CONSTANT_BYTES or value.is_conj() or value.is_neg():
            return self._send_payload(value)
        key = (value.dtype, tuple(value.shape), ctypes.string_at(value.data_ptr(), n) if n else b"")
        pid = self._constants.get(key)
        if pid is None:
            if len(self._constants) >= _CONSTANT_LIMIT:
                self._constants.clear()
            pid = self._constants[key] = self._send_payload(value)
        return pid

    def dispatch(self, func, args, kwargs):
        info = self._infos.get(func)
        if info is None:
            info = self._info(func)
        if info.special is not None:
            if info.special == "foreach":
                out = self._foreach(info, args, kwargs)
                if out is not _WHOLE:
                    return out
            elif info.special == "same_size":
                # Metadata only (autograd asks it of a custom autograd
                # function's gradients): no record, no segment to close.
                return args[0].shape == args[1].shape
            elif info.special == "item":
                return self.materialize(args[0], codes.HOW_ITEM).item()
            elif info.special == "host":
                return self._host_op(func, args, kwargs)
            elif info.special == "sparse":
                # A sparse gradient (nn.Embedding(sparse=True)): the program
                # was told at its optimizer ("SparseAdam does not support
                # dense gradients"), and the runtime refused the op after.
                raise CaptureError(f"genie: {info.name} works with sparse tensors; only strided (dense) tensors run on "
                                   f"{DEVICE} (for nn.Embedding or nn.EmbeddingBag, use sparse=False)")
            dev = kwargs.get("device")
            if dev is not None and not is_remote_device(dev):
                value = self.materialize(args[0], codes.HOW_CPU)
                return func(value, *args[1:], **kwargs)
            elif info.special == "random":
                return self._random_locally(func, info, args, kwargs)
        for pos, name in info.writes:
            t = args[pos] if pos < len(args) else kwargs.get(name)
            if type(t) is not LazyTensor and isinstance(t, _Tensor) and not t.is_meta:
                return self._into_host(func, args, kwargs)
        if info.flags and self.remote and self.seed_pending is not None:
            self.seed_runtime()
        return self._op(info, args, kwargs, None)

    def seed_runtime(self):
        """Live mode: sends the program's last torch.manual_seed before the
        first random op the runtime draws after it. The runtime seeds the
        session's own generator there (runtime.cc, genie::manual_seed), as
        torch.manual_seed seeds a device's: a seeded program's remote draws
        (`torch.multinomial` sampling a token) repeat from run to run and
        change with the seed. Record mode records random results instead."""
        seed, self.seed_pending = self.seed_pending, None
        if seed >= 1 << 63:
            seed -= 1 << 64  # a uint64 seed as the int64 word it is on the wire
        self.words += (_TAG_OP, self.intern("genie::manual_seed"), self.module_sid, self.phase, codes.FLAG_RANDOM,
                       1, _ARG_INT, seed, 0, 0)

    def _host_op(self, func, args, kwargs):
        """An op of _HOST_OPS: runs here on the values of the LazyTensors it
        reads (materialized, a segment closing there as at `.cpu()`); its
        tensor results go up as inputs, but those _HOST_OPS keeps here."""
        def host(t):
            return self.materialize(t, codes.HOW_CPU).clone() if type(t) is LazyTensor else t
        out = func(*[_map_tensors(a, host) for a in args], **{k: _map_tensors(v, host) for k, v in kwargs.items()})
        kept = _HOST_OPS[func._schema.name]
        results = [o if i in kept or not isinstance(o, torch.Tensor) else self.add_input(o, codes.INPUT_TENSOR)
                   for i, o in enumerate(out if isinstance(out, (tuple, list)) else [out])]
        return type(out)(results) if isinstance(out, (tuple, list)) else results[0]

    def _into_host(self, func, args, kwargs):
        """An op that writes into a tensor of the program's own, reading
        LazyTensors: `host.copy_(remote)`, a device-to-host copy in eager.
        Each LazyTensor it reads is materialized (a segment closes there, as
        at `.cpu()`) and the op runs on the host values, writing where the
        program asked. Recorded as an op on the remote side, it wrote into a
        lifted constant and left the program's tensor as it was."""
        def host(t):
            return self.materialize(t, codes.HOW_CPU) if type(t) is LazyTensor else t
        args = [_map_tensors(a, host) for a in args]
        kwargs = {k: _map_tensors(v, host) for k, v in kwargs.items()}
        return func(*args, **kwargs)

    def _op(self, info, args, kwargs, computed):
        """Records op `info` on `args` and returns its results: from `computed`
        (the results' values, computed already) or from running it."""
        func = info.func
        pre = []
        w = [_TAG_OP, info.sid, self.module_sid, self.phase, info.flags, len(args)]
        # What the kernel runs on: the CPU values in record mode; in live
        # mode the LazyTensors themselves, whose metadata keys the shape
        # cache (_kernel makes meta values only for a kernel that must run).
        cpu_args = []
        cpu_kwargs = None
        remote = self.remote
        try:
            # The common argument types inline; the rest through _arg. Live
            # mode also builds the shape cache's key (_shape_key's) on the way.
            if remote:
                key = [func]
                for a in args:
                    t = type(a)
                    if t is LazyTensor:
                        w.append(_ARG_TENSOR)
                        w.append(a._genie_id)
                        key.append((a.dtype, a.shape, a.stride(), a.storage_offset()))
                    elif t is int:
                        w.append(_ARG_INT)
                        w.append(a)
                        key.append((int, a))
                    else:
                        a = self._arg(a, w, pre)
                        key.append(_signature(a))
                    cpu_args.append(a)
            else:
                for a in args:
                    t = type(a)
                    if t is LazyTensor:
                        w.append(_ARG_TENSOR)
                        w.append(a._genie_id)
                        cpu_args.append(a._genie_value)
                    elif t is int:
                        w.append(_ARG_INT)
                        w.append(a)
                        cpu_args.append(a)
                    else:
                        cpu_args.append(self._arg(a, w, pre))
            w.append(len(kwargs))
            if kwargs:
                cpu_kwargs = {}
                for k, v in kwargs.items():
                    w.append(self.intern(k))
                    v = cpu_kwargs[k] = self._arg(v, w, pre)
                    if remote:
                        key.append((k, _signature(v)))
            if computed is not None:
                out = computed
            elif remote:
                try:
                    key = tuple(key)
                    recipe = self._shapes.get(key)
                except TypeError:  # an unhashable argument
                    key = recipe = None
                if recipe is None:
                    out = self._uncached(func, cpu_args, cpu_kwargs or {}, key)
                elif info.fresh and recipe[2] is not None:
                    out = recipe[2]
                elif recipe[1] == info.written and recipe[0] is _Tensor and \
                        type(args[info.written[0]]) is LazyTensor:
                    # In place, its metadata kept: the tensor takes a new id, as below.
                    base = args[info.written[0]]
                    if pre:
                        self.words += pre
                    vid = self._next_id
                    self._next_id = vid + 1
                    self.released.append(base._genie_id)
                    base._genie_id = vid
                    w += (1, 1, vid)
                    w += _kept_meta(base)
                    w.append(_NO_PAYLOAD)
                    self.words += w
                    return base
                else:
                    out = _from_recipe(recipe, cpu_args)
            elif kwargs:
                out = info.call(*cpu_args, **cpu_kwargs)
            else:
                out = info.call(*cpu_args)
        except CaptureError as e:
            raise CaptureError(f"{e} (in {info.name})") from None
        except Exception:
            if not self.remote:
                raise
            # Live mode: the op has no meta kernel in this torch.
            if info.silent_writes:
                # Nothing to make: it returns nothing, and what it writes
                # keeps its metadata (torch 1.13's `_foreach_maximum_`,
                # which AdamW's amsgrad calls). The runtime runs it.
                out = None
            else:
                out = self._without_meta(func, cpu_args, cpu_kwargs or {})
                if out is None:
                    self.words += pre
                    return self._run_locally(func, info, args, kwargs)
        if pre:
            self.words += pre
        if type(out) is _Fresh:
            # Live mode, the shape cache's answer: a new tensor of known metadata.
            vid = self._next_id
            self._next_id = vid + 1
            storage = vid
            alias = info.returns[0]
            if alias is not None:  # a view (info.fresh: not a result written in place)
                pos, name, _ = alias
                base = args[pos] if pos < len(args) else kwargs.get(name)
                if type(base) is LazyTensor:
                    storage = base._genie_storage
            w += (1, 1, vid)
            w += out.words
            w.append(storage)
            w.append(_NO_PAYLOAD)
            self.words += w
            # LazyTensor._unmade, inline.
            r = _make_wrapper(LazyTensor, out.shape, strides=out.stride, storage_offset=out.offset, dtype=out.dtype,
                              device=_META)
            r._genie_id = vid
            r._genie_storage = storage
            return r
        if type(out) is torch.Tensor and info.single:
            # One tensor, fresh or a view: the bulk of all ops, inline.
            alias = info.returns[0]
            vid = self._next_id
            storage = vid
            if alias is not None:
                pos, name, is_write = alias
                base = args[pos] if pos < len(args) else kwargs.get(name)
                if type(base) is LazyTensor:
                    storage = base._genie_storage
                    if is_write:
                        # In place (an optimizer's update, a gradient accumulated): the
                        # LazyTensor takes the new id, as _output does for the general case.
                        shape = out.shape
                        stride = out.stride()
                        if shape != base.shape or stride != base.stride() or \
                                out.storage_offset() != base.storage_offset():
                            return self._finish(info, out, args, kwargs, w)  # its metadata changed (_restride)
                        self._next_id = vid + 1
                        if self.remote:
                            self.replaced(base._genie_id)
                        base._genie_id = vid
                        w += (1, 1, vid, DTYPE_CODE[out.dtype], len(shape))
                        w += shape
                        w += stride
                        w.append(out.storage_offset())
                        w.append(storage)
                        w.append(self._random_payload(info, out))
                        self.words += w
                        return base
            self._next_id = vid + 1
            dtype = DTYPE_CODE.get(out.dtype)
            if dtype is None:
                raise CaptureError(f"genie: {info.name} produced dtype {out.dtype}, "
                                   "which remote_accelerator does not support")
            shape = out.shape
            stride = out.stride()
            offset = out.storage_offset()
            w += (1, 1, vid, dtype, len(shape))
            w += shape
            w += stride
            w.append(offset)
            w.append(storage)
            w.append(self._send_payload(out) if info.flags & _RANDOM and self.record_random else _NO_PAYLOAD)
            self.words += w
            return LazyTensor._wrap(out, shape, stride, offset, vid, storage)
        return self._finish(info, out, args, kwargs, w)

    def _foreach(self, info, args, kwargs):
        """A foreach op, recorded as its per-tensor op on each element (see
        _FOREACH_BASES); _WHOLE when it is to be recorded as itself (lists
        holding other than LazyTensors, or of different lengths)."""
        each, plan = info.each
        n = len(args[0])
        if not n:
            return _WHOLE
        bound, cpu = [], []
        remote = self.remote
        for j, (name, kind, _, _) in enumerate(plan):
            v = args[j] if j < len(args) else kwargs.get(name, _WHOLE)
            c = v._genie_value if type(v) is LazyTensor and not remote else v
            if kind != "one" and v is not _WHOLE:
                if len(v) != n:
                    return _WHOLE
                if kind == "tensors":
                    for t in v:
                        if type(t) is not LazyTensor:
                            return _WHOLE
                    if not remote:
                        c = [t._genie_value for t in v]
            bound.append(v)
            cpu.append(c)
        inplace = each.returns[0] is not None and each.returns[0][2]
        key = _layout_key(info, self.module_sid, self.phase, n, bound, plan) if inplace or info.returns else None
        layout = self._layouts.get(key) if key is not None else None
        values = None
        if not remote:
            # Record mode: the foreach kernel runs once on the CPU values.
            values = info.call(*cpu[:len(args)], **{name: c for (name, _, _, _), c in
                                                    zip(plan[len(args):], cpu[len(args):]) if c is not _WHOLE})
        if layout is not None and (not inplace or not _aliased(bound[0], [v for v, p in zip(bound, plan)
                                                                          if p[1] == "tensors"])):
            self.foreach_layout = (info, layout, bound)
            if inplace:
                self.note_foreach_written(bound[0])
            return self._from_layout(layout, bound, n, values)
        if remote and not inplace and info.returns:
            values = self._foreach_meta(each, plan, cpu, n)
        if inplace:
            self._foreach_records(each, plan, bound, n, None, key)
            self._note_layout(info, key, layout, bound)
            self.note_foreach_written(bound[0])
            return None
        if values is not None and info.returns and all(type(v) is _Fresh or type(v) is torch.Tensor and
                                                       v.dtype in DTYPE_CODE for v in values):
            out = self._foreach_records(each, plan, bound, n, values, key)
            self._note_layout(info, key, layout, bound)
            return out
        results = []
        for i in range(n):
            e_args, e_kwargs = _element(bound, plan, i)
            results.append(self._op(each, e_args, e_kwargs, None if values is None else values[i]))
        return results if info.returns else None

    def _note_layout(self, info, key, before, bound):
        """Sets foreach_layout after a foreach call recorded anew, to the
        _Layout it kept: none when its records could not be kept as one (an
        in-place call whose targets are aliased keeps none, and leaves the
        layout `before` of its form as it was)."""
        layout = self._layouts.get(key) if key is not None else None
        if layout is not None and layout is not before:
            self.foreach_layout = (info, layout, bound)

    def _foreach_meta(self, each, plan, cpu, n):
        """Live mode: the meta results of an out-of-place foreach op (its
        arguments' meta values `cpu`), one per element from its per-tensor
        op's meta kernel (the shape cache mostly), so that one
        _foreach_records call records them all; None when a kernel fails
        (each element then goes through _op)."""
        values = []
        for i in range(n):
            e_args, e_kwargs = _element(cpu, plan, i)
            try:
                out = self._kernel(each.func, e_args, e_kwargs, True)
            except Exception:
                return None
            if type(out) is not _Fresh and (type(out) is not _Tensor or out.dtype not in DTYPE_CODE):
                return None
            values.append(out)
        return values

    def _foreach_records(self, each, plan, bound, n, values, key=None):
        """The records of a foreach op, one per element. In place (`values`
        None), each element keeps its metadata and takes a new id, as _op does
        for an in-place op; otherwise element i's result is
        values[i], a new tensor, and the LazyTensors are returned.

        Every element's record has the same words but for its own arguments
        (a tensor's id, a number) and its result: the words are encoded once
        as `skeleton`, whose slots `columns` fill per element. With `key` (the
        call's form, see _layout_key), the records are also kept as a _Layout
        that later calls of that form copy (_from_layout)."""
        pre = []
        ordered = [(v, p) for v, p in zip(bound, plan) if v is not _WHOLE and not p[3]]
        keywords = [(v, p) for v, p in zip(bound, plan) if v is not _WHOLE and p[3]]
        skeleton = [_TAG_OP, each.sid, self.module_sid, self.phase, each.flags, len(ordered)]
        columns = []  # (slot in skeleton, the n words for it)
        tensor_columns = []  # which columns hold LazyTensors, their ids not yet read
        floats = self.floats
        f0 = len(floats)
        # For a _Layout: (column, source argument), and the slots of the
        # floats ("one" float slot, offset of its float).
        sources = []
        one_floats = []
        float_order = []
        for j, (v, (_, kind, pname, kw_only)) in enumerate(ordered + keywords):
            if j == len(ordered):
                skeleton.append(len(keywords))
            if kw_only:
                skeleton.append(self.intern(pname))
            if kind == "one":
                if type(v) is float:
                    one_floats.append((len(skeleton) + 1, len(floats) - f0))
                    float_order.append((j, False))
                self._arg(v, skeleton, pre)
                continue
            if kind == "tensors":
                skeleton.append(_ARG_TENSOR)
                column = v
                tensor_columns.append(len(columns))
                sources.append((len(columns), j, "t"))
            else:
                t = type(v[0])
                if t is float and all(type(x) is float for x in v):
                    skeleton.append(_ARG_FLOAT)
                    sources.append((len(columns), j, len(floats) - f0))
                    float_order.append((j, True))
                    column = range(len(floats), len(floats) + n)
                    floats.extend(v)
                elif t is int and all(type(x) is int for x in v):
                    skeleton.append(_ARG_INT)
                    sources.append((len(columns), j, "i"))
                    column = v
                else:  # mixed, or other number types: each through _arg, its type word a column too
                    key = None
                    encoded = []
                    for x in v:
                        self._arg(x, encoded, pre)
                    columns.append((len(skeleton), encoded[0::2]))
                    skeleton.append(0)
                    column = encoded[1::2]
            columns.append((len(skeleton), column))
            skeleton.append(0)
        if not keywords:
            skeleton.append(0)
        if pre:
            key = None
            self.words += pre
        words = self.words
        vid = self._next_id
        self._next_id = vid + n
        targets = ordered[0][0]
        # In place, element i reads the ids elements before it gave; only a
        # list that holds a target at another position (or twice) sees it.
        sequential = values is None and _aliased(targets, [columns[c][1] for c in tensor_columns])
        if not sequential:
            for c in tensor_columns:
                slot, tensors = columns[c]
                columns[c] = (slot, [t._genie_id for t in tensors])
        if values is None:
            if self.remote and not sequential:
                self.released.extend([t._genie_id for t in targets])
            metas = [_kept_meta(t) for t in targets]
        else:
            metas = [(*value.words, vid + i) if type(value) is _Fresh else
                     (DTYPE_CODE[value.dtype], value.dim(), *value.shape, *value.stride(), value.storage_offset(),
                      vid + i) for i, value in enumerate(values)]
        first = len(words)
        starts = []
        for i in range(n):
            w = skeleton.copy()
            for slot, column in columns:
                w[slot] = column[i]
            if sequential:
                for c in tensor_columns:
                    slot, tensors = columns[c]
                    w[slot] = tensors[i]._genie_id
                target = targets[i]
                if self.remote:
                    self.released.append(target._genie_id)
                target._genie_id = vid + i
            w += (1, 1, vid + i)
            w += metas[i]
            w.append(_NO_PAYLOAD)
            starts.append(len(words) - first)
            words += w
        if key is not None and not sequential and len(self._layouts) < _LAYOUT_LIMIT:
            self._layouts[key] = _Layout(words[first:], starts, len(skeleton), metas, columns, sources, one_floats,
                                         float_order, values)
        if values is None:
            if not sequential:
                for i, t in enumerate(targets):
                    t._genie_id = vid + i
            return None
        return [LazyTensor._unmade(value.shape, value.stride, value.offset, value.dtype, vid + i, vid + i)
                if type(value) is _Fresh else
                LazyTensor._wrap(value, value.shape, value.stride(), value.storage_offset(), vid + i, vid + i)
                for i, value in enumerate(values)]

    def _from_layout(self, layout, bound, n, values):
        """A foreach call of a form recorded before (see _Layout): its
        records are that call's, with this call's ids and numbers. `values`:
        the results' CPU values (record mode), or None."""
        # The arguments in _foreach_records' order: a per-tensor op's
        # keyword-only arguments follow its positional ones, so this is it.
        seq = [v for v in bound if v is not _WHOLE]
        floats = self.floats
        f0 = len(floats)
        for j, many in layout.float_order:
            if many:
                floats.extend(seq[j])
            else:
                floats.append(seq[j])
        w = layout.words.copy()
        for j, positions in layout.tensors:
            for p, t in zip(positions, seq[j]):
                w[p] = t._genie_id
        for j, positions in layout.ints:
            for p, x in zip(positions, seq[j]):
                w[p] = x
        for k, step, positions in layout.floats:
            for i, p in enumerate(positions):
                w[p] = f0 + k + step * i
        vid = self._next_id
        self._next_id = vid + n
        for i, p in enumerate(layout.ids):
            w[p] = vid + i
        targets = seq[0]
        if layout.results is None:
            for p, t in zip(layout.storages, targets):
                w[p] = t._genie_storage
            self.words += w
            if self.remote:
                self.released.extend([t._genie_id for t in targets])
            for i, t in enumerate(targets):
                t._genie_id = vid + i
            return None
        for i, p in enumerate(layout.storages):
            w[p] = vid + i
        self.words += w
        if values is None:
            out = [LazyTensor._unmade(shape, stride, offset, dtype, vid + i, vid + i)
                   for i, (shape, stride, offset, dtype) in enumerate(layout.results)]
        else:
            out = [LazyTensor._wrap(value, shape, stride, offset, vid + i, vid + i)
                   for i, (value, (shape, stride, offset, _)) in enumerate(zip(values, layout.results))]
        for t, form in zip(out, layout.forms):
            t._genie_form = form  # what a later foreach call's _layout_key reads
        return out

    def _finish(self, info, out, args, kwargs, w):
        """The general case of dispatch: several outputs, in-place results, scalars."""
        if self.remote and _has_scalar(out):
            # A Python value the program will see: only the real values give it.
            return self._run_locally(info.func, info, args, kwargs)
        result = self._outputs(info, out, args, kwargs, w)
        self.words += w
        if info.silent_writes and self.remote:
            # Its records name what it writes only as arguments, which
            # _reads_only takes for reads: a value pushed early on one of
            # those storages is not taken (see RemoteSession._answered).
            for pos, name in info.silent_writes:
                _map_tensors(args[pos] if pos < len(args) else kwargs.get(name), self._wrote)
        if self.observed:
            self.flush()
        return result

    def _outputs(self, info, out, args, kwargs, w):
        ow = []
        if isinstance(out, (tuple, list)):
            # A single Tensor[] return (split, unbind) aliases like its one schema return.
            shared = info.returns[0] if len(info.returns) == 1 else None
            result = [self._output(info, info.returns[i] if shared is None and i < len(info.returns) else shared,
                                   o, args, kwargs, ow) for i, o in enumerate(out)]
            if isinstance(out, tuple):
                result = tuple(result)
            count = len(out)
        elif out is None:
            result, count = None, 0
        else:
            result = self._output(info, info.returns[0] if info.returns else None, out, args, kwargs, ow)
            count = 1
        w.append(count)
        w.extend(ow)
        return result

    def _output(self, info, alias, o, args, kwargs, ow):
        if not isinstance(o, torch.Tensor):
            ow.append(0)
            if o is not None:
                self.observed = True  # the program sees a value computed remotely
            self._arg(o, ow, None)
            return o
        if o.dtype not in DTYPE_CODE:
            raise CaptureError(f"genie: {info.name} produced dtype {o.dtype}, which remote_accelerator does not support")
        vid = self._new_id()
        storage = vid
        if alias is not None:
            pos, name, is_write = alias
            base = args[pos] if pos < len(args) else kwargs.get(name)
            if type(base) is LazyTensor:
                storage = base._genie_storage
                if is_write:
                    if o.shape != base.shape or o.stride() != base.stride() or \
                            o.storage_offset() != base.storage_offset():
                        self._restride(info, base, o)
                    if self.remote:
                        self.replaced(base._genie_id)
                    base._genie_id = vid
                    ow.append(1)
                    ow.append(vid)
                    self._meta_words(o, storage, ow)
                    ow.append(self._random_payload(info, o))
                    return base
        ow.append(1)
        ow.append(vid)
        self._meta_words(o, storage, ow)
        ow.append(self._random_payload(info, o))
        return LazyTensor(o, vid, storage)

    def _restride(self, info, base, o):
        """`info`'s op changed the shape, strides or offset of `base` in
        place, into those of `o`: the LazyTensor takes them, and `o` is its
        value from now on."""
        restride(base, o)
        base.__dict__["_genie_value"] = o

    def _wrote(self, t):
        if type(t) is LazyTensor:
            self.run_made.add(t._genie_storage)
        return t

    def _random_payload(self, info, value):
        """Random results are recorded so a replay can use them (see graph.h Output)."""
        if info.flags & codes.FLAG_RANDOM and self.record_random:
            return self._send_payload(value)
        return _NO_PAYLOAD

    # ---- materialization ----------------------------------------------

    def made_any(self):
        """Whether a value of the program's has been made here (a LazyTensor or an input)."""
        return self._next_id != 0

    def materialize(self, lazy, how):
        """Closes the segment with `lazy`'s value pulled to the host; returns the CPU value."""
        value = lazy._genie_value
        pid = self._send_payload(value) if self.payload_mode == "full" else codes.NO_PAYLOAD
        self.words.extend((codes.TAG_MATERIALIZE, lazy._genie_id, how, pid))
        self.flush()
        return value

    def flush(self):
        """Sends the open segment (with any strings it introduced)."""
        self._send_segment(codes.FRAME_SEGMENT)

    def _send_segment(self, frame_type, unread=None):
        """Sends the open segment as a `frame_type` frame. With `unread`
        (value id, word index): only when _reads_only finds that the
        segment reads that value but makes nothing on its storage (see
        RemoteSession._answered); returns whether it was sent."""
        words, floats = self.words, self.floats
        packed = struct.pack(f"<{len(words)}q", *words)
        if unread is not None and (unread[0] in self.run_made or not _reads_only(packed, *unread)):
            return False
        if frame_type == codes.FRAME_PART:
            self._sent_part(packed)
        if self.run_made:
            self.run_made = set()
        self.observed = False
        if self._new_strings:
            self.channel.send(codes.FRAME_STRINGS, pack_strings(self._new_strings))
            self._new_strings = []
        if self._new_writes:
            writes = self._new_writes
            self.channel.send(codes.FRAME_WRITES, struct.pack(f"<I{len(writes)}I", len(writes) // 3, *writes))
            self._new_writes = []
        now = time.perf_counter_ns()
        # struct packs a list of ints about 3x faster than array("q", words).
        self.channel.send(frame_type, _SEGMENT_HEAD.pack(now - self._segment_start, len(words), len(floats)),
                          packed, floats.tobytes())
        self.words = []
        self.floats = array("d")
        self.weight = 0
        self._segment_start = time.perf_counter_ns()
        return True

    def _sent_part(self, packed):
        """A PART went with these words (live mode keeps them: RemoteSession)."""

    def run_template(self, tpl, base, t, exts, ids=None):
        """Appends a RUN step for a replay of template `tpl` (templates.py)
        on `exts` whose first id is `base`: the genie process patches the
        template's records as _replay_words patched its copy, so the program
        neither packs nor sends them. The template goes up once, before its
        first run. `ids`: the ids `exts` had when the call began, where it
        has run already (a check capture)."""
        if tpl.wire is None:
            self._send_template(tpl)
        for e in self.made_on[tpl.wire]:
            self.run_made.add(exts[e]._genie_storage)
        w = [codes.TAG_RUN, tpl.wire, base, len(t), *t, len(exts)]
        for k, e in enumerate(exts):
            w.append(e._genie_id if ids is None else ids[k])
            w.append(e._genie_storage)
        self.words += w
        self.weight += len(tpl.words) - len(w)
        self.template_runs += 1

    def _send_template(self, tpl):
        patches = [x for patch in tpl.patches() for x in patch]
        words = tpl.words
        self.channel.send(codes.FRAME_TEMPLATE,
                          _TEMPLATE_HEAD.pack(self.templates_sent, len(words), len(tpl.floats), len(patches) // 4),
                          struct.pack(f"<{len(words)}q", *words), array("d", tpl.floats).tobytes(),
                          struct.pack(f"<{len(patches)}q", *patches))
        tpl.wire = self.templates_sent
        self.templates_sent += 1
        # The arguments it makes values on the storage of (views, writes): a
        # patch puts only their storage in a result's metadata.
        self.made_on.append(tuple(sorted({e for _, e in tpl.ext_storage})))

    def close(self):
        """Sends what is still open and the END frame. Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        if len(self.words):
            self.flush()
        self.channel.send(codes.FRAME_END)
        self.channel.close()


# ---- live mode ---------------------------------------------------------------

_empty_strided = torch.empty_strided  # the originals: device.install() wraps torch's factories
_empty = torch.empty
_frombuffer = torch.frombuffer
_DTYPES = [getattr(torch, name) for name in codes.DTYPE_NAMES]

# Random ops that draw values without reading any tensor's values: in live
# mode they run in the program's process, with its generator, so a program
# seeded with torch.manual_seed gets the numbers eager PyTorch gives it.
_FACTORY_RANDOM = frozenset(["aten::rand", "aten::randn", "aten::randint", "aten::randperm", "aten::rand_like",
                             "aten::randn_like", "aten::randint_like"])
_FILL_RANDOM = frozenset(["aten::uniform_", "aten::normal_", "aten::random_", "aten::exponential_", "aten::geometric_",
                          "aten::cauchy_", "aten::log_normal_"])

# Ops whose result shapes depend on tensor values: without a meta kernel they
# run in the program's process on the real values.
_DATA_DEPENDENT = frozenset([
    "aten::nonzero", "aten::masked_select", "aten::unique", "aten::_unique", "aten::_unique2", "aten::unique_dim",
    "aten::unique_consecutive", "aten::unique_dim_consecutive", "aten::repeat_interleave", "aten::bincount",
    "aten::histc", "aten::index", "aten::argwhere", "aten::equal", "aten::allclose", "aten::is_nonzero",
    "aten::nonzero_static", "aten::_assert_async",
])

# Ops that take a CPU tensor beside a device tensor and give CPU tensors
# back in eager, which code after them reads as Python numbers: they run in
# the program's process in both modes (Session._host_op), and the results at
# these positions stay there. A packed sequence's sizes are its lengths (the
# CPU kernel's alone, torch wants them on the CPU), its batch sizes stay CPU.
_HOST_OPS = {"aten::_pack_padded_sequence": (1,)}


# Ops whose meta kernels give other result shapes than the CPU kernels (on
# torch 1.13, _embedding_bag's offset2bag and max_indices): composite code
# such as their backward branches on those shapes, so they come from a run on
# zeros instead.
_CPU_SHAPES = frozenset(getattr(torch.ops.aten, name).default for name in
                        ("_embedding_bag", "_embedding_bag_forward_only") if hasattr(torch.ops.aten, name))


# arange's meta kernel on torch 1.13 makes int64 results for float bounds
# (torch.arange(6.0, device="meta").dtype is int64; on CPU, float32): the
# shapes come from a call with the dtype the CPU kernel would pick.
_ARANGE = frozenset(getattr(torch.ops.aten.arange, name) for name in ("default", "start", "start_step"))


def _arange_kwargs(args, kwargs):
    if kwargs.get("dtype") is None and any(type(a) is float for a in args):
        return dict(kwargs, dtype=torch.get_default_dtype())
    return kwargs


def _draws_without_reading(schema):
    if schema.name in _FACTORY_RANDOM:
        return True
    if schema.name in _FILL_RANDOM:
        return True
    if schema.name == "aten::bernoulli_" and schema.overload_name == "float":
        return True
    return schema.name == "aten::normal" and schema.overload_name == "float_float"


_TENSOR_ARG_WORD = _I64.pack(codes.ARG_TENSOR)
_NO_PAYLOAD_WORD = _I64.pack(codes.NO_PAYLOAD)


def _reads_only(packed, vid, mat):
    """Whether the record words `packed` (i64s) name value `vid`, which owns
    its storage, only where ops or RUN steps read it, and as word `mat`,
    without parsing them. The value's id is its storage's, so a record of
    a value made on that storage (a view, an in-place write to it or to a
    view of it) names it as the storage of its result's metadata, which
    the result's payload word follows: NO_PAYLOAD in live mode. Read by an
    op, it follows ARG_TENSOR, and a kind code or a count follows it. A
    RUN names it as an argument with its storage: twice, or after a
    view's id (larger than its own); whether the template makes values
    on it is RemoteSession.run_made's to say. Any other word equal to it
    (a size, a match across words) counts as a view."""
    if vid <= codes.ARG_TENSOR:
        return False  # a RUN's view of it could have ARG_TENSOR's value for its id
    key = _I64.pack(vid)
    skip = -1  # a RUN argument's storage word, which its id word vouched for
    for pos in _word_offsets(packed, key):
        if pos == skip:
            continue
        after = packed[pos + 8:pos + 16]
        if pos == mat * 8 or (packed[pos - 8:pos] == _TENSOR_ARG_WORD and after != _NO_PAYLOAD_WORD):
            continue
        if after == key and packed[pos + 16:pos + 24] != _NO_PAYLOAD_WORD:
            skip = pos + 8  # a RUN's argument: its id and storage
            continue
        return False
    return True


def _word_offsets(packed, key):
    """The offsets of the words (i64) of `packed` that are `key`. bytes.find
    of a whole word tests nearly every offset: record words are mostly zero
    bytes, as a small id's word is, and it skips ahead only over bytes its
    needle lacks (up to 100 us over a recsys step's 37 KB). So it looks for
    the key's first byte (memchr) while that byte turns up rarely, and for
    the key's bytes up to its last nonzero one past that."""
    out = []
    first = key[:1]
    hits = 0 if first != b"\0" else _BYTE_HITS  # a zero byte is everywhere
    pos = packed.find(first) if hits < _BYTE_HITS else 0
    while pos != -1:
        if hits == _BYTE_HITS:
            break
        hits += 1
        if not pos & 7 and packed.startswith(key, pos):
            out.append(pos)
        pos = packed.find(first, pos + 1)
    else:
        return out
    needle = key.rstrip(b"\0")
    pos = packed.find(needle, (pos + 7) & ~7)
    while pos != -1:
        if not pos & 7 and packed.startswith(key, pos):
            out.append(pos)
        pos = packed.find(needle, (pos | 7) + 1)
    return out


_BYTE_HITS = 48


def _kept_meta(t):
    """The words of LazyTensor `t`'s record from its dtype to its storage id,
    for an in-place op on it: worked out once, since an in-place op keeps a
    LazyTensor's metadata (_op refuses one that changes it)."""
    d = t.__dict__
    meta = d.get("_genie_meta")
    if meta is None:
        meta = d["_genie_meta"] = (DTYPE_CODE[t.dtype], t.dim(), *t.shape, *t.stride(), t.storage_offset(),
                                   t._genie_storage)
    return meta


def _form(t):
    """LazyTensor `t`'s metadata words without its storage id (see _kept_meta)."""
    form = t.__dict__.get("_genie_form")
    if form is None:
        form = t.__dict__["_genie_form"] = _kept_meta(t)[:-1]
    return form


_LAYOUT_LIMIT = 1 << 12


def _layout_key(info, module_sid, phase, n, bound, plan):
    """What a foreach call's records depend on, but for its tensors' ids and
    storage ids and its numbers' values: the op, module and phase, each
    tensor's metadata, each number's type. None for calls whose arguments
    are of other kinds (a tensor for all elements, mixed number types)."""
    key = [info, module_sid, phase, n]
    for v, (_, kind, _, _) in zip(bound, plan):
        if v is _WHOLE:
            key.append(None)
        elif kind == "tensors":
            key.append(tuple([_form(t) for t in v]))
        elif kind == "numbers":
            t = type(v[0])
            if t is not float and t is not int:
                return None
            for x in v:
                if type(x) is not t:
                    return None
            key.append(t)
        else:
            t = type(v)
            if t is float:
                key.append(t)
            elif t is int or t is bool or v is None:
                key.append((t, v))
            else:
                return None
    return tuple(key)


class _Layout:
    """The records of a foreach call (see Session._foreach_records), for
    later calls of the same form (_layout_key): `words` with the positions
    that take each call's own tensor ids (`tensors`: argument, positions),
    integers (`ints`), float indices (`floats`: offset of the first among
    the call's floats, 1 for a list of numbers or 0 for one number, the
    positions), result ids (`ids`) and storage ids (`storages`); `float_order`:
    which arguments give the call's floats, in order (argument, a list);
    `results`: the new results' (shape, stride, offset, dtype), or None in
    place; `forms`: the new results' metadata words (see _form), or None."""
    __slots__ = ("words", "tensors", "ints", "floats", "float_order", "ids", "storages", "results", "forms")

    def __init__(self, words, starts, skeleton, metas, columns, sources, one_floats, float_order, values):
        self.words = words
        self.tensors, self.ints, self.floats = [], [], []
        for c, j, what in sources:
            slot = columns[c][0]
            positions = [s + slot for s in starts]
            if what == "t":
                self.tensors.append((j, positions))
            elif what == "i":
                self.ints.append((j, positions))
            else:
                self.floats.append((what, 1, positions))
        for slot, k in one_floats:
            self.floats.append((k, 0, [s + slot for s in starts]))
        self.float_order = float_order
        self.ids = [s + skeleton + 2 for s in starts]
        self.storages = [s + skeleton + 2 + len(m) for s, m in zip(starts, metas)]
        self.forms = None if values is None else [m[:-1] for m in metas]
        self.results = None if values is None else [
            (v.shape, v.stride, v.offset, v.dtype) if type(v) is _Fresh else
            (v.shape, v.stride(), v.storage_offset(), v.dtype) for v in values]


# Depth of Module._apply calls running (module.to(...); device.py): the
# tensors moved there are a model's state.
moving_model = [0]


def _payload_frame(kind):
    """The PAYLOAD frame type of an input of `kind` whose bytes only its own
    INPUT record names (add_input without `constant`). A model's state (its
    parameters, and its buffers as `module.to()` moves them) goes up as
    PAYLOAD: the genie process addresses it by content, and a runtime keeps
    it across runs. The rest (a batch, an image, a drawn value) goes as
    INPUT_PAYLOAD, which live mode sends unhashed when large."""
    if kind == codes.INPUT_PARAMETER or moving_model[0]:
        return codes.FRAME_PAYLOAD
    return codes.FRAME_INPUT_PAYLOAD


def _aliased(targets, lists):
    """Whether an in-place foreach op's `targets` hold a tensor twice, or
    one of `lists` (its other tensor arguments) holds a target at another
    position than that target's."""
    at = {id(t): i for i, t in enumerate(targets)}
    if len(at) != len(targets):
        return True
    for tensors in lists:
        if tensors is targets:
            continue
        for i, t in enumerate(tensors):
            j = at.get(id(t))
            if j is not None and j != i:
                return True
    return False


def _element(bound, plan, i):
    """The arguments of a foreach op's element i, for its per-tensor op:
    (args, kwargs) from `bound`, the op's arguments in `plan`'s order."""
    e_args, e_kwargs = [], {}
    for v, (_, kind, pname, kw_only) in zip(bound, plan):
        if v is _WHOLE:
            continue
        e = v if kind == "one" else v[i]
        if kw_only:
            e_kwargs[pname] = e
        else:
            e_args.append(e)
    return e_args, e_kwargs


_SHAPE_CACHE_LIMIT = 1 << 16
_Tensor = torch.Tensor


def _signature(a):
    """What a meta kernel's results depend on, hashable."""
    if isinstance(a, _Tensor):
        return (a.dtype, a.shape, a.stride(), a.storage_offset())
    t = type(a)
    if t is list or t is tuple:
        return (t, *map(_signature, a))
    return (t, a)  # the type too: 1 and 1.0 and True hash alike but promote differently


def _shape_key(func, args, kwargs):
    """The shape cache's key for an op on these arguments, or None when one is unhashable."""
    try:
        key = (func, *map(_signature, args), *[(k, _signature(v)) for k, v in kwargs.items()]) if kwargs else \
            (func, *map(_signature, args))
        hash(key)
        return key
    except TypeError:
        return None


def _recipe(out, args):
    """How to rebuild `out` (meta results) without the kernel: per result,
    the index of the argument it is (in-place ops return their argument), its
    metadata, or None for a None result. None when a result is another value."""
    results = out if type(out) in (tuple, list) else (out,)
    parts = []
    for o in results:
        if o is None:  # an optional result not asked for (convolution_backward's grad_input)
            parts.append(None)
            continue
        if not isinstance(o, _Tensor):
            return None
        same = next((i for i, a in enumerate(args) if a is o), None)
        parts.append(same if same is not None else (o.shape, o.stride(), o.storage_offset(), o.dtype))
    fresh = None
    if type(out) is _Tensor and type(parts[0]) is tuple and out.dtype in DTYPE_CODE:
        fresh = _Fresh(*parts[0])
    return (type(out), parts, fresh)


def _valued(x):
    """`x` with LazyTensors (live mode's kernel arguments) replaced by their meta values."""
    t = type(x)
    if t is LazyTensor:
        return x._genie_value
    if t is list or t is tuple:
        return t(_valued(i) for i in x)
    return x


class _Fresh:
    """Live mode: an op's one new tensor result as the shape cache knows it,
    for a LazyTensor whose meta value is not made (LazyTensor._unmade);
    `words`: its record's words from the dtype to the offset."""
    __slots__ = ("shape", "stride", "offset", "dtype", "words")

    def __init__(self, shape, stride, offset, dtype):
        self.shape = shape
        self.stride = stride
        self.offset = offset
        self.dtype = dtype
        self.words = (DTYPE_CODE[dtype], len(shape), *shape, *stride, offset)


def _from_recipe(recipe, args):
    kind, parts, _ = recipe
    results = [_valued(args[p]) if type(p) is int else None if p is None else meta_value(*p) for p in parts]
    if kind is tuple:
        return tuple(results)
    if kind is list:
        return results
    return results[0]


def _has_scalar(out):
    if out is None or isinstance(out, torch.Tensor):
        return False
    if isinstance(out, (tuple, list)):
        return any(o is not None and not isinstance(o, torch.Tensor) for o in out)
    return True


def _map_tensors(x, fn):
    """`x` (an argument: tensor, list, tuple) with every tensor replaced by fn(tensor)."""
    if isinstance(x, torch.Tensor):
        return fn(x)
    if isinstance(x, (list, tuple)):
        return type(x)(_map_tensors(i, fn) for i in x)
    if isinstance(x, torch.device) and x.type == "meta":
        return _CPU
    return x


# A LazyTensor argument of a random op drawn locally, in its recipe: a fresh
# CPU tensor of this metadata (`_HOST`, shape, stride, dtype).
_HOST = object()


def _host_spec(t):
    return (_HOST, tuple(t.shape), tuple(t.stride()), t.dtype) if type(t) is LazyTensor else t


def _from_host_spec(a):
    if type(a) is tuple and a and a[0] is _HOST:
        return _empty_strided(a[1], a[2], dtype=a[3])
    if isinstance(a, (list, tuple)):
        return type(a)(_from_host_spec(i) for i in a)
    return a


def _zeros_like_meta(m):
    # `m`: a meta value or a LazyTensor (its metadata only).
    return _empty_strided(m.shape, m.stride(), dtype=m.dtype).zero_()


def _ones_like_meta(m):
    return _empty_strided(m.shape, m.stride(), dtype=m.dtype).fill_(1)


def _to_meta(o):
    return _empty_strided(o.shape, o.stride(), dtype=o.dtype, device=_META)


class RemoteSession(Session):
    """Live mode (`genie run PROGRAM`): LazyTensors hold meta tensors, shapes
    come from meta kernels, and each segment runs on a runtime when it closes;
    only what is materialized comes back."""

    remote = True

    def __init__(self, channel):
        super().__init__(channel, "inputs")
        self.record_random = False  # random ops either run here (see _random_locally) or draw remotely
        self.drawn = None  # while templates prove a call: input id -> the recipe of its local draw
        self.exec_device = _META
        self.released = []  # value ids whose LazyTensors are gone, sent with the next segment
        # Open record words (about 30 per op) after which ops are sent ahead
        # (see send_ahead); GENIE_PART_WORDS=0 keeps every segment whole.
        self.part_words = int(os.environ.get("GENIE_PART_WORDS", "2048"))
        self.hold_parts = False  # see flush
        self._quiet = 0
        self.parts_sent = 0  # PART frames sent (see materialize)
        # The program's last torch.manual_seed, not sent yet (see seed_runtime).
        self.seed_pending = None
        self._mat_parts = 0  # parts_sent at the last materialization
        self._parts = []  # (index, words, run_made) of the PARTs sent since, or None (see _sent_part)
        self._parts_bytes = 0
        self._shapes = {}   # (op, argument signatures) -> how to make its meta results (see _recipe)
        self._no_meta = set()  # ops whose meta kernel is missing in this torch

    def add_input(self, cpu_value, kind, constant=False):
        if cpu_value.dtype not in DTYPE_CODE:
            raise CaptureError(f"genie: tensors of dtype {cpu_value.dtype} cannot be moved to remote_accelerator")
        value = cpu_value.detach().contiguous()
        vid = self._new_id()
        payload = self._constant_payload(value) if constant else self._send_payload(value, _payload_frame(kind))
        w = [codes.TAG_INPUT, vid, kind]
        self._meta_words(value, vid, w)
        w.append(payload)
        self.words.extend(w)
        return LazyTensor._unmade(value.shape, value.stride(), 0, value.dtype, vid, vid)

    def upload(self, value):
        """`value.to("remote_accelerator")` of a plain CPU tensor (no
        autograd, not a Parameter; see device.py): add_input's records and
        payload frame, inline (a training step's batch: nine of them), for a
        small contiguous tensor of offset 0 and a known dtype; None for others."""
        dtype = DTYPE_CODE.get(value.dtype)
        if dtype is None or value.storage_offset() or not value.is_contiguous() or value.is_conj() or \
                value.is_neg():
            return None
        total = value.numel() * value.element_size()
        if total > _SMALL_UPLOAD:
            return None
        pid = self._next_payload
        self._next_payload = pid + 1
        vid = self._next_id
        self._next_id = vid + 1
        self.channel.defer(_payload_frame(codes.INPUT_TENSOR), _PAYLOAD_HEAD.pack(pid, total, 0),
                           ctypes.string_at(value.data_ptr(), total) if total else b"")
        shape = value.shape
        stride = value.stride()
        w = self.words
        w += (codes.TAG_INPUT, vid, codes.INPUT_TENSOR, dtype, len(shape))
        w += shape
        w += stride
        w += (0, vid, pid)
        r = _make_wrapper(LazyTensor, shape, strides=stride, storage_offset=0, dtype=value.dtype, device=_META)
        r._genie_id = vid
        r._genie_storage = vid
        return r

    def _kernel(self, func, args, kwargs, fresh=False):
        """The op's results as meta tensors: from the shape cache when the op
        ran before on arguments of the same metadata (meta kernels, many of
        them Python decompositions on torch 1.13, cost up to hundreds of
        microseconds), else from its meta kernel. `args`, `kwargs` may hold
        LazyTensors (their metadata is their meta values'). With `fresh`, a
        single new tensor result the cache knows comes as a _Fresh."""
        key = _shape_key(func, args, kwargs)
        recipe = self._shapes.get(key) if key is not None else None
        if recipe is not None:
            if fresh and recipe[2] is not None:
                return recipe[2]
            return _from_recipe(recipe, args)
        return self._uncached(func, args, kwargs, key)

    def _uncached(self, func, args, kwargs, key):
        """_kernel on a miss of the shape cache (`key`, None when unhashable): runs the meta kernel."""
        args = [_valued(a) for a in args]
        kwargs = {k: _valued(v) for k, v in kwargs.items()}
        if func in _CPU_SHAPES:
            raise NotImplementedError(f"the meta kernel of {func} gives other shapes than the CPU kernel")
        if func in self._no_meta:
            raise NotImplementedError(f"{func} has no meta kernel in this torch")
        try:
            out = self._in_kernel(func, args, _arange_kwargs(args, kwargs) if func in _ARANGE else kwargs)
        except NotImplementedError:
            # Asked again, the missing kernel raises a C++ error again, and
            # torch symbolizes a backtrace for every one: about 15 ms (an
            # embedding bag's backward with new offsets, at every step).
            self._no_meta.add(func)
            raise
        self._remember(key, out, args)
        return out

    def _remember(self, key, out, args):
        if key is not None and len(self._shapes) < _SHAPE_CACHE_LIMIT:
            recipe = _recipe(out, args)
            if recipe is not None:
                self._shapes[key] = recipe

    def _in_kernel(self, func, args, kwargs):
        outer = self.in_kernel
        self.in_kernel = True
        try:
            return func(*args, **kwargs)
        finally:
            self.in_kernel = outer

    def replaced(self, old_id):
        """An in-place op gave a LazyTensor a new id; the old one is unused from now on."""
        self.released.append(old_id)

    def materialize(self, lazy, how):
        vid = lazy._genie_id
        self.words.extend((codes.TAG_MATERIALIZE, vid, how, codes.NO_PAYLOAD))
        # A value is pushed only from a part's reply (a training loop's, not
        # a decode loop's, which sends none): no read is tried otherwise.
        parts, self._mat_parts = self._mat_parts, self.parts_sent
        early = self.channel.take_early(vid) if parts != self.parts_sent else None
        kept, self._parts, self._parts_bytes = self._parts, [], 0
        if early is not None and self._unwritten(vid, early[0], kept) and self._answered(vid):
            return self._host_tensor(early[1])
        tensors, _ = self.flush()
        return self._host_tensor(tensors[0])

    def _sent_part(self, packed):
        # Kept until the next materialization, for _unwritten; a step's
        # parts, unless they grow past _KEPT_PART_BYTES (then none is).
        if self._parts is not None:
            self._parts.append((self.parts_sent, packed, self.run_made))
            self._parts_bytes += len(packed)
            if self._parts_bytes > _KEPT_PART_BYTES:
                self._parts = None

    def _unwritten(self, vid, seen, kept):
        """Whether the parts sent since the last materialization that the
        genie process had not read when it pushed `vid` (it had read `seen`
        PART frames) make no value on its storage (see _reads_only): genie
        checked those it had read."""
        if kept is None:
            return seen == self.parts_sent
        for index, packed, run_made in kept:
            if index >= seen and (vid in run_made or not _reads_only(packed, vid, -1)):
                return False
        return True

    def _answered(self, vid):
        """Sends the open segment, which materializes `vid` last, as an
        ANSWERED frame: its value came in an EARLY frame, which the genie
        process sent when no op it had read could have changed it (it had
        read every PART sent since: see materialize). Unless a record of
        this segment makes a value on `vid`'s storage (a view of it, a write
        to it or to a view; _reads_only): then False, and nothing is sent."""
        mat = len(self.words) - 3  # the MAT step's value id word
        self._add_released()
        sent = self._send_segment(codes.FRAME_ANSWERED, (vid, mat))
        if sent:
            # As a REPLY of status 3 would (see flush).
            self.channel.answered_early, self.channel.runs_ahead = True, False
            if self.hold_parts:
                self._quiet += 1
                self.hold_parts = self._quiet < _QUIET_REPLIES
        return sent

    def _host_tensor(self, fetched):
        dtype, sizes, data = fetched
        if not data:
            return _empty(sizes, dtype=_DTYPES[dtype])
        return _frombuffer(data, dtype=_DTYPES[dtype]).reshape(sizes)

    def flush(self):
        """Sends the open segment and waits for the runtime's answer."""
        self._add_released()
        super().flush()
        reply = self.channel.recv_reply()
        # While the runtime runs each step ahead (a decode loop's cycles,
        # replayer/live.cc), a part would only cost a write and a wake-up of
        # the genie process: the step goes up whole, at its materialization.
        # Parts come back after _QUIET_REPLIES answers without the offer (a
        # step made of other runs than the offered ones needs two to be
        # offered again).
        if self.channel.runs_ahead:
            self.hold_parts, self._quiet = True, 0
        elif self.hold_parts:
            self._quiet += 1
            self.hold_parts = self._quiet < _QUIET_REPLIES
        return reply

    def send_ahead(self, at_least=None):
        """Sends the open ops ahead as a PART once `part_words` record words
        (or `at_least`, when fewer) are open, so that the runtime executes
        them while the program's Python goes on; never inside a meta kernel,
        nor in the middle of a template's proving capture, which needs its
        records whole."""
        if not self.part_words or self.hold_parts:
            return
        least = self.part_words if at_least is None else min(at_least, self.part_words)
        if len(self.words) + self.weight >= least and not self.in_kernel and (self.templates is None or not self.templates.capturing):
            self.send_part()

    def send_part(self):
        """Sends the open segment's ops ahead as a PART: the runtime executes
        them while the program goes on; the segment's materialization answers
        for them (an error in a part is raised there)."""
        self._add_released()
        self._send_segment(codes.FRAME_PART)
        self.parts_sent += 1

    def _add_released(self):
        released, self.released = self.released, []
        if released:
            self.words.append(codes.TAG_RELEASE)
            self.words.append(len(released))
            self.words.extend(released)

    def close(self):
        if self.closed:
            return
        self.closed = True
        try:
            if len(self.words):
                self.flush()
            self.channel.send(codes.FRAME_END)
            self.channel.close()
        except (OSError, RuntimeError):
            pass  # the genie process is gone; it reports why itself

    # ---- ops that cannot run on meta tensors ----------------------------

    def _random_locally(self, func, info, args, kwargs):
        """Draws here, on CPU, and sends the values up as an input. While a
        template is being proven, the draw's recipe is kept by the input's
        id (`drawn`): a replay draws again (see draw)."""
        recipe = (func, tuple(_map_tensors(a, _host_spec) for a in args),
                  tuple((k, _map_tensors(v, _host_spec)) for k, v in kwargs.items()))
        out = self.draw(recipe)
        target = args[0] if args and info.returns and info.returns[0] is not None else None
        lifted = self.add_input(out, codes.INPUT_CONSTANT if type(target) is LazyTensor else codes.INPUT_TENSOR)
        if self.drawn is not None and self.templates.capturing:
            self.drawn[lifted._genie_id] = recipe
        if type(target) is LazyTensor:
            torch.ops.aten.copy_.default(target, lifted)
            return target
        return lifted

    def draw(self, recipe):
        """Runs a random op's recipe (see _random_locally) on fresh CPU
        tensors, with the program's generator: its values."""
        func, args, kwargs = recipe
        return self._in_kernel(func, [_from_host_spec(a) for a in args],
                               {k: _from_host_spec(v) for k, v in kwargs})

    def _without_meta(self, func, cpu_args, cpu_kwargs):
        """Result metadata for an op whose meta kernel is missing: from a run on
        zeros of the same shapes, or None when its result shapes depend on
        values (then the op runs on the real values, see _run_locally)."""
        if func._schema.name in _DATA_DEPENDENT:
            return None
        if func._schema.name not in _RANDOM_OPS:
            zargs = [_map_tensors(a, _zeros_like_meta) for a in cpu_args]
            zkwargs = {k: _map_tensors(v, _zeros_like_meta) for k, v in cpu_kwargs.items()}
            out = self._in_kernel(func, zargs, zkwargs)
        else:
            # A random op the runtime draws (`torch.multinomial(probs, 1)`):
            # run on ones, which every distribution takes (zeros are no
            # probabilities to sample from), and with the program's generator
            # put back after, as a draw on a device leaves it.
            zargs = [_map_tensors(a, _ones_like_meta) for a in cpu_args]
            zkwargs = {k: _map_tensors(v, _ones_like_meta) for k, v in cpu_kwargs.items()}
            state = torch.get_rng_state()
            try:
                out = self._in_kernel(func, zargs, zkwargs)
            finally:
                torch.set_rng_state(state)
        if _has_scalar(out):
            return None
        out = _map_tensors(out, _to_meta)
        # Shapes from zeros are cached like a meta kernel's: a run on zeros
        # (an embedding bag's backward over a whole table) can take milliseconds.
        self._remember(_shape_key(func, cpu_args, cpu_kwargs), out, cpu_args)
        return out

    def _run_locally(self, func, info, args, kwargs):
        """Runs the op in the program's process on the real values of its
        arguments (one round trip to fetch them); its tensor results go up as
        inputs. For ops whose results are Python values or have shapes that
        depend on values."""
        lazies = []

        def collect(t):
            if type(t) is LazyTensor:
                lazies.append(t)
            return t
        for a in args:
            _map_tensors(a, collect)
        for v in kwargs.values():
            _map_tensors(v, collect)
        for t in lazies:
            self.words.extend((codes.TAG_MATERIALIZE, t._genie_id, codes.HOW_CPU, codes.NO_PAYLOAD))
        fetched = self.flush()[0] if lazies else []
        values = {id(t): self._host_tensor(f).clone() for t, f in zip(lazies, fetched)}

        def host(t):
            return values[id(t)] if type(t) is LazyTensor else t
        out = self._in_kernel(func, [_map_tensors(a, host) for a in args],
                           {k: _map_tensors(v, host) for k, v in kwargs.items()})
        results = out if isinstance(out, (tuple, list)) else [out]
        lifted = []
        for i, o in enumerate(results):
            if not isinstance(o, torch.Tensor):
                lifted.append(o)
                continue
            alias = info.returns[i] if i < len(info.returns) else (info.returns[0] if len(info.returns) == 1 else None)
            if alias is not None:
                pos, name, is_write = alias
                base = args[pos] if pos < len(args) else kwargs.get(name)
                if type(base) is LazyTensor:
                    if not is_write:
                        raise CaptureError(f"genie: {info.name} returns a view and has no meta kernel in this torch; "
                                           "it cannot run remotely")
                    torch.ops.aten.copy_.default(base, self.add_input(o, codes.INPUT_CONSTANT))
                    lifted.append(base)
                    continue
            lifted.append(self.add_input(o, codes.INPUT_TENSOR))
        if isinstance(out, tuple):
            return tuple(lifted)
        if isinstance(out, list):
            return lifted
        return lifted[0]
