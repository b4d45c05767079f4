"""Module-call templates: proven captures replayed without per-op capture.

Capturing an op costs tens of microseconds of Python (dispatch, shapes,
encoding, the result's wrapper), far more than the op itself. Most of a
program's ops come from module calls that repeat with the same argument
shapes: a layer norm, an MLP, a linear layer at every decode step. When a
module call has been captured twice with identical records, later calls with
the same guards append a copy of those records instead of running the
module's Python code, with the value ids rebased, and build the results
directly: in record mode by running the recorded ops on the CPU values, in
live mode from the recorded result metadata.

Guards (all must hold, else the call is captured as usual):
- grad mode is off, and the call is not inside backward() or an optimizer
  step: a template holds no autograd graph;
- the module object, its `training` flag, the phase and module path the call
  starts in, and per argument: its type, and for tensors dtype, shape,
  strides, storage offset and which other argument it shares storage with;
- every parameter and buffer the records read is still the object the
  module held when the template was made (reassigning one, or `.to(dtype)`,
  captures again). In-place updates (an optimizer step) give the tensor a new
  value id, which the replay reads, so they need no new capture.

- no attribute of any module has been set since the template was made (a
  submodule replaced, `eval()`).

A call is never templated when its capture shows something a replay could
not reproduce: a materialization or new input inside it, a random op, an op
result the program sees as a Python value, an in-place change to an argument,
parameter or buffer, a module attribute set during the call (Python state
such as a cache kept on the module), a tensor read that is neither an
argument nor a parameter or buffer of the module, a result of another type
than tensors, tuples, lists and Python scalars, or forward hooks other than
genie's own. A template records what the op records say; it cannot see
control flow that depends on something other than the guards (a global
flag, the time), which is what the two identical captures stand in for.
Set GENIE_TEMPLATES=0 to turn templates off.
"""
import os
import weakref

import torch

from . import codes
from .lazy import LazyTensor

ENABLED = os.environ.get("GENIE_TEMPLATES", "1") != "0"
_PROOFS = 2           # identical captures before a call is replayed
_ENTRY_LIMIT = 1 << 14
_MISMATCH_LIMIT = 4   # captures of one guard set that keep differing: give up on it

_DTYPES = [getattr(torch, name) for name in codes.DTYPE_NAMES]
_META = torch.device("meta")
_empty_strided = torch.empty_strided
_empty = torch.empty
_make_wrapper = torch.Tensor._make_wrapper_subclass


class _Ineligible(Exception):
    """A capture that a template could not reproduce."""


class _Ref:
    """A tensor inside a nested argument of a recorded op: slot in the replay's value table."""
    __slots__ = ("slot",)

    def __init__(self, slot):
        self.slot = slot


def _resolve(x, env):
    t = type(x)
    if t is _Ref:
        return env[x.slot]
    if t is list or t is tuple:
        return t(_resolve(i, env) for i in x)
    return x


class Template:
    """A proven capture. Value ids inside `words` are rebased at each replay:
    `internal` holds (position, id relative to the call's first id),
    `ext_ids`/`ext_storage` (position, external index): the value or storage
    id of an argument (indices below the argument count) or of a source
    (parameter or buffer) the records read, `float_pos` (position, index
    into `floats`)."""
    __slots__ = ("form", "words", "floats", "internal", "ext_ids", "ext_storage", "float_pos", "n_ids", "sources",
                 "generation", "program", "result", "dead", "phase_after", "sid_after")


class _Entry:
    __slots__ = ("module", "seen", "form", "proofs", "template", "mismatches", "failed")

    def __init__(self, module):
        self.module = weakref.ref(module)
        self.seen = 0
        self.form = None
        self.proofs = 0
        self.template = None
        self.mismatches = 0
        self.failed = False


class Templates:
    """The template cache of one capture session."""

    def __init__(self, session):
        self.session = session
        self.entries = {}
        self.never = weakref.WeakSet()  # modules with Python side effects or hooks
        self.replays = 0

    # ---- the call -------------------------------------------------------

    def call(self, module, plain, args, kwargs):
        """Runs `module(*args, **kwargs)`: replayed from a template, or through
        `plain` (the module's own call), captured to prove a template."""
        if module in self.never:
            return plain(module, args, kwargs)
        s = self.session
        lazies = []
        try:
            key = (id(module), module.training, s.phase, s.module_sid, *_signature(args, kwargs, lazies))
        except _Ineligible:
            return plain(module, args, kwargs)
        entry = self.entries.get(key)
        if entry is None:
            if len(self.entries) >= _ENTRY_LIMIT:
                return plain(module, args, kwargs)
            entry = self.entries[key] = _Entry(module)
        elif entry.module() is not module:  # the id of a module since collected
            entry = self.entries[key] = _Entry(module)
        if entry.template is not None:
            out = self._replay(entry.template, module, lazies)
            if out is not _MISS:
                self.replays += 1
                return out
            entry.template = None
            entry.proofs = 0
            entry.form = None
        if entry.failed:
            return plain(module, args, kwargs)
        entry.seen += 1
        if entry.seen < 2:
            return plain(module, args, kwargs)  # most calls never repeat: no analysis for them
        return self._capture(entry, module, plain, args, kwargs, lazies)

    # ---- proving ----------------------------------------------------------

    def _capture(self, entry, module, plain, args, kwargs, lazies):
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
        out = plain(module, args, kwargs)
        if _generation[0] != generation:
            self.never.add(module)
            return out
        try:
            if s.words is not words or s.floats is not floats:
                raise _Ineligible("a materialization inside the call")
            if [t._genie_id for t in exts] != ids_before:
                raise _Ineligible("an in-place change to an argument, parameter or buffer")
            template = self._make(words[start_word:], floats[start_float:], start_float, start_id, s._next_id - start_id,
                                  exts, sources, out)
        except _Ineligible:
            entry.failed = True
            return out
        if entry.form == template.form:
            entry.proofs += 1
        else:
            if entry.form is not None:
                entry.mismatches += 1
                if entry.mismatches >= _MISMATCH_LIMIT:
                    entry.failed = True
            entry.form = template.form
            entry.proofs = 1
        if entry.proofs >= _PROOFS:
            entry.template = template
            entry.form = None
        return out

    def _make(self, words, floats, start_float, start_id, n_ids, exts, sources, out):
        s = self.session
        ext_id = {}
        ext_storage = {}
        for i, t in enumerate(exts):
            ext_id.setdefault(t._genie_id, i)
            ext_storage.setdefault(t._genie_storage, i)
        funcs = {info.sid: func for func, info in s._infos.items()}
        strings = None
        tpl = Template()
        internal, e_ids, e_storage, float_pos = [], [], [], []
        n_ext = len(exts)
        program = []

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
                return i + 2, words[i + 1]
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
                outs.append(slot_of_id(i + 1))
                ndim = words[i + 3]
                storage = i + 5 + 2 * ndim
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
            nested = [(k, a) for k, a in enumerate(op_args) if type(a) in (list, tuple) and _has_ref(a)]
            program.append((func, tuple(op_args), fast, nested, op_kwargs or None,
                            any(_has_ref(v) for v in op_kwargs.values()), outs))

        result_ids = set()
        tpl.result = _result(out, start_id, exts, result_ids)
        tpl.words = words
        tpl.floats = floats
        tpl.internal = internal
        tpl.ext_ids = e_ids
        tpl.ext_storage = e_storage
        tpl.float_pos = float_pos
        tpl.n_ids = n_ids
        tpl.sources = sources
        tpl.generation = _generation[0]
        tpl.program = [_compile(op) for op in program]
        tpl.dead = [r for r in range(n_ids) if r not in result_ids]
        tpl.phase_after = s.phase
        tpl.sid_after = s.module_sid
        masked = list(words)
        for p, _ in internal + e_ids + e_storage + float_pos:
            masked[p] = 0
        tpl.form = (tuple(masked), tuple(internal), tuple(e_ids), tuple(e_storage), tuple(float_pos), tuple(floats),
                    n_ids, tpl.result, tuple((id(d), name, id(t)) for d, name, t in sources))
        return tpl

    # ---- replay -----------------------------------------------------------

    def _replay(self, tpl, module, lazies):
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
            _run(tpl.program, values)
        s.phase = tpl.phase_after
        s.module_sid = tpl.sid_after
        return _build(tpl.result, base, exts, values, {})


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


def _has_ref(x):
    t = type(x)
    if t is _Ref:
        return True
    if t is list or t is tuple:
        return any(_has_ref(i) for i in x)
    return False


def _compile(op):
    func, args, fast, nested, kwargs, kw_refs, outs = op
    return func, args, fast, nested, kwargs, kw_refs, outs, outs[0] if len(outs) == 1 else None


def _run(program, env):
    """Record mode: runs the recorded ops on the CPU values."""
    for func, args, fast, nested, kwargs, kw_refs, outs, single in program:
        a = list(args)
        for k, slot in fast:
            a[k] = env[slot]
        for k, spec in nested:
            a[k] = _resolve(spec, env)
        if kwargs is None:
            out = func(*a)
        else:
            out = func(*a, **({k: _resolve(v, env) for k, v in kwargs.items()} if kw_refs else kwargs))
        if single is not None:
            env[single] = out
        else:
            for slot, o in zip(outs, out):
                env[slot] = o


# Result specs: ("t", relative id, storage (("i", relative) or ("e", external)), dtype, shape, stride, offset),
# ("e", external index), ("c", constant), (tuple or list, [specs]).

def _result(out, start_id, exts, result_ids):
    t = type(out)
    if t is LazyTensor:
        v = out._genie_id
        if v >= start_id:
            result_ids.add(v - start_id)
            st = out._genie_storage
            if st >= start_id:
                storage = ("i", st - start_id)
            else:
                e = next((k for k, x in enumerate(exts) if x._genie_storage == st), None)
                if e is None:
                    raise _Ineligible("a result viewing a tensor that is not an argument, parameter or buffer")
                storage = ("e", e)
            return ("t", v - start_id, storage, out.dtype, tuple(out.shape), out.stride(), out.storage_offset())
        e = next((k for k, x in enumerate(exts) if x is out), None)
        if e is None:
            raise _Ineligible("a result that is a tensor from outside the call")
        return ("e", e)
    if t is tuple or t is list:
        return (t, tuple(_result(o, start_id, exts, result_ids) for o in out))
    if out is None or t in (int, float, bool, str):
        return ("c", out)
    raise _Ineligible(f"a result of type {t.__name__}")


def _build(spec, base, exts, values, made):
    kind = spec[0]
    if kind == "t":
        _, rel, storage, dtype, shape, stride, offset = spec
        lazy = made.get(rel)
        if lazy is None:
            if values is None:
                value = _meta(shape, stride, offset, dtype)
            else:
                value = values[len(exts) + rel]
            st = base + storage[1] if storage[0] == "i" else exts[storage[1]]._genie_storage
            lazy = made[rel] = LazyTensor._wrap(value, shape, stride, offset, base + rel, st)
        return lazy
    if kind == "e":
        return exts[spec[1]]
    if kind == "c":
        return spec[1]
    return kind(_build(s, base, exts, values, made) for s in spec[1])


def _meta(shape, stride, offset, dtype):
    if offset == 0:
        return _empty_strided(shape, stride, dtype=dtype, device=_META)
    extent = 1 + sum((n - 1) * st for n, st in zip(shape, stride)) if all(n > 0 for n in shape) else 0
    return _empty((offset + extent,), dtype=dtype, device=_META).as_strided(shape, stride, offset)


def _signature(args, kwargs, lazies):
    """The guard values of a call's arguments; collects its LazyTensors in
    `lazies`. Raises _Ineligible for an argument a template cannot bind."""
    sig = []
    storages = {}

    def visit(a):
        t = type(a)
        if t is LazyTensor:
            sig.append((a.dtype, a.shape, a.stride(), a.storage_offset(),
                        storages.setdefault(a._genie_storage, len(lazies))))
            lazies.append(a)
        elif t is int or t is float or t is bool or t is str or a is None:
            sig.append((t, a))
        elif t is tuple or t is list:
            sig.append((t, len(a)))
            for x in a:
                visit(x)
        else:
            raise _Ineligible(f"an argument of type {t.__name__}")

    for a in args:
        visit(a)
    for k, v in kwargs.items():
        sig.append(k)
        visit(v)
    return sig


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
