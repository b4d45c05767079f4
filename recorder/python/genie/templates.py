"""Module-call templates: proven captures replayed without per-op capture.

Capturing an op costs tens of microseconds of Python (dispatch, shapes,
encoding, the result's wrapper), far more than the op itself. Most of a
program's ops come from module calls that repeat: a layer norm or an MLP with
the same shapes, a whole decoder step whose KV cache grows by one position.
Once a module call's capture is proven, later calls that pass its guards
append a copy of its records instead of running the module's Python code,
with the value ids rebased, and build the results directly: in record mode by
running the recorded ops on the CPU values, in live mode from the recorded
result metadata. The records are the ones a capture would have written.

Proof. Calls are grouped into families: same module, `training` flag, phase
and module path at the call, and per argument its type (and value, for
non-integers), and for tensors dtype, rank and which earlier argument it
shares storage with. The integers of a call (argument sizes, strides, storage
offsets, int arguments) may differ within a family.
- Two captures with the same integers and identical records prove an exact
  template for those integers.
- Two captures with different integers give a candidate: with T the first
  integer that differs, every integer and record word that differs must be
  a*T + b with integer a and b (a KV cache of length T: sizes T, strides
  16*T, a view of 4*(T+1)). A third capture whose records are exactly what
  the candidate predicts for its T proves it; the template then serves every
  call whose integers fit the same lines, except that its 16th, 32nd, 64th,
  ... (then every 256th) call is captured and checked against it (a
  mismatch drops it).
Calls of a family seen only once are never analysed.

Arguments may be tensors, Python scalars, tuples, lists, dicts and plain
Python objects (a KV cache object such as transformers' DynamicCache). Lists,
dicts and objects are walked, objects through their attributes: everything
in them but tensors is part of the family guard, by value (integers too);
a tensor the call puts in place of another there (a cache layer's
`self.keys = torch.cat([self.keys, k], -2)`) is put there by a replay too.
A call that changes them otherwise (a counter attribute, an appended item)
is never templated.

Guards at replay, besides the family's: the integers (equal, or on the
template's lines); grad mode off and the call not inside backward() or an
optimizer step (a template holds no autograd graph); every parameter and
buffer of the module still the object it was when the template was made
(reassigning one or `.to(dtype)` captures again; in-place updates give the
tensor a new value id, which the replay reads); and no attribute of any
module set since then (a submodule replaced, `eval()`).

A call is never templated when its capture shows something a replay could
not reproduce: a materialization or new input inside it, a random op, an op
result the program sees as a Python value, an in-place change to an argument,
parameter or buffer, a module attribute set during the call (Python state
such as a cache kept on the module), a tensor read that is neither an
argument nor a parameter or buffer of the module, a result of another type
than tensors, tuples, lists and Python scalars, or forward hooks other than
genie's own. A template cannot see control flow that depends on something
other than its guards (a global flag, the time); the proving captures stand
in for that. A template with a T cannot see a branch on T that the program
first takes after the proof (a cache rebuilt past some length): the calls
before the next check replay the old branch. GENIE_TEMPLATES=exact keeps
only exact templates; GENIE_TEMPLATES=0 turns templates off.
"""
import enum
import os
import weakref

import torch

from . import codes
from .lazy import LazyTensor

ENABLED = os.environ.get("GENIE_TEMPLATES", "1") != "0"
SYMBOLIC = os.environ.get("GENIE_TEMPLATES", "1") != "exact"  # templates with a T (see the module's doc)
_FAMILY_LIMIT = 1 << 14
_EXACT_LIMIT = 64     # exact templates per family
_MISMATCH_LIMIT = 4   # captures of one family that keep contradicting each other: give up on it
_RECHECK = 16         # a template with a T is checked against a capture after this many calls,
_RECHECK_MAX = 256    # then after twice as many each time, up to this many
_STATE_LIMIT = 4096   # containers and objects walked in one call's arguments
_STATE_DEPTH = 8      # how deep they may nest

_DTYPES = [getattr(torch, name) for name in codes.DTYPE_NAMES]
_META = torch.device("meta")
_empty_strided = torch.empty_strided
_empty = torch.empty
_MISS = object()
_generation = [0]  # bumped by every attribute set on any module (see install)


def install():
    """Counts attribute changes of modules: a template made before one (a
    submodule replaced, a cache attribute set) is not replayed after it."""
    setattr_, delattr_ = torch.nn.Module.__setattr__, torch.nn.Module.__delattr__

    def module_setattr(self, name, value):
        _generation[0] += 1
        setattr_(self, name, value)

    def module_delattr(self, name):
        _generation[0] += 1
        delattr_(self, name)
    torch.nn.Module.__setattr__ = module_setattr
    torch.nn.Module.__delattr__ = module_delattr


class _Ineligible(Exception):
    """A capture that a template could not reproduce."""


class _Ref:
    """A tensor in a recorded op's arguments: its slot in the replay's value table."""
    __slots__ = ("slot",)

    def __init__(self, slot):
        self.slot = slot


class _Word:
    """An integer argument that varies with T: the position of its record word."""
    __slots__ = ("pos",)

    def __init__(self, pos):
        self.pos = pos


def _resolve(x, env, w):
    t = type(x)
    if t is _Ref:
        return env[x.slot]
    if t is _Word:
        return w[x.pos]
    if t is list or t is tuple:
        return t(_resolve(i, env, w) for i in x)
    return x


def _needs_resolve(x):
    t = type(x)
    if t is _Ref or t is _Word:
        return True
    if t is list or t is tuple:
        return any(_needs_resolve(i) for i in x)
    return False


class _Capture:
    """One analysed capture of a family member. Record words that hold value
    ids, storage ids and float indices are masked in `masked` and listed in
    `internal` (position, id relative to the call's first id), `ext_ids` and
    `ext_storage` (position, external: an argument's index, or the argument
    count plus a source's index) and `float_pos` (position, index into
    `floats`)."""
    __slots__ = ("ints", "words", "masked", "rest", "internal", "ext_ids", "ext_storage", "float_pos", "floats",
                 "n_ids", "sources", "result", "writes", "dead", "phase_after", "sid_after", "raw")


class Template:
    """A proven capture: what a replay copies and patches. `t_index` is None
    for an exact template; else T = ints[t_index], `guards` (index, a, b) and
    `affine` (record position, a, b) give every integer and word as a*T + b."""
    __slots__ = ("words", "internal", "ext_ids", "ext_storage", "float_pos", "floats", "n_ids", "sources",
                 "generation", "program", "result", "writes", "dead", "phase_after", "sid_after", "t_index", "guards", "affine",
                 "masked", "rest", "calls", "next_check")

    def predicts(self, cap):
        """Whether capture `cap` recorded what this template gives for its T."""
        return _predicts(self.masked, self.rest, self.t_index, self.affine, cap)

    def fits(self, ints):
        return _on_lines(ints, self.t_index, self.guards)


class _Family:
    __slots__ = ("module", "seen", "exact", "symbolic", "candidate", "last", "mismatches", "failed")

    def __init__(self, module):
        self.module = weakref.ref(module)
        self.seen = 0
        self.exact = {}        # ints -> Template
        self.symbolic = None   # Template with a T
        self.candidate = None  # (capture, t_index, guards, affine) awaiting its proof
        self.last = []         # the latest captures
        self.mismatches = 0
        self.failed = False

    def forget(self):
        self.exact = {}
        self.symbolic = None
        self.candidate = None
        self.last = []


class Templates:
    """The template cache of one capture session."""

    def __init__(self, session):
        self.session = session
        self.families = {}
        self.never = weakref.WeakSet()  # modules with Python side effects or hooks
        self.replays = 0       # module calls replayed
        self.replayed_ops = 0  # ops they held
        self.capturing = 0     # proving captures in progress (nested calls)

    # ---- the call -------------------------------------------------------

    def call(self, module, plain, args, kwargs):
        """Runs `module(*args, **kwargs)`: replayed from a template, or through
        `plain` (the module's own call), captured to prove a template."""
        if module in self.never:
            return plain(module, args, kwargs)
        s = self.session
        lazies = []
        ints = []
        slots = []
        try:
            sig = _signature(args, kwargs, lazies, ints, slots)
            key = (id(module), module.training, s.phase, s.module_sid, *sig)
        except _Ineligible:
            return plain(module, args, kwargs)
        fam = self.families.get(key)
        if fam is None or fam.module() is not module:  # new, or the id of a module since collected
            if len(self.families) >= _FAMILY_LIMIT:
                return plain(module, args, kwargs)
            fam = self.families[key] = _Family(module)
        ints = tuple(ints)
        tpl = fam.exact.get(ints) if fam.exact else None
        if tpl is None and fam.symbolic is not None and fam.symbolic.fits(ints):
            tpl = fam.symbolic
            tpl.calls += 1
            if tpl.calls == tpl.next_check:
                tpl.next_check += min(tpl.next_check, _RECHECK_MAX)
                # Lines through three captures cannot see a branch on T that
                # the program takes later (a cache that is rebuilt past some
                # length): such a call is captured, and a template that
                # mispredicts it is dropped.
                return self._capture(fam, module, plain, args, kwargs, lazies, ints, sig, slots, check=tpl)
        if tpl is not None:
            out = self._replay(tpl, lazies, ints, args, kwargs)
            if out is not _MISS:
                self.replays += 1
                self.replayed_ops += len(tpl.program)
                return out
            fam.forget()  # a parameter replaced or a module attribute set since it was made
        if fam.failed:
            return plain(module, args, kwargs)
        fam.seen += 1
        if fam.seen < 2:
            return plain(module, args, kwargs)
        return self._capture(fam, module, plain, args, kwargs, lazies, ints, sig, slots)

    # ---- proving ----------------------------------------------------------

    def _capture(self, fam, module, plain, args, kwargs, lazies, ints, sig, slots, check=None):
        s = self.session
        modules = list(module.modules())
        if any(m._forward_hooks or m._forward_pre_hooks for m in modules) or \
                len(torch.nn.modules.module._global_forward_hooks) != 1:
            self.never.add(module)
            return plain(module, args, kwargs)
        sources = _sources(modules)
        generation = _generation[0]
        exts = lazies + [t for _, _, t in sources]
        ids_before = [t._genie_id for t in exts]
        words, floats = s.words, s.floats
        start_word, start_float, start_id = len(words), len(floats), s._next_id
        self.capturing += 1
        try:
            out = plain(module, args, kwargs)
        finally:
            self.capturing -= 1
        if _generation[0] != generation:
            self.never.add(module)
            return out
        try:
            if s.words is not words or s.floats is not floats:
                raise _Ineligible("a materialization inside the call")
            if [t._genie_id for t in exts] != ids_before:
                raise _Ineligible("an in-place change to an argument, parameter or buffer")
            writes = _writes(args, kwargs, sig, slots) if slots else ()
            cap = self._analyse(ints, words[start_word:], floats[start_float:], start_float, start_id,
                                s._next_id - start_id, exts, sources, out, writes)
        except _Ineligible:
            fam.failed = True
            fam.forget()
            return out
        if check is None:
            self._learn(fam, cap)
        elif not check.predicts(cap):
            fam.symbolic = None
            fam.last = [cap]
            self._mismatch(fam)
        return out

    def _analyse(self, ints, words, floats, start_float, start_id, n_ids, exts, sources, out, writes):
        ext_id, ext_storage = {}, {}
        for i, t in enumerate(exts):
            ext_id.setdefault(t._genie_id, i)
            ext_storage.setdefault(t._genie_storage, i)
        raw = (words, floats, start_float, start_id, len(exts), ext_id, ext_storage)
        internal, e_ids, e_storage, float_pos, _, out_pos = self._parse(raw, ())
        cap = _Capture()
        cap.ints = ints
        cap.words = words
        cap.raw = raw
        cap.internal = internal
        cap.ext_ids = e_ids
        cap.ext_storage = e_storage
        cap.float_pos = float_pos
        cap.floats = tuple(floats)
        cap.n_ids = n_ids
        cap.sources = sources
        result_ids = set()
        cap.result = _result(out, start_id, exts, out_pos, result_ids)
        cap.writes = tuple((path, _result(t, start_id, exts, out_pos, result_ids)) for path, t in writes)
        cap.dead = [r for r in range(n_ids) if r not in result_ids]
        cap.phase_after = self.session.phase
        cap.sid_after = self.session.module_sid
        masked = list(words)
        for p, _ in internal + e_ids + e_storage + float_pos:
            masked[p] = 0
        cap.masked = tuple(masked)
        cap.rest = (tuple(internal), tuple(e_ids), tuple(e_storage), tuple(float_pos), cap.floats, n_ids, cap.result,
                    cap.phase_after, cap.sid_after, tuple((id(d), name, id(t)) for d, name, t in sources), cap.writes)
        return cap

    def _parse(self, raw, varying):
        """Walks a capture's records: the id, storage and float positions to
        patch, the ops as a program (integers at `varying` positions read from
        the patched words), and each internal id's output record position."""
        words, floats, start_float, start_id, n_ext, ext_id, ext_storage = raw
        s = self.session
        funcs = {info.sid: func for func, info in s._infos.items()}
        strings = None
        internal, e_ids, e_storage, float_pos = [], [], [], []
        program = []
        out_pos = {}

        def slot_of_id(pos):
            v = words[pos]
            if v >= start_id:
                internal.append((pos, v - start_id))
                return n_ext + v - start_id
            e = ext_id.get(v)
            if e is None:
                raise _Ineligible("a tensor read that is not an argument, parameter or buffer")
            e_ids.append((pos, e))
            return e

        def string(sid):
            nonlocal strings
            if strings is None:
                strings = list(s._strings)
            return strings[sid]

        def arg(i):
            kind = words[i]
            if kind == codes.ARG_TENSOR:
                return i + 2, _Ref(slot_of_id(i + 1))
            if kind == codes.ARG_INT:
                return i + 2, _Word(i + 1) if i + 1 in varying else words[i + 1]
            if kind == codes.ARG_FLOAT:
                rel = words[i + 1] - start_float
                float_pos.append((i + 1, rel))
                return i + 2, floats[rel]
            if kind == codes.ARG_BOOL:
                return i + 2, bool(words[i + 1])
            if kind == codes.ARG_NONE:
                return i + 1, None
            if kind == codes.ARG_LIST:
                items = []
                i, n = i + 2, words[i + 1]
                for _ in range(n):
                    i, v = arg(i)
                    items.append(v)
                return i, items
            if kind == codes.ARG_DTYPE:
                return i + 2, _DTYPES[words[i + 1]]
            if kind == codes.ARG_DEVICE:
                name = string(words[i + 1])
                return i + 2, s.exec_device if name.startswith("remote_accelerator") else torch.device(name)
            if kind in (codes.ARG_LAYOUT, codes.ARG_MEMORY_FORMAT):
                return i + 2, getattr(torch, string(words[i + 1]))
            if kind == codes.ARG_STRING:
                return i + 2, string(words[i + 1])
            raise _Ineligible(f"argument kind {kind}")

        i, n = 0, len(words)
        while i < n:
            if words[i] != codes.TAG_OP:
                raise _Ineligible("a step other than an op inside the call")
            func = funcs[words[i + 1]]
            if words[i + 4] & codes.FLAG_RANDOM:
                raise _Ineligible("a random op")
            nargs = words[i + 5]
            i += 6
            op_args = []
            for _ in range(nargs):
                i, v = arg(i)
                op_args.append(v)
            op_kwargs = {}
            nkw = words[i]
            i += 1
            for _ in range(nkw):
                name = string(words[i])
                i, v = arg(i + 1)
                op_kwargs[name] = v
            count = words[i]
            i += 1
            outs = []
            for _ in range(count):
                if words[i] != 1:
                    raise _Ineligible("an op result the program sees as a Python value")
                slot = slot_of_id(i + 1)
                outs.append(slot)
                out_pos[slot - n_ext] = i + 1
                storage = i + 5 + 2 * words[i + 3]
                v = words[storage]
                if v >= start_id:
                    internal.append((storage, v - start_id))
                else:
                    e = ext_storage.get(v)
                    if e is None:
                        raise _Ineligible("a view of a tensor that is not an argument, parameter or buffer")
                    e_storage.append((storage, e))
                if words[storage + 1] != codes.NO_PAYLOAD:
                    raise _Ineligible("an op result with recorded values")
                i = storage + 2
            fast = [(k, a.slot) for k, a in enumerate(op_args) if type(a) is _Ref]
            slow = [(k, a) for k, a in enumerate(op_args) if type(a) is not _Ref and _needs_resolve(a)]
            kw_slow = any(_needs_resolve(v) for v in op_kwargs.values())
            # The OpOverload's own callable: its Python __call__ only forwards to it.
            program.append((getattr(func, "_op", func), tuple(op_args), fast, slow, op_kwargs or None, kw_slow, outs,
                            outs[0] if len(outs) == 1 else None))
        return internal, e_ids, e_storage, float_pos, program, out_pos

    def _learn(self, fam, cap):
        """Proves a template from this capture and the family's earlier ones."""
        for prev in fam.last:
            if prev.ints == cap.ints:
                if prev.masked == cap.masked and prev.rest == cap.rest:
                    if len(fam.exact) < _EXACT_LIMIT:
                        fam.exact[cap.ints] = self._template(cap, None, (), ())
                    fam.last = [cap]
                    return
                self._mismatch(fam)
        c = fam.candidate
        if c is not None:
            base, t_index, guards, affine = c
            if len(cap.ints) == len(base.ints) and _on_lines(cap.ints, t_index, guards):
                if _predicts(base.masked, base.rest, t_index, affine, cap):
                    fam.symbolic = self._template(base, t_index, guards, affine)
                    fam.candidate = None
                    fam.last = [cap]
                    return
                self._mismatch(fam)
        if SYMBOLIC and fam.last and fam.last[-1].ints != cap.ints:
            fam.candidate = _fit(fam.last[-1], cap)
        fam.last = (fam.last + [cap])[-2:]

    def _mismatch(self, fam):
        fam.mismatches += 1
        if fam.mismatches >= _MISMATCH_LIMIT:
            fam.failed = True
            fam.forget()

    def _template(self, cap, t_index, guards, affine):
        tpl = Template()
        tpl.words = list(cap.words)
        tpl.internal = cap.internal
        tpl.ext_ids = cap.ext_ids
        tpl.ext_storage = cap.ext_storage
        tpl.float_pos = cap.float_pos
        tpl.floats = cap.floats
        tpl.n_ids = cap.n_ids
        tpl.sources = cap.sources
        tpl.generation = _generation[0]
        tpl.program = self._parse(cap.raw, {p for p, _, _ in affine})[4]
        tpl.result = cap.result
        tpl.writes = cap.writes
        tpl.dead = cap.dead
        tpl.phase_after = cap.phase_after
        tpl.sid_after = cap.sid_after
        tpl.t_index = t_index
        tpl.guards = guards
        tpl.affine = affine
        tpl.masked = cap.masked
        tpl.rest = cap.rest
        tpl.calls = 0
        tpl.next_check = _RECHECK
        return tpl

    # ---- replay -----------------------------------------------------------

    def _replay(self, tpl, lazies, ints, args, kwargs):
        s = self.session
        if tpl.generation != _generation[0]:
            return _MISS
        exts = lazies
        if tpl.sources:
            exts = list(lazies)
            for d, name, t in tpl.sources:
                if d.get(name) is not t:
                    return _MISS
                exts.append(t)
        base = s._next_id
        s._next_id = base + tpl.n_ids
        w = tpl.words.copy()
        for p, r in tpl.internal:
            w[p] = base + r
        for p, e in tpl.ext_ids:
            w[p] = exts[e]._genie_id
        for p, e in tpl.ext_storage:
            w[p] = exts[e]._genie_storage
        if tpl.affine:
            t = ints[tpl.t_index]
            for p, a, b in tpl.affine:
                w[p] = a * t + b
        if tpl.float_pos:
            f0 = len(s.floats)
            for p, k in tpl.float_pos:
                w[p] = f0 + k
            s.floats.extend(tpl.floats)
        s.words += w
        if s.remote:
            values = None
            if tpl.dead:
                s.released.extend([base + r for r in tpl.dead])
        else:
            values = [t._genie_value for t in exts]
            values.extend([None] * tpl.n_ids)
            _run(tpl.program, values, w)
        s.phase = tpl.phase_after
        s.module_sid = tpl.sid_after
        made = {}
        out = _build(tpl.result, base, exts, values, w, made)
        for path, spec in tpl.writes:
            _assign(args, kwargs, path, _build(spec, base, exts, values, w, made))
        return out


def _on_lines(ints, t_index, guards):
    t = ints[t_index]
    for i, a, b in guards:
        if ints[i] != a * t + b:
            return False
    return True


def _predicts(masked, rest, t_index, affine, cap):
    """Whether `cap` recorded the words (`masked`, `rest`) with the lines `affine` at cap's T."""
    if cap.rest != rest or len(cap.masked) != len(masked):
        return False
    predicted = list(masked)
    t = cap.ints[t_index]
    for p, a, b in affine:
        predicted[p] = a * t + b
    return tuple(predicted) == cap.masked


def _fit(a, b):
    """The candidate lines through captures a and b (different integers), or None."""
    if len(a.ints) != len(b.ints) or len(a.masked) != len(b.masked) or a.rest != b.rest:
        return None
    t_index = next(i for i, (x, y) in enumerate(zip(a.ints, b.ints)) if x != y)
    ta, tb = a.ints[t_index], b.ints[t_index]

    def line(x, y):
        if (y - x) % (tb - ta):
            return None
        k = (y - x) // (tb - ta)
        return k, x - k * ta
    guards = []
    for i, (x, y) in enumerate(zip(a.ints, b.ints)):
        ab = line(x, y)
        if ab is None:
            return None
        guards.append((i, *ab))
    affine = []
    for p, (x, y) in enumerate(zip(a.masked, b.masked)):
        if x != y:
            ab = line(x, y)
            if ab is None:
                return None
            affine.append((p, *ab))
    return a, t_index, guards, affine


def _run(program, env, w):
    """Record mode: runs the recorded ops on the CPU values."""
    for func, args, fast, slow, kwargs, kw_slow, outs, single in program:
        a = list(args)
        for k, slot in fast:
            a[k] = env[slot]
        for k, spec in slow:
            a[k] = _resolve(spec, env, w)
        if kwargs is None:
            out = func(*a)
        else:
            out = func(*a, **({k: _resolve(v, env, w) for k, v in kwargs.items()} if kw_slow else kwargs))
        if single is not None:
            env[single] = out
        else:
            for slot, o in zip(outs, out):
                env[slot] = o


# Result specs: ("t", relative id, position of its output record's id word),
# ("e", external index), ("c", constant), (tuple or list, specs).

def _result(out, start_id, exts, out_pos, result_ids):
    t = type(out)
    if t is LazyTensor:
        v = out._genie_id
        if v >= start_id:
            result_ids.add(v - start_id)
            return ("t", v - start_id, out_pos[v - start_id])
        e = next((k for k, x in enumerate(exts) if x is out), None)
        if e is None:
            raise _Ineligible("a result that is a tensor from outside the call")
        return ("e", e)
    if t is tuple or t is list:
        return (t, tuple(_result(o, start_id, exts, out_pos, result_ids) for o in out))
    if out is None or t in (int, float, bool, str):
        return ("c", out)
    raise _Ineligible(f"a result of type {t.__name__}")


def _build(spec, base, exts, values, w, made):
    kind = spec[0]
    if kind == "t":
        rel = spec[1]
        lazy = made.get(rel)
        if lazy is None:
            p = spec[2]  # the id word of: 1, id, dtype, rank, sizes, strides, offset, storage, payload
            rank = w[p + 2]
            shape = tuple(w[p + 3:p + 3 + rank])
            stride = tuple(w[p + 3 + rank:p + 3 + 2 * rank])
            offset = w[p + 3 + 2 * rank]
            if values is None:
                value = _meta(shape, stride, offset, _DTYPES[w[p + 1]])
            else:
                value = values[len(exts) + rel]
            lazy = made[rel] = LazyTensor._wrap(value, shape, stride, offset, base + rel, w[p + 4 + 2 * rank])
        return lazy
    if kind == "e":
        return exts[spec[1]]
    if kind == "c":
        return spec[1]
    return kind(_build(s, base, exts, values, w, made) for s in spec[1])


def _meta(shape, stride, offset, dtype):
    if offset == 0:
        return _empty_strided(shape, stride, dtype=dtype, device=_META)
    extent = 1 + sum((n - 1) * st for n, st in zip(shape, stride)) if all(n > 0 for n in shape) else 0
    return _empty((offset + extent,), dtype=dtype, device=_META).as_strided(shape, stride, offset)


def _signature(args, kwargs, lazies, ints, slots):
    """The family guard of a call's arguments; collects its LazyTensors in
    `lazies` and its integers (tensor sizes, strides, offsets; int arguments)
    in `ints`. Raises _Ineligible for an argument a template cannot bind.

    Lists, dicts and plain Python objects (a KV cache object) are walked, an
    object through its attributes: their non-tensor contents, integers
    included, are part of the guard, and each tensor inside them goes to
    `slots` as (path, tensor, whether the call could replace it there), so a
    capture can see which ones the call replaced (a cache's `update`)."""
    sig = []
    storages = {}
    budget = [_STATE_LIMIT]
    path = []  # the keys leading to the value visited: ("i", index or key) or ("a", attribute)

    def visit(a, held, assignable):
        # held: inside a list, dict or object the call could change; assignable: directly in one.
        t = type(a)
        if t is LazyTensor:
            shape = a.shape
            sig.append((a.dtype, len(shape), storages.setdefault(a._genie_storage, len(lazies))))
            ints.extend(shape)
            ints.extend(a.stride())
            ints.append(a.storage_offset())
            lazies.append(a)
            if held:
                slots.append((tuple(path), a, assignable))
        elif t is int and not held:
            sig.append(int)
            ints.append(a)
        elif t is int or t is float or t is bool or t is str or a is None:
            sig.append((t, a))
        elif t is tuple or t is list:
            sig.append((t, len(a)))
            inner = held or t is list
            for k, x in enumerate(a):
                path.append(("i", k))
                visit(x, inner, t is list)
                path.pop()
        else:
            budget[0] -= 1
            if budget[0] < 0 or len(path) > _STATE_DEPTH:
                raise _Ineligible("an argument holding too much state")
            state = _STATE_TYPES.get(t)
            if state is None:
                state = _STATE_TYPES[t] = _is_state_type(t)
            if t is dict or state:
                d = a if t is dict else a.__dict__
                sig.append((t, tuple(d)))
                kind = "i" if t is dict else "a"
                for k, x in d.items():
                    path.append((kind, k))
                    visit(x, True, True)
                    path.pop()
            elif held:
                try:
                    hash(a)
                except TypeError:
                    raise _Ineligible(f"state of type {t.__name__}") from None
                sig.append((t, a))  # a dtype, a device, a class: by value or identity
            else:
                raise _Ineligible(f"an argument of type {t.__name__}")

    for k, a in enumerate(args):
        path.append(("i", k))
        visit(a, False, False)
        path.pop()
    for k, v in kwargs.items():
        sig.append(k)
        path.append(("k", k))
        visit(v, False, False)
        path.pop()
    return sig


_STATE_TYPES = {}  # type -> whether its objects are walked as state (_is_state_type)


def _is_state_type(t):
    """Plain Python classes, whose objects' attributes a module call may read
    and replace (a KV cache object): not modules, tensors, classes, enums,
    exceptions, callables, builtins or torch's own types."""
    return "__dict__" in dir(t) and not any("__call__" in vars(k) for k in t.__mro__[:-1]) and \
        not issubclass(t, (torch.nn.Module, torch.Tensor, type, enum.Enum, BaseException)) and \
        t.__module__ != "builtins" and not t.__module__.startswith("torch")


def _writes(args, kwargs, sig, slots):
    """(path, new tensor) for each tensor of `slots` that the call replaced;
    _Ineligible when it changed anything else in its arguments' state."""
    lazies, ints, after = [], [], []
    try:
        same = _signature(args, kwargs, lazies, ints, after) == sig
    except _Ineligible:
        same = False
    if not same or len(after) != len(slots):
        raise _Ineligible("a call that changes its arguments' state other than by replacing tensors")
    writes = []
    for (path, old, assignable), (_, new, _) in zip(slots, after):
        if new is not old:
            if not assignable:
                raise _Ineligible("a call that replaces a tuple in its arguments' state")
            writes.append((path, new))
    return writes


def _assign(args, kwargs, path, value):
    """Puts `value` where `path` (from _signature) leads."""
    kind, key = path[0]
    target = args[key] if kind == "i" else kwargs[key]
    for kind, key in path[1:-1]:
        target = getattr(target, key) if kind == "a" else target[key]
    kind, key = path[-1]
    if kind == "a":
        setattr(target, key, value)
    else:
        target[key] = value


def _sources(modules):
    """(dict, name, tensor) for every LazyTensor parameter and buffer of the modules."""
    found = []
    seen = set()
    for m in modules:
        for d in (m._parameters, m._buffers):
            for name, t in d.items():
                if type(t) is LazyTensor and id(t) not in seen:
                    seen.add(id(t))
                    found.append((d, name, t))
    return found
