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
- Captures with different integers give a candidate (_fit, through the
  family's latest _WINDOW captures recorded alike): the integers that
  differ are taken in order, and each that is no affine function of the
  ones taken before is a T. Every integer and record word that differs
  must be b + a_1*T_1 + ... + a_n*T_n with integers a and b (a KV cache of
  length T: sizes T, strides 16*T, a view of 4*(T+1); three embedding bags
  whose lengths vary apart: three Ts). The lines need n + 1 captures; a
  later capture whose records are exactly what the candidate predicts for
  its Ts proves it (one T: three captures; three Ts: five). The template
  then serves every call whose integers fit the same lines, except that
  its 16th, 32nd, 64th, ... (then every 256th) call is captured and checked
  against it (a mismatch drops it). A capture that recorded exactly the
  words a replay would send, with the same results, holds without
  analysis (_confirms).
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
template's lines); the call not inside backward() or an optimizer step;
in grad mode, the same arguments, parameters and buffers requiring grad
(see "Grad mode" below); every parameter and
buffer of the module still the object it was when the template was made
(reassigning one or `.to(dtype)` captures again; in-place updates give the
tensor a new value id, which the replay reads); no attribute of any
module set since then (a submodule replaced, `eval()`); and the same Python
state in the modules' lists, dicts and plain objects, and in the globals
their forward names: lists, dicts, sets and scalars (see _state_roots: a
config object's attribute or a global flag the program set between calls
captures again).

Random ops (dropout's masks) are replayed as they were captured: in live
mode the values a random op drew in the program's process are drawn again
with the program's generator, in the capture's order, and sent up as that
input's new payload; in record mode the replay runs the random op on the CPU
values and records its values, as a capture does. So a replay draws what
eager PyTorch draws. Such calls get exact templates only (no lines in Ts).
A call whose random ops the runtime draws (live mode, ops that read
tensors' values) is never templated.

In-place changes to an argument, parameter or buffer (an accumulator passed
in, a batch norm's batch count, `self.n += 1` on a buffer) are replayed:
the replay writes the same records, and the tensor takes the id its last
write made, as in the capture. Setting a module attribute to the object it
holds already changes nothing.

Families that do not settle stop capturing. One whose proving captures
leave it without a template _UNSETTLED_LIMIT times in a row is given up;
after _FREE_CAPTURES captures, one captures again only while it has a
replay for every two captures (a call that keeps half of its indices: a
size that lies on no line in their length). Its calls then run plainly, and the module calls inside them get
their own templates.

A call is never templated when its capture shows something a replay could
not reproduce: a materialization or an input other than a random draw
or a lifted constant inside it, a random op the runtime draws, an op
result the program sees as a Python value, a new tensor put in place of an
argument, parameter or buffer, a module attribute set during the call (Python state
such as a cache kept on the module) or a change to its Python state (an
item appended to a list attribute), a hook registered on a tensor
(register_hook, retain_grad), a print() or a logged record (a replay runs
none of the module's Python: it would attach no hook and print nothing), a
tensor read that is neither an argument nor a parameter or buffer of the
module, a result of another type than tensors, tuples, lists and Python
scalars, or forward hooks other than genie's own. A template cannot see
control flow that depends on something other than its guards (a global that
a helper function reads, the time); the proving captures stand in for that.
A template with a T cannot see a branch on T that the program first takes
after the proof (a cache rebuilt past some length): the calls
before the next check replay the old branch. GENIE_TEMPLATES=exact keeps
only exact templates; GENIE_TEMPLATES=0 turns templates off.

Grad mode (a training step's forward). The outermost module call becomes
one node of the program's autograd graph, a custom autograd function
(_GradFn) whose inputs are the call's arguments, parameters and buffers.
Proving captures run the module inside it on aliases of the arguments with
autograd on; its backward differentiates that inner graph, recorded. The
forward is proven as outside grad mode: two identical captures, or lines in
Ts that a later capture confirms. Its backward is proven per pattern of
gradients (which results got one, their dtypes and ranks): two identical
backward captures for the same gradients, or, for a template with Ts,
lines in Ts through the integers of the forward and of the gradients of the
family's latest backward captures (those from before the forward's proof
too), confirmed by a later one whose forward, like theirs, the forward
template predicts (an embedding bag whose bags have random lengths: the
backward's offsets are as long as its indices).
Such a template's checks capture the call's forward and its backward; a
mismatch drops what it refutes. A replay
appends the forward's records; its backward appends the backward's records
for the gradients it gets. Other gradients (an output unused), or
create_graph, run the call again with autograd and differentiate it, as
checkpointing does (its ops are recorded again; the CPU generator is set
back to its state at the forward, so the call draws the same masks, then
restored; what the call changes in place, and the modules' buffers, are
put back once it is differentiated). An argument that requires grad and
that the call changes in place is an error (GENIE_TEMPLATES=0 captures
such a call op by op). Tensors in list and tuple arguments are inputs of
the node like the others (a list of index tensors); proving captures run
the call on copies of its lists, so one whose first call put a tensor in
its list runs plainly. Calls with tensors in dicts or objects (a cache
object), calls whose results are not tensors in tuples and lists, and
nested calls run plainly.

Lifted constants. A CPU tensor that an op inside the call reads (the pairs
torch.triu_indices made, a torch.tensor of Python numbers) is lifted to a
constant input; one of up to 4 KiB goes up once per content and later
lifts name that payload again (Session.add_input_words), so its record is
the same in every capture. Its bytes are part of what the proving captures
must agree on, and a replay gives it those bytes: a template cannot see a
CPU tensor the program changes in place between calls.
"""
import builtins
import collections
import ctypes
import dataclasses
import enum
import logging
import math
import os
import types
import weakref
from fractions import Fraction

import torch

from . import codes, device
from .autocast import current as _autocast_dtype
from .capture import CaptureError
from .lazy import LazyTensor

ENABLED = os.environ.get("GENIE_TEMPLATES", "1") != "0"
SYMBOLIC = os.environ.get("GENIE_TEMPLATES", "1") != "exact"  # templates with a T (see the module's doc)
# A replay's records go up as one RUN step of a template sent once
# (Session.run_template); GENIE_RUN_STEPS=0 sends them whole, word by word.
_RUN_STEPS = os.environ.get("GENIE_RUN_STEPS", "1") != "0"
_FAMILY_LIMIT = 1 << 14
_EXACT_LIMIT = 64     # exact templates per family
_MISMATCH_LIMIT = 4   # captures of one family that keep contradicting each other: give up on it
_UNSETTLED_LIMIT = 6  # proving captures in a row that leave a family without templates: give up on it
_FREE_CAPTURES = 8    # proving captures of a family before it must earn more: a replay for every two
_WINDOW = 8           # the latest captures of a family that lines are fitted through (see _fit)
_MAX_TS = 7           # Ts of one template (at most _WINDOW - 1; a RUN step brings at most 16)
_RECHECK = 16         # a template with a T is checked against a capture after this many calls,
_RECHECK_MAX = 256    # then after twice as many each time, up to this many
_STATE_LIMIT = 4096   # containers and objects walked in one call's arguments
_STATE_DEPTH = 8      # how deep they may nest

_DTYPES = [getattr(torch, name) for name in codes.DTYPE_NAMES]
_MISS = object()
_generation = [0]  # bumped by every attribute set on any module (see install)
_effects = [0]  # bumped by what a call may do in Python that a replay would not (see install)
_grad_enabled = torch.is_grad_enabled
# Tensor methods that attach Python to a tensor's gradient: a replay, which
# runs none of the module's Python, would not attach it.
_HOOK_METHODS = ("register_hook", "retain_grad", "register_post_accumulate_grad_hook")


def install():
    """Counts attribute changes of modules: a template made before one (a
    submodule replaced, a cache attribute set) is not replayed after it.
    Counts what a call may do in Python that a replay would not (_counted)."""
    setattr_, delattr_ = torch.nn.Module.__setattr__, torch.nn.Module.__delattr__

    def module_setattr(self, name, value):
        # Setting what is there already changes nothing (`self.n += 1` on a
        # buffer, which the tensor's in-place add changed).
        if _attribute(self, name) is not value:
            _generation[0] += 1
        setattr_(self, name, value)

    def module_delattr(self, name):
        _generation[0] += 1
        delattr_(self, name)
    torch.nn.Module.__setattr__ = module_setattr
    torch.nn.Module.__delattr__ = module_delattr
    for name in _HOOK_METHODS:
        if hasattr(torch.Tensor, name):
            setattr(torch.Tensor, name, _counted(getattr(torch.Tensor, name)))
    builtins.print = _counted(builtins.print)
    logging.Logger.handle = _counted(logging.Logger.handle)  # a record a logger lets through


def _attribute(module, name):
    """What `module.name` holds, or _MISS."""
    d = module.__dict__
    if name in d:
        return d[name]
    for store in ("_parameters", "_buffers", "_modules"):
        held = d.get(store)
        if held is not None and name in held:
            return held[name]
    return _MISS


def _counted(fn):
    """`fn`, counting its calls in _effects: a module call that makes one is
    never templated, as a replay, which runs none of its Python, would not
    make it (a hook on a tensor, a retained gradient, a line printed or
    logged)."""
    def counted(*args, **kwargs):
        _effects[0] += 1
        return fn(*args, **kwargs)
    counted.__name__ = fn.__name__
    counted.__qualname__ = getattr(fn, "__qualname__", fn.__name__)
    counted.__doc__ = fn.__doc__
    return counted


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


def _plain_recipe(x):
    """Whether a local draw's recipe (see RemoteSession._random_locally)
    holds no tensor, which captures could not compare or replays reuse."""
    if isinstance(x, torch.Tensor):
        return False
    if type(x) is tuple or type(x) is list:
        return all(_plain_recipe(i) for i in x)
    return True


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
                 "n_ids", "sources", "result", "writes", "dead", "phase_after", "sid_after", "raw", "out_pos",
                 "grad_flags", "guard", "draws", "randoms", "updates")


class Template:
    """A proven capture: what a replay copies and patches. `t_index` is None
    for an exact template; else the positions of its Ts among the call's
    integers (T_k = ints[t_index[k]]), and `guards` (index, b, terms) and
    `affine` (record position, b, terms) give every integer and varying word
    as b + the sum of a * T_k over its terms (k, a) (see _fit)."""
    __slots__ = ("words", "internal", "ext_ids", "ext_storage", "float_pos", "floats", "n_ids", "sources",
                 "generation", "program", "result", "writes", "dead", "phase_after", "sid_after", "t_index", "guards", "affine",
                 "masked", "rest", "calls", "next_check", "out_pos", "grad_flags", "backward", "guard", "draws",
                 "randoms", "updates", "wire", "result_patches")

    def predicts(self, cap):
        """Whether capture `cap` recorded what this template gives for its T."""
        return _predicts(self.masked, self.rest, self.t_index, self.affine, cap)

    def fits(self, ints):
        return _on_lines(ints, self.t_index, self.guards)

    def patches(self):
        """The words a replay changes, as (position, kind, a, b) with kinds
        codes.PATCH_*: what a TEMPLATE frame tells the genie process."""
        out = [(p, codes.PATCH_ID, r, 0) for p, r in self.internal]
        out += [(p, codes.PATCH_ARG_ID, e, 0) for p, e in self.ext_ids]
        out += [(p, codes.PATCH_ARG_STORAGE, e, 0) for p, e in self.ext_storage]
        for p, b, terms in self.affine:
            if len(terms) == 1 and terms[0][0] == 0:
                out.append((p, codes.PATCH_AFFINE, terms[0][1], b))
            else:  # b, then each term added
                out.append((p, codes.PATCH_AFFINE, 0, b))
                out += [(p, codes.PATCH_TERM, a, k) for k, a in terms]
        out += [(p, codes.PATCH_FLOAT, k, 0) for p, k in self.float_pos]
        return out


class _Family:
    __slots__ = ("module", "seen", "exact", "symbolic", "candidate", "last", "mismatches", "failed", "bwd_last",
                 "bwd_lines", "unproven", "captures", "hits")

    def __init__(self, module):
        self.module = weakref.ref(module)
        self.seen = 0
        self.exact = {}        # ints -> Template
        self.symbolic = None   # Template with a T
        self.candidate = None  # (capture, t_index, guards, affine) awaiting its proof (see _fit)
        self.last = []         # the latest captures
        self.mismatches = 0
        self.failed = False
        self.bwd_last = {}     # grad mode: the latest backward capture per forward records and gradients
        self.bwd_lines = {}    # grad mode: per gradient pattern, [candidate, latest backward captures] (_learn_lines)
        self.unproven = 0      # proving captures in a row after which it had no template
        self.captures = 0      # proving captures (see _earned)
        self.hits = 0          # replays

    def forget(self):
        self.exact = {}
        self.symbolic = None
        self.candidate = None
        self.last = []
        self.bwd_last = {}
        self.bwd_lines = {}


class Templates:
    """The template cache of one capture session."""

    def __init__(self, session):
        self.session = session
        self.families = {}
        self.never = weakref.WeakSet()  # modules with Python side effects or hooks
        self.replays = 0       # module calls replayed
        self.replayed_ops = 0  # ops they held
        self.capturing = 0     # proving captures in progress (nested calls)
        self.learning = 0      # backward captures in progress, whose records are parsed (_GradCall.backward)
        self.grad_depth = 0    # grad-mode module calls running inside _GradFn (see _grad_call)
        self.confirmed = 0     # checks of templates with a T that their words confirmed (_confirms)
        self.refuted = 0       # checks that found a template wrong (it is dropped)

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
        grad = _grad_enabled()
        try:
            sig = _signature(args, kwargs, lazies, ints, slots)
            key = (id(module), module.training, s.phase, s.module_sid, _autocast_dtype[0], *sig)
            if grad:
                key = (*key, True, *[t.requires_grad for t in lazies])
        except _Ineligible:
            return plain(module, args, kwargs)
        fam = self.families.get(key)
        if fam is None or fam.module() is not module:  # new, or the id of a module since collected
            if len(self.families) >= _FAMILY_LIMIT:
                return plain(module, args, kwargs)
            fam = self.families[key] = _Family(module)
        ints = tuple(ints)
        if grad:
            if self.grad_depth:
                # Inside a grad-mode capture or recompute: the outer call is the one autograd node.
                return plain(module, args, kwargs)
            return self._grad_call(fam, module, plain, args, kwargs, lazies, ints, sig, slots)
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
                fam.hits += 1
                return out
            fam.forget()  # a parameter replaced or a module attribute set since it was made
        if fam.failed or not _earned(fam):
            return plain(module, args, kwargs)
        fam.seen += 1
        if fam.seen < 2:
            return self._first(module, plain, args, kwargs)
        return self._capture(fam, module, plain, args, kwargs, lazies, ints, sig, slots)

    def _first(self, module, plain, args, kwargs):
        """A family's first call, plain. One that does what a replay would
        not (_counted) or changes its modules' Python state is never templated,
        before a proving capture could run it (in grad mode, a capture runs
        it on aliases: a gradient it retains would be retained on those, a
        tensor it keeps would be one of those)."""
        watch = _Watch(module.modules())
        out = plain(module, args, kwargs)
        if watch.changed():
            self.never.add(module)
        return out

    # ---- proving ----------------------------------------------------------

    def _capture(self, fam, module, plain, args, kwargs, lazies, ints, sig, slots, check=None):
        s = self.session
        modules = list(module.modules())
        if _hooked(modules):
            self.never.add(module)
            return plain(module, args, kwargs)
        sources = _sources(modules)
        exts = lazies + [t for _, _, t in sources]
        ids_before = [t._genie_id for t in exts]
        if check is None:
            fam.captures += 1
        out, opened, guard = self._proving(module, modules, lambda: plain(module, args, kwargs))
        if opened is None:
            return out
        try:
            words, floats, start_word, start_float, start_id = self._whole(opened)
            writes = _writes(args, kwargs, sig, slots) if slots else ()
            objects = _call_objects(args, kwargs)
            if check is not None and self._confirms(check, ints, words, floats, start_word, start_float, start_id,
                                                    exts, sources, ids_before, out, writes, objects):
                self.confirmed += 1
                return out
            cap = self._analyse(ints, words[start_word:], floats[start_float:], start_float, start_id,
                                s._next_id - start_id, exts, sources, out, writes, objects, ids_before)
        except _Ineligible:
            fam.failed = True
            fam.forget()
            return out
        cap.guard = guard
        if check is None:
            self._learn(fam, cap)
        elif not check.predicts(cap):
            self.refuted += 1
            fam.symbolic = None
            fam.last = [cap]
            self._mismatch(fam)
        self._settle(fam)
        return out

    def _confirms(self, tpl, ints, words, floats, start_word, start_float, start_id, exts, sources, ids_before, out,
                  writes, objects):
        """Whether a check capture of `tpl` recorded exactly what a replay
        of it would have sent for this call (its words, floats and id count)
        and left the program what a replay leaves it (results, writes, the
        arguments changed in place, the phase): then it holds without the
        analysis a capture needs. Records that go up as one RUN step then
        go so, as a replay's would. False: the analysis decides."""
        s = self.session
        if tpl.draws or tpl.randoms or s._next_id - start_id != tpl.n_ids or \
                len(words) - start_word != len(tpl.words) or tuple(floats[start_float:]) != tpl.floats or \
                s.phase != tpl.phase_after or s.module_sid != tpl.sid_after or \
                [(id(d), name, id(t)) for d, name, t in sources] != [(id(d), name, id(t)) for d, name, t in tpl.sources]:
            return False
        w = tpl.words.copy()
        t = _ts(ints, tpl.t_index)
        _patch(tpl, w, start_id, ids_before, exts, t)
        for p, k in tpl.float_pos:
            w[p] = start_float + k
        if words[start_word:] != w:
            return False
        updates, result_ids = [], set()
        for e, (x, v) in enumerate(zip(exts, ids_before)):
            if x._genie_id != v:
                updates.append((e, x._genie_id - start_id))
                result_ids.add(x._genie_id - start_id)
        if tuple(updates) != tpl.updates:
            return False
        try:
            result = _result(out, start_id, exts, tpl.out_pos, result_ids, objects)
            written = tuple((path, _result(x, start_id, exts, tpl.out_pos, result_ids)) for path, x in writes)
        except (_Ineligible, KeyError):
            return False
        if result != tpl.result or written != tpl.writes:
            return False
        if _RUN_STEPS and not (self.capturing or self.learning) and \
                (tpl.wire is not None or s.templates_sent < codes.MAX_TEMPLATES):
            del words[start_word:]
            del floats[start_float:]
            s.run_template(tpl, start_id, t, exts, ids_before)
        return True

    def _proving(self, module, modules, run):
        """Runs `run()`, a call of `module` (whose modules() are `modules`),
        as a proving capture: returns its
        result, where its records start (the session's word and float
        lists, their lengths, the next id) and the guard on its modules'
        Python state (_Watch.guard), or None for the latter two when a
        module changed meanwhile (an attribute set, its Python state changed)
        or the call did what a replay would not (_counted) (`module` is then
        never templated)."""
        s = self.session
        generation = _generation[0]
        watch = _Watch(modules)
        opened = (s.words, s.floats, len(s.words), len(s.floats), s._next_id)
        if not self.capturing:
            if s.remote:
                s.drawn = {}  # the local draws of this call (see _parse)
            s.lifted = {}  # the constants its ops lift
        self.capturing += 1
        try:
            out = run()
        finally:
            self.capturing -= 1
        if _generation[0] != generation or watch.changed():
            self.never.add(module)
            return out, None, None
        return out, opened, watch.guard()

    def _whole(self, opened):
        """`opened` (see _proving) once the capture is known to hold the
        whole call: no materialization closed a segment inside it."""
        s = self.session
        if s.words is not opened[0] or s.floats is not opened[1]:
            raise _Ineligible("a materialization inside the call")
        return opened

    def _analyse(self, ints, words, floats, start_float, start_id, n_ids, exts, sources, out, writes, objects=None,
                 ids_before=None):
        """A capture's records as a _Capture. `ids_before`: the ids `exts` had
        when the call began, where the call may have changed some in place
        (a batch norm's running statistics): each such change is one of the
        capture's `updates` (external index, the id it ends with relative
        to the call's first id), which a replay makes too."""
        ext_id, ext_storage = {}, {}
        ids = ids_before if ids_before is not None else [t._genie_id for t in exts]
        for i, (t, v) in enumerate(zip(exts, ids)):
            ext_id.setdefault(v, i)
            ext_storage.setdefault(t._genie_storage, i)
        # With the session's maps of the draws and constants in the call:
        # _template parses it again, maybe after later captures made new ones.
        raw = (words, floats, start_float, start_id, len(exts), ext_id, ext_storage, self.session.drawn,
               self.session.lifted)
        internal, e_ids, e_storage, float_pos, _, out_pos, draws, randoms, constants = self._parse(raw, ())
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
        updates = []
        for e, (t, v) in enumerate(zip(exts, ids)):
            r = t._genie_id - start_id
            if t._genie_id != v:
                p = out_pos.get(r)
                if p is None or _storage_word(words, p) != t._genie_storage:
                    raise _Ineligible("a new tensor put in place of an argument, parameter or buffer")
                updates.append((e, r))
                result_ids.add(r)
        cap.updates = tuple(updates)
        cap.result = _result(out, start_id, exts, out_pos, result_ids, objects)
        cap.writes = tuple((path, _result(t, start_id, exts, out_pos, result_ids)) for path, t in writes)
        cap.dead = [r for r in range(n_ids) if r not in result_ids]
        cap.phase_after = self.session.phase
        cap.sid_after = self.session.module_sid
        cap.out_pos = out_pos
        cap.grad_flags = None
        cap.guard = None
        cap.draws = draws
        cap.randoms = randoms
        masked = list(words)
        for p, _ in internal + e_ids + e_storage + float_pos + draws:
            masked[p] = 0
        for sends in randoms.values():
            for p, _ in sends:
                masked[p] = 0
        cap.masked = tuple(masked)
        cap.rest = (tuple(internal), tuple(e_ids), tuple(e_storage), tuple(float_pos), cap.floats, n_ids, cap.result,
                    cap.phase_after, cap.sid_after, tuple((id(d), name, id(t)) for d, name, t in sources), cap.writes,
                    tuple(recipe for _, recipe in draws), cap.updates,
                    tuple((v.dtype, tuple(v.shape), ctypes.string_at(v.data_ptr(), v.numel() * v.element_size()))
                          for v in constants))
        return cap

    def _parse(self, raw, varying):
        """Walks a capture's records: the id, storage and float positions to
        patch, the ops as a program (integers at `varying` positions read from
        the patched words), each internal id's output record position, and
        the random values a replay makes anew: live mode's local draws
        (payload position, recipe) and record mode's random ops (program
        index -> [(payload position, value slot)])."""
        words, floats, start_float, start_id, n_ext, ext_id, ext_storage, drawn, lifted = raw
        s = self.session
        draws, randoms = [], {}
        funcs = {info.sid: func for func, info in s._infos.items()}
        strings = None
        internal, e_ids, e_storage, float_pos = [], [], [], []
        program = []
        out_pos = {}
        constants = []

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
            if words[i] == codes.TAG_INPUT:
                # Only values a random op drew here (live mode, see
                # RemoteSession._random_locally): a replay draws them again.
                # Record: input, id, kind, dtype, rank, sizes, strides, offset, storage, payload.
                recipe = drawn.get(words[i + 1]) if drawn else None
                if recipe is None:
                    # A constant an op lifted (a CPU tensor the call made): the
                    # same bytes name the same payload (add_input_words), so its
                    # record is the same in every capture. Its values are in the
                    # capture's `rest`, for record mode, whose replay makes it.
                    value = lifted.get(words[i + 1]) if lifted else None
                    if value is None or words[i + 2] != codes.INPUT_CONSTANT:
                        raise _Ineligible("a new input inside the call")
                    slot = slot_of_id(i + 1)
                    out_pos[slot - n_ext] = i + 2
                    storage = i + 6 + 2 * words[i + 4]
                    if slot < n_ext or words[storage] != words[i + 1]:
                        raise _Ineligible("a new input inside the call")
                    internal.append((storage, words[storage] - start_id))
                    constants.append(value)
                    program.append((value.clone, (), [], [], None, False, [slot], slot))
                    i = storage + 2
                    continue
                if not _plain_recipe(recipe):
                    raise _Ineligible("a new input inside the call")
                slot = slot_of_id(i + 1)
                if slot < n_ext:
                    raise _Ineligible("a new input inside the call")
                # The metadata follows the kind word as an op's output record's follows its id word.
                out_pos[slot - n_ext] = i + 2
                rank = words[i + 4]
                storage = i + 6 + 2 * rank
                if words[storage] != words[i + 1]:
                    raise _Ineligible("a new input inside the call")
                internal.append((storage, words[storage] - start_id))
                draws.append((storage + 1, recipe))
                i = storage + 2
                continue
            if words[i] != codes.TAG_OP:
                raise _Ineligible("a step other than an op inside the call")
            func = funcs[words[i + 1]]
            random = words[i + 4] & codes.FLAG_RANDOM
            if random and s.remote:
                # Drawn by the runtime with its own generator: a recompute
                # (see _GradCall.recompute) could not draw the same values.
                raise _Ineligible("a random op that the runtime draws")
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
                if words[i] == 0 and words[i + 1] == codes.ARG_NONE:
                    # An undefined result (a convolution's backward gives no
                    # gradient for an input that needs none).
                    outs.append(None)
                    i += 2
                    continue
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
                    if not random:
                        raise _Ineligible("an op result with recorded values")
                    randoms.setdefault(len(program), []).append((storage + 1, slot))
                i = storage + 2
            fast = [(k, a.slot) for k, a in enumerate(op_args) if type(a) is _Ref]
            slow = [(k, a) for k, a in enumerate(op_args) if type(a) is not _Ref and _needs_resolve(a)]
            kw_slow = any(_needs_resolve(v) for v in op_kwargs.values())
            # The OpOverload's own callable: its Python __call__ only forwards to it.
            if not any(o is not None for o in outs):
                outs = []
            program.append((getattr(func, "_op", func), tuple(op_args), fast, slow, op_kwargs or None, kw_slow, outs,
                            outs[0] if len(outs) == 1 else None))
        return internal, e_ids, e_storage, float_pos, program, out_pos, draws, randoms, constants

    def _learn(self, fam, cap):
        """Proves a template from this capture and the family's earlier ones.
        In grad mode captures go on after a template is proven, until its
        backward is (see _learn_backward): a template keeps its place, and
        a capture it predicts changes nothing."""
        for prev in fam.last:
            if prev.ints == cap.ints:
                if prev.masked == cap.masked and prev.rest == cap.rest and prev.grad_flags == cap.grad_flags:
                    if cap.ints not in fam.exact and len(fam.exact) < _EXACT_LIMIT:
                        fam.exact[cap.ints] = self._template(cap, None, (), ())
                else:
                    self._mismatch(fam)
                fam.last = [c for c in fam.last if c is not prev] + [cap]
                return
        sym = fam.symbolic
        if sym is not None and len(cap.ints) == len(sym.guards) and sym.fits(cap.ints):
            if not (sym.predicts(cap) and sym.grad_flags == cap.grad_flags):
                self.refuted += 1
                fam.symbolic = None
                fam.bwd_lines = {}
                fam.last = [cap]
                self._mismatch(fam)
                return
            fam.last = (fam.last + [cap])[-_WINDOW:]
            return
        c = fam.candidate
        if c is not None:
            base, t_index, guards, affine = c
            if len(cap.ints) == len(base.ints) and _on_lines(cap.ints, t_index, guards):
                if _predicts(base.masked, base.rest, t_index, affine, cap) and base.grad_flags == cap.grad_flags:
                    fam.symbolic = self._template(base, t_index, guards, affine)
                    fam.candidate = None
                    fam.last = [cap]
                    return
                self._mismatch(fam)
        fam.last = (fam.last + [cap])[-_WINDOW:]
        if SYMBOLIC and not cap.draws and not cap.randoms:
            fam.candidate = _fit(fam.last)

    def _settle(self, fam):
        """Gives a family up after _UNSETTLED_LIMIT proving captures in a row
        that left it without a template: calls whose integers never repeat
        and lie on no line (half of a random length). Its
        calls then run plainly, and the module calls inside them, which may
        repeat, get their own templates (in grad mode they could not: the
        outer call's proving capture runs them plainly)."""
        if fam.exact or fam.symbolic is not None:
            fam.unproven = 0
            return
        fam.unproven += 1
        if fam.unproven >= _UNSETTLED_LIMIT:
            fam.failed = True
            fam.forget()

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
        tpl.out_pos = cap.out_pos
        tpl.grad_flags = cap.grad_flags
        tpl.guard = cap.guard
        tpl.draws = cap.draws
        tpl.randoms = cap.randoms
        tpl.updates = cap.updates
        tpl.backward = {}
        tpl.wire = None  # its id on the session's channel once sent (Session.run_template)
        tpl.result_patches = None  # see _result_patches
        return tpl

    # ---- replay -----------------------------------------------------------

    def _exts(self, tpl, lazies):
        """The call's arguments, parameters and buffers for a replay of
        `tpl`, or _MISS when its guards on them fail."""
        if tpl.generation is not None and tpl.generation != _generation[0]:
            return _MISS
        if tpl.guard is not None and _roots_state(tpl.guard[0], _GUARD_LIMIT) != tpl.guard[1]:
            return _MISS  # a config attribute set, a list attribute changed: Python state the call may read
        exts = lazies
        if tpl.sources:
            exts = list(lazies)
            for d, name, t in tpl.sources:
                if d.get(name) is not t:
                    return _MISS
                exts.append(t)
        if tpl.grad_flags is not None and tuple(t.requires_grad for t in exts) != tpl.grad_flags:
            return _MISS
        return exts

    def _replay_words(self, tpl, exts, ints):
        """Appends `tpl`'s records for a call on `exts` (as a RUN step where
        the genie process can patch them itself, see Session.run_template)
        and, in record mode, runs its ops; returns (first id, CPU values or
        None, the patched words: in live mode outside grad mode only those of
        the result records, which are all _build reads)."""
        s = self.session
        base = s._next_id
        s._next_id = base + tpl.n_ids
        t = _ts(ints, tpl.t_index)
        # A capture parses its records; draws and record mode's random results vary per call.
        # The genie process holds at most codes.MAX_TEMPLATES of them; later ones go word by word.
        run = _RUN_STEPS and not (self.capturing or self.learning or tpl.draws or tpl.randoms) and \
            (tpl.wire is not None or s.templates_sent < codes.MAX_TEMPLATES)
        w = tpl.words.copy()
        if run and s.remote and tpl.grad_flags is None:
            values = None
            if tpl.result_patches is None:
                tpl.result_patches = _result_patches(tpl)
            for p, kind, a, b in tpl.result_patches:
                if kind == codes.PATCH_ID:
                    w[p] = base + a
                elif kind == codes.PATCH_ARG_ID:
                    w[p] = exts[a]._genie_id
                elif kind == codes.PATCH_ARG_STORAGE:
                    w[p] = exts[a]._genie_storage
                elif kind == codes.PATCH_AFFINE:
                    w[p] = a * t[0] + b if a else b
                else:  # PATCH_TERM, after its word's PATCH_AFFINE
                    w[p] += a * t[b]
        else:
            _patch(tpl, w, base, [x._genie_id for x in exts], exts, t)
            if tpl.float_pos and not run:
                f0 = len(s.floats)
                for p, k in tpl.float_pos:
                    w[p] = f0 + k
                s.floats.extend(tpl.floats)
            if s.remote:
                values = None
                # The call's random values, drawn in the capture's order with the
                # program's generator, as eager PyTorch draws them.
                for p, recipe in tpl.draws:
                    w[p] = s._send_payload(s.draw(recipe), codes.FRAME_INPUT_PAYLOAD)
            else:
                values = [t._genie_value for t in exts]
                values.extend([None] * tpl.n_ids)
                _run(tpl.program, values, w, tpl.randoms, s)
        if run:
            s.run_template(tpl, base, t, exts)
        else:
            s.words += w
        for e, r in tpl.updates:
            # In place, as the capture did: the tensor takes the id its last write made.
            t = exts[e]
            if s.remote:
                s.replaced(t._genie_id)
            t._genie_id = base + r
        s.phase = tpl.phase_after
        s.module_sid = tpl.sid_after
        return base, values, w

    def _replay(self, tpl, lazies, ints, args, kwargs):
        exts = self._exts(tpl, lazies)
        if exts is _MISS:
            return _MISS
        base, values, w = self._replay_words(tpl, exts, ints)
        s = self.session
        if s.remote:
            if tpl.dead:
                s.released.extend([base + r for r in tpl.dead])
            # The records go ahead before the results are built: the runtime
            # starts on them while this Python makes the LazyTensors.
            s.send_ahead()
        made = {}
        for path, spec in tpl.writes:
            _assign(args, kwargs, path, _build(spec, base, exts, values, w, made))
        out = _build(tpl.result, base, exts, values, w, made, (args, kwargs))
        return out

    # ---- grad mode ----------------------------------------------------------

    def _grad_call(self, fam, module, plain, args, kwargs, lazies, ints, sig, slots):
        """A module call with autograd on (a training step's forward). Proved
        and replayed through _GradFn, a custom autograd function: its forward
        is the call's records, its backward the records of the call's
        backward, proven the same way: two identical captures for the same
        gradients, or for a template with Ts, lines in the forward's
        integers and the gradients' that a later backward capture confirms
        (_learn_lines). Its checks capture forward and backward."""
        tpl = fam.exact.get(ints) if fam.exact else None
        if (tpl is None or not tpl.backward) and fam.symbolic is not None and fam.symbolic.backward and \
                fam.symbolic.fits(ints):
            tpl = fam.symbolic
            tpl.calls += 1
            if tpl.calls == tpl.next_check:
                tpl.next_check += min(tpl.next_check, _RECHECK_MAX)
                return self._grad_capture(fam, module, plain, args, kwargs, lazies, ints, check=tpl)
        if tpl is not None and tpl.backward:
            exts = self._exts(tpl, lazies)
            if exts is not _MISS:
                self.replays += 1
                self.replayed_ops += len(tpl.program)
                fam.hits += 1
                return _GradReplay(self, tpl, exts, ints, module, plain, args, kwargs, lazies).run()
            fam.forget()
        # Tensors in lists and tuples are inputs of the autograd node like
        # the others (a list of index tensors); in dicts and objects (a
        # cache object) they would not be: such calls run plainly.
        if fam.failed or not _earned(fam) or \
                (slots and not (all(_sequences(a) for a in args) and all(_sequences(v) for v in kwargs.values()))):
            return plain(module, args, kwargs)
        fam.seen += 1
        if fam.seen < 2:
            grad_ids = [(t, t._genie_id) for t in lazies if t.requires_grad]
            out = self._first(module, plain, args, kwargs)
            if any(t._genie_id != vid for t, vid in grad_ids):
                # It changes an argument that requires grad in place (an
                # in-place ReLU, torchvision's ResNets): a capture would run
                # it on aliases that are leaves, which torch refuses to
                # change in place (the call failed), and its autograd node
                # could not hand the change out. It runs plainly.
                fam.failed = True
            if not _plain_result(out):
                # A dict or an object: _GradFn could not hand its tensors out,
                # and gradients through them would stop at the aliases.
                fam.failed = True
            if slots:
                # Captures run the call on copies of its lists: one that
                # changes its lists (puts a tensor in one) is never templated.
                try:
                    if _writes(args, kwargs, sig, slots):
                        fam.failed = True
                except _Ineligible:
                    fam.failed = True
            return out
        return self._grad_capture(fam, module, plain, args, kwargs, lazies, ints)

    def _grad_capture(self, fam, module, plain, args, kwargs, lazies, ints, check=None):
        s = self.session
        modules = list(module.modules())
        if _hooked(modules):
            self.never.add(module)
            return plain(module, args, kwargs)
        sources = _sources(modules)
        exts = lazies + [t for _, _, t in sources]
        flags = tuple(t.requires_grad for t in exts)
        if not any(flags):
            return plain(module, args, kwargs)  # nothing to differentiate
        call = _GradCapture(self, fam, module, plain, args, kwargs, lazies, exts, flags)
        call.check = check
        if check is None:
            fam.captures += 1
        out, opened, guard = self._proving(module, modules, call.run)
        ids_before = call.ids
        call.forwarded()
        if opened is None:
            return out
        try:
            words, floats, start_word, start_float, start_id = self._whole(opened)
            cap = self._analyse(ints, words[start_word:], floats[start_float:], start_float, start_id,
                                s._next_id - start_id, exts, sources, out, (), None, ids_before)
        except _Ineligible:
            fam.failed = True
            fam.forget()
            return out
        cap.grad_flags = flags
        cap.guard = guard
        call.cap = cap
        if check is None:
            self._learn(fam, cap)
        elif not (check.predicts(cap) and check.grad_flags == flags):
            self.refuted += 1
            fam.symbolic = None
            fam.bwd_lines = {}
            fam.last = [cap]
            call.cap = None  # its backward has nothing to check or learn for
            self._mismatch(fam)
        else:
            self.confirmed += 1
        self._settle(fam)
        return out

    def _learn_backward(self, call, grads, result, words, floats, start_word, start_float, start_id):
        """Analyses the records of a proving capture's backward; two identical
        ones (same forward records and gradients) prove the backward template
        that replays of the forward template use."""
        s = self.session
        if s.words is not words or s.floats is not floats or [t._genie_id for t in call.exts] != call.ids:
            return
        given = [g for g in grads if g is not None]
        if any(type(g) is not LazyTensor for g in given):
            return
        fwd = call.cap
        pattern, gints = _grad_pattern(grads)
        exts = given + list(call.exts) + _internals(fwd.out_pos, fwd.n_ids, fwd.raw[3], fwd.words, None)
        # Its integers: the forward's, then the gradients' (lines in Ts reach both).
        cap = self._analyse(fwd.ints + gints, words[start_word:], floats[start_float:], start_float, start_id,
                            s._next_id - start_id, exts, (), tuple(result), ())
        fam = call.fam
        if SYMBOLIC and not fwd.draws and not fwd.randoms:
            self._learn_lines(fam, fwd, pattern, cap, call.check)
        if call.check is not None:
            return
        key = (fwd.ints, fwd.masked, fwd.rest, pattern, gints)
        prev = fam.bwd_last.get(key)
        fam.bwd_last[key] = cap
        if prev is not None and prev.masked == cap.masked and prev.rest == cap.rest:
            tpl = fam.exact.get(fwd.ints)
            if tpl is not None and tpl.masked == fwd.masked and tpl.rest == fwd.rest and \
                    len(tpl.backward) < _EXACT_LIMIT:
                btpl = self._template(cap, None, (), ())
                btpl.generation = None  # the forward's guards hold for its backward
                tpl.backward[(pattern, gints)] = btpl

    def _learn_lines(self, fam, fwd, pattern, cap, check):
        """The backward of a grad-mode template with a T, for the gradients
        `pattern`: lines through the family's latest backward captures (as
        _fit fits a forward's), proven by a later one that they predict once
        the forward template is proven and predicts the forwards of them all.
        A check capture's backward (`check`: the template) must be what its
        backward template predicts, or that is dropped."""
        sym = fam.symbolic

        def holds(f):
            return sym is not None and len(f.ints) == len(sym.guards) and sym.fits(f.ints) and \
                sym.predicts(f) and sym.grad_flags == f.grad_flags
        if check is not None:
            btpl = check.backward.get(pattern)
            if btpl is not None and len(cap.ints) == len(btpl.guards) and btpl.fits(cap.ints):
                if sym is check and holds(fwd) and btpl.predicts(cap):
                    self.confirmed += 1
                else:
                    self.refuted += 1
                    del check.backward[pattern]
                    fam.bwd_lines.pop(pattern, None)
            return
        if sym is not None and pattern in sym.backward:
            return
        entry = fam.bwd_lines.get(pattern)
        if entry is None:
            entry = fam.bwd_lines[pattern] = [None, []]
        c, pairs = entry  # the candidate, and (forward, backward) captures
        if c is not None:
            base, t_index, guards, affine = c
            if len(cap.ints) == len(base.ints) and _on_lines(cap.ints, t_index, guards) and \
                    _predicts(base.masked, base.rest, t_index, affine, cap):
                if holds(fwd) and all(holds(f) for f, _ in pairs):
                    if len(sym.backward) < _EXACT_LIMIT:
                        btpl = self._template(base, t_index, guards, affine)
                        btpl.generation = None  # the forward's guards hold for its backward
                        sym.backward[pattern] = btpl
                    fam.bwd_lines.pop(pattern)
                    return
            else:
                c = entry[0] = None
        # Backward captures from before the forward was proven count too.
        pairs = [(f, b) for f, b in pairs if b.ints != cap.ints] + [(fwd, cap)]
        if sym is not None:
            pairs = [(f, b) for f, b in pairs if holds(f)]
        entry[1] = pairs[-_WINDOW:]
        if c is None:
            entry[0] = _fit([b for _, b in entry[1]])


def _earned(fam):
    """Whether a call of `fam` that no template serves may be captured to
    prove one: always for its first _FREE_CAPTURES captures, then while it
    has a replay for every two captures. Calls whose integers seldom repeat
    (a bag of indices of random length, halved) run plainly rather
    than pay for captures that prove little, and the calls inside them get
    templates; once the templates it has earn enough, it captures again."""
    return fam.captures < _FREE_CAPTURES or 2 * fam.hits >= fam.captures


def _ts(ints, t_index):
    """A call's Ts for a template whose Ts are at `t_index` (None: exact, no Ts)."""
    return () if t_index is None else tuple(ints[i] for i in t_index)


def _on_lines(ints, t_index, guards):
    t = tuple(ints[i] for i in t_index)
    for i, b, terms in guards:
        for k, a in terms:
            b += a * t[k]
        if ints[i] != b:
            return False
    return True


def _predicts(masked, rest, t_index, affine, cap):
    """Whether `cap` recorded the words (`masked`, `rest`) with the lines `affine` at cap's Ts."""
    if cap.rest != rest or len(cap.masked) != len(masked):
        return False
    predicted = list(masked)
    t = _ts(cap.ints, t_index)
    for p, b, terms in affine:
        for k, a in terms:
            b += a * t[k]
        predicted[p] = b
    return tuple(predicted) == cap.masked


def _fit(caps):
    """The candidate lines through captures `caps` (the latest last; no two
    with the same integers), or None: (base capture, t_index, guards, affine).

    Of the captures recorded like the latest (same words but for integers,
    same ids and results), the integers that differ between them are taken
    in order, and each whose values are not an affine function of the Ts
    taken before becomes a T (a size of its own: the length of another
    bag). Every integer and every word that differs must then be b + the
    sum of a_k * T_k with integers b and a_k, through all of them. With n
    Ts this takes n + 1 captures in general position: a proof (see _learn)
    is a later capture the lines predict, so one T takes three captures and
    three Ts (three bags whose lengths vary apart) five."""
    last = caps[-1]
    caps = [c for c in caps if len(c.ints) == len(last.ints) and c.rest == last.rest and
            len(c.masked) == len(last.masked) and not c.draws and not c.randoms]
    # Through as many of the latest as lines go (older ones may be from
    # before a branch the program took since: a cache rebuilt past a length).
    for k in range(len(caps), 1, -1):
        found = _fit_all(caps[-k:])
        if found is not None:
            return found
    return None


def _fit_all(caps):
    """_fit through every one of `caps`, recorded alike, or None."""
    last = caps[-1]
    n = len(last.ints)
    varying = [i for i in range(n) if any(c.ints[i] != last.ints[i] for c in caps)]
    moving = set(varying)
    if not varying:
        return None
    # The Ts: greedily, integers independent of the ones before (exact rationals).
    t_index = []
    rows = [[Fraction(1)] for _ in caps]
    rank = 1
    for i in varying:
        if rank == len(caps) or len(t_index) == _MAX_TS:
            break
        trial = [r + [Fraction(c.ints[i])] for r, c in zip(rows, caps)]
        if _rank(trial) > rank:
            rows, rank = trial, rank + 1
            t_index.append(i)
    # A square system of rank rows: its inverse gives every line.
    chosen = []
    for r in range(len(caps)):
        if _rank([rows[k] for k in chosen + [r]]) > len(chosen):
            chosen.append(r)
            if len(chosen) == rank:
                break
    inverse = _inverse([rows[k] for k in chosen])
    # In integers: the inverse times the common denominator of its entries.
    denominator = 1
    for r in inverse:
        for v in r:
            denominator = denominator * v.denominator // math.gcd(denominator, v.denominator)
    scaled = [[int(v * denominator) for v in r] for r in inverse]
    ints_rows = [[int(v) for v in r] for r in rows]

    def line(values):
        picked = [values[k] for k in chosen]
        x = []
        for r in scaled:
            v = sum(a * b for a, b in zip(r, picked))
            if v % denominator:
                return None
            x.append(v // denominator)
        for r, v in zip(ints_rows, values):
            if sum(a * b for a, b in zip(r, x)) != v:
                return None
        return x[0], tuple((k, a) for k, a in enumerate(x[1:]) if a)
    guards = []
    for i in range(n):
        if i not in moving:
            guards.append((i, last.ints[i], ()))
            continue
        found = line([c.ints[i] for c in caps])
        if found is None:
            return None
        guards.append((i, *found))
    affine = []
    for p, x in enumerate(last.masked):
        if any(c.masked[p] != x for c in caps):
            found = line([c.masked[p] for c in caps])
            if found is None:
                return None
            affine.append((p, *found))
    return caps[0], tuple(t_index), tuple(guards), tuple(affine)


def _rank(rows):
    """The rank of a small matrix of Fractions (rows: lists)."""
    m = [list(r) for r in rows]
    rank = 0
    for col in range(len(m[0]) if m else 0):
        pivot = next((r for r in range(rank, len(m)) if m[r][col] != 0), None)
        if pivot is None:
            continue
        m[rank], m[pivot] = m[pivot], m[rank]
        for r in range(rank + 1, len(m)):
            f = m[r][col] / m[rank][col]
            if f:
                m[r] = [x - f * y for x, y in zip(m[r], m[rank])]
        rank += 1
    return rank


def _inverse(rows):
    """The inverse of a small invertible square matrix of Fractions."""
    n = len(rows)
    m = [list(r) + [Fraction(int(i == j)) for j in range(n)] for i, r in enumerate(rows)]
    for col in range(n):
        pivot = next(r for r in range(col, n) if m[r][col] != 0)
        m[col], m[pivot] = m[pivot], m[col]
        p = m[col][col]
        m[col] = [x / p for x in m[col]]
        for r in range(n):
            if r != col and m[r][col]:
                f = m[r][col]
                m[r] = [x - f * y for x, y in zip(m[r], m[col])]
    return [r[n:] for r in m]


def _run(program, env, w, randoms=None, session=None):
    """Record mode: runs the recorded ops on the CPU values. The values of
    random ops (`randoms`, see _parse) are recorded as a capture records
    them: sent as each op runs, their payload ids written into `w`."""
    for index, (func, args, fast, slow, kwargs, kw_slow, outs, single) in enumerate(program):
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
        elif outs:
            for slot, o in zip(outs, out):
                if slot is not None:
                    env[slot] = o
        if randoms and index in randoms:
            for p, slot in randoms[index]:
                w[p] = session._send_payload(env[slot])


# Result specs: ("t", relative id, position of its output record's id word),
# ("e", external index), ("c", constant), (tuple or list, specs), ("o", key)
# (an argument object returned as is: a KV cache object), ("m", class, names,
# specs, by field) (a dict, or a dataclass that is a dict: transformers'
# ModelOutput, rebuilt from its fields).

def _result(out, start_id, exts, out_pos, result_ids, objects=None):
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
    if objects and id(out) in objects:
        return ("o", objects[id(out)])
    if t is tuple or t is list:
        return (t, tuple(_result(o, start_id, exts, out_pos, result_ids, objects) for o in out))
    if out is None or t in (int, float, bool, str):
        return ("c", out)
    if isinstance(out, dict):
        return _mapping_result(out, start_id, exts, out_pos, result_ids, objects)
    raise _Ineligible(f"a result of type {t.__name__}")


def _mapping_result(out, start_id, exts, out_pos, result_ids, objects):
    """The spec of a dict result: a dict or OrderedDict by its items, a
    dataclass that is a dict (ModelOutput) by its fields, once rebuilding
    it so gives the same keys and values."""
    t = type(out)
    if t is dict or t is collections.OrderedDict:
        names, by_field = tuple(out.keys()), False
        if not all(type(k) is str for k in names):
            raise _Ineligible("a dict result with keys other than strings")
        values = [out[k] for k in names]
        rebuilt = t(zip(names, values))
    elif dataclasses.is_dataclass(t):
        names, by_field = tuple(f.name for f in dataclasses.fields(t)), True
        values = [getattr(out, k) for k in names]
        try:
            rebuilt = t(**dict(zip(names, values)))
        except Exception:
            raise _Ineligible(f"a result of type {t.__name__} that its fields do not rebuild") from None
    else:
        raise _Ineligible(f"a result of type {t.__name__}")
    if list(rebuilt.keys()) != list(out.keys()) or any(rebuilt[k] is not out[k] for k in out) or \
            (by_field and any(getattr(rebuilt, k) is not v for k, v in zip(names, values))):
        raise _Ineligible(f"a result of type {t.__name__} that its fields do not rebuild")
    specs = tuple(_result(v, start_id, exts, out_pos, result_ids, objects) for v in values)
    return ("m", t, names, specs, by_field)


def _call_objects(args, kwargs):
    """The call's mutable arguments that a result may be, returned as the
    same object (a KV cache object the call updates and returns):
    id -> ("a", position) or ("k", name)."""
    found = {}
    for key, a in [(("a", i), a) for i, a in enumerate(args)] + [(("k", k), a) for k, a in kwargs.items()]:
        if a is not None and not isinstance(a, (torch.Tensor, int, float, bool, str, tuple)):
            found.setdefault(id(a), key)
    return found


def _build(spec, base, exts, values, w, made, call=None):
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
                lazy = LazyTensor._unmade(shape, stride, offset, _DTYPES[w[p + 1]], base + rel, w[p + 4 + 2 * rank])
            else:
                lazy = LazyTensor._wrap(values[len(exts) + rel], shape, stride, offset, base + rel,
                                        w[p + 4 + 2 * rank])
            made[rel] = lazy
        return lazy
    if kind == "e":
        return exts[spec[1]]
    if kind == "c":
        return spec[1]
    if kind == "o":
        where, key = spec[1]
        return call[0][key] if where == "a" else call[1][key]
    if kind == "m":
        _, cls, names, specs, by_field = spec
        built = [_build(x, base, exts, values, w, made, call) for x in specs]
        return cls(**dict(zip(names, built))) if by_field else cls(zip(names, built))
    return kind(_build(x, base, exts, values, w, made, call) for x in spec[1])


def _patch(tpl, w, base, ids, exts, t):
    """Patches `w`, a copy of `tpl`'s words, for a call whose first id is
    `base`, on `exts` with ids `ids`, at Ts `t` (its float indices aside)."""
    for p, r in tpl.internal:
        w[p] = base + r
    for p, e in tpl.ext_ids:
        w[p] = ids[e]
    for p, e in tpl.ext_storage:
        w[p] = exts[e]._genie_storage
    for p, b, terms in tpl.affine:
        for k, a in terms:
            b += a * t[k]
        w[p] = b


def _result_patches(tpl):
    """The patches (Template.patches) of a template's words that the
    records of its results and writes hold: a
    replay that sends a RUN step patches only these for _build."""
    wanted = set()

    def walk(spec):
        kind = spec[0]
        if kind == "t":
            p = spec[2]  # the id word; then dtype, rank, sizes, strides, offset, storage
            wanted.update(range(p, p + 5 + 2 * tpl.words[p + 2]))
        elif kind == "m":
            for x in spec[3]:
                walk(x)
        elif kind not in ("e", "c", "o"):
            for x in spec[1]:
                walk(x)

    walk(tpl.result)
    for _, spec in tpl.writes:
        walk(spec)
    return [patch for patch in tpl.patches() if patch[0] in wanted]  # no float word is a result's


def _storage_word(w, p):
    """The storage id of the output record whose id word is at `p` (see _build)."""
    return w[p + 4 + 2 * w[p + 2]]


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
            state = _state_type(t)
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

    try:
        for k, a in enumerate(args):
            path.append(("i", k))
            visit(a, False, False)
            path.pop()
        for k, v in kwargs.items():
            sig.append(k)
            path.append(("k", k))
            visit(v, False, False)
            path.pop()
    finally:
        visit = None  # see _no_cycle
    return sig


_STATE_TYPES = {}  # type -> whether its objects are walked as state (_is_state_type)


def _state_type(t):
    state = _STATE_TYPES.get(t)
    if state is None:
        state = _STATE_TYPES[t] = _is_state_type(t)
    return state


_MODULE_OWN = frozenset(torch.nn.Module().__dict__)  # nn.Module's own bookkeeping in every module's __dict__
_BEYOND = object()  # _state_of: past the budget or the depth, not compared
_MODULE_STATE_LIMIT = 1 << 16  # values a proving call's _roots_state looks at
_GUARD_LIMIT = 1024  # values a replay's guard looks at (see _exts)
_IMMUTABLE = (type(None), int, float, bool, str, bytes, complex, torch.dtype, torch.device)


def _state_roots(modules):
    """Where `modules` keep Python state a call may read or change: their
    attributes (other than nn.Module's bookkeeping) that are lists, dicts,
    sets, plain objects (_is_state_type, a config object) or tuples holding
    any of these, and the lists, dicts and sets their forward code names as
    globals, and the scalar globals it names (_Globals). Other attributes
    are scalars, tensors, modules and the like, which only an attribute set
    changes (_generation)."""
    roots, ids = [], set()
    modules = list(modules)
    for m in modules:
        for k, v in m.__dict__.items():
            if k not in _MODULE_OWN and id(v) not in ids and _holds_state(v):
                ids.add(id(v))
                roots.append(v)
    for t in {type(m) for m in modules}:
        g, names = _forward_globals(t)
        scalars = []
        for name in names:
            v = g.get(name)
            if type(v) in (list, dict, set) and id(v) not in ids:
                ids.add(id(v))
                roots.append(v)
            elif type(v) in (int, float, bool, str):
                scalars.append(name)
        if scalars:
            roots.append(_Globals(g, tuple(scalars)))
    return roots


class _Globals:
    """Scalar globals a forward names (a flag, a temperature), as a root of
    _state_roots: compared by value."""
    __slots__ = ("space", "names")

    def __init__(self, space, names):
        self.space = space
        self.names = names


def _holds_state(v):
    t = type(v)
    if t is list or t is set or isinstance(v, dict):
        return True
    if t is tuple:
        return any(_holds_state(x) for x in v)
    if isinstance(v, _IMMUTABLE) or isinstance(v, (torch.Tensor, torch.nn.Module)):
        return False
    return _state_type(t)


def _roots_state(roots, limit):
    """What `roots` (see _state_roots) hold, as a value to compare: scalars
    by value, tensors, modules and other objects by identity, lists, tuples,
    dicts, sets and plain objects walked; past `limit` values, or deeper than
    _STATE_DEPTH, not compared. A call that changes it (appends to a list
    attribute, counts in a dict) is never templated: a replay, which runs
    none of the call's Python, would not change it. A replay whose modules'
    state differs from its template's (a config attribute the program set)
    captures again."""
    budget = [limit]
    seen = {}
    return tuple(_state_of(v, 0, budget, seen) for v in roots)


class _Watch:
    """What a module call must leave as it was to be templated: its modules'
    Python state (_state_roots) and the count of effects a replay would not
    have (_counted)."""
    __slots__ = ("roots", "effects", "state")

    def __init__(self, modules):
        self.roots = _state_roots(modules)
        self.effects = _effects[0]
        self.state = _roots_state(self.roots, _MODULE_STATE_LIMIT)

    def changed(self):
        return _effects[0] != self.effects or _roots_state(self.roots, _MODULE_STATE_LIMIT) != self.state

    def guard(self):
        """A replay's guard on the state (see _exts): roots and what they
        hold, or None when the modules keep none."""
        return (self.roots, _roots_state(self.roots, _GUARD_LIMIT)) if self.roots else None


_GLOBAL_NAMES = {}  # module class -> (its forward's globals, the names its code uses)


def _forward_globals(cls):
    """The global names that `cls.forward` uses (its nested functions' and
    lambdas' too), for _state_roots: a list, dict or set among them (a
    global list of activations appended to) is state a replay would not change."""
    found = _GLOBAL_NAMES.get(cls)
    if found is None:
        fn = getattr(cls, "forward", None)
        code = getattr(fn, "__code__", None)
        names = set()
        codes_ = [code] if code is not None else []
        while codes_:
            c = codes_.pop()
            names.update(c.co_names)
            codes_.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
        found = _GLOBAL_NAMES[cls] = (fn.__globals__ if code is not None else {}, tuple(sorted(names)))
    return found


def _state_of(v, depth, budget, seen):
    budget[0] -= 1
    if budget[0] < 0 or depth > _STATE_DEPTH:
        return _BEYOND
    t = type(v)
    if v is None or t is int or t is float or t is bool or t is str:
        return (t, v)
    if isinstance(v, (torch.Tensor, torch.nn.Module)):
        return id(v)
    if t is _Globals:
        space = v.space
        return tuple((name, type(x), x) for name in v.names for x in (space.get(name),))
    if id(v) in seen:
        return seen[id(v)]
    seen[id(v)] = (len(seen),)
    if t is list or t is tuple:
        return (t, _items_state(enumerate(v), depth, budget, seen))
    if t is set or t is frozenset:
        return (t, frozenset(v))
    if isinstance(v, dict):
        return (t, _items_state(v.items(), depth, budget, seen))
    if _state_type(t):
        return (t, id(v), _items_state(vars(v).items(), depth, budget, seen))
    return (t, id(v))


def _items_state(items, depth, budget, seen):
    """_state_of for a container's (key, value) items; scalars inline, the
    bulk of a config object's attributes."""
    out = []
    for k, x in items:
        t = type(x)
        if x is None or t is int or t is float or t is bool or t is str:
            out.append((k, t, x))
            budget[0] -= 1
        else:
            out.append((k, _state_of(x, depth + 1, budget, seen)))
    return tuple(out) if budget[0] >= 0 else _BEYOND


# _no_cycle: a recursive closure is a reference cycle (the function and its
# cell). Whatever it holds, LazyTensors included, then dies in the cyclic
# garbage collector, which on torch 1.13 clears a tensor's Python object
# even while an autograd graph still holds the tensor: the graph later gives
# back an object without its attributes. Such closures are unbound after use.


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


def _hooked(modules):
    """Whether forward hooks other than genie's own would run in a call of these modules."""
    return any(m._forward_hooks or m._forward_pre_hooks for m in modules) or \
        len(torch.nn.modules.module._global_forward_hooks) != 1


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


# ---- grad mode: module calls as custom autograd functions -------------------

class _GradFn(torch.autograd.Function):
    """A module call in grad mode, as one node of the program's autograd
    graph: `call` (a _GradCapture or _GradReplay) makes its results and,
    given their gradients, the gradients of its inputs (arguments, then
    parameters and buffers)."""

    @staticmethod
    def forward(ctx, call, *tensors):
        ctx.set_materialize_grads(False)
        ctx.call = call
        return call.forward()

    @staticmethod
    def backward(ctx, *grads):
        # Inside backward() CaptureAll is on: the replays' CPU ops must not go to it.
        with device.outside_capture_all():
            return (None, *ctx.call.backward(grads))


class _Value:
    """A value of a forward call that its backward reads, for the backward's analysis and replay."""
    __slots__ = ("_genie_id", "_genie_storage", "_genie_value")

    def __init__(self, vid, storage, value):
        self._genie_id = vid
        self._genie_storage = storage
        self._genie_value = value


def _internals(out_pos, n_ids, base, w, values):
    """_Values for the ids a forward call made: id base + r, storage from its output record in `w`."""
    found = []
    for r in range(n_ids):
        found.append(_Value(base + r, _storage_word(w, out_pos[r]),
                            None if values is None else values[len(values) - n_ids + r]))
    return found


def _grad_pattern(grads):
    """The key of a backward template: which results got gradients, their dtypes, ranks and integers."""
    pattern, ints = [], []
    for g in grads:
        if g is None:
            pattern.append(None)
        else:
            shape = g.shape
            pattern.append((g.dtype, len(shape)))
            ints.extend(shape)
            ints.extend(g.stride())
            ints.append(g.storage_offset())
    return tuple(pattern), tuple(ints)


def _alias(t, requires_grad, owner):
    """Another LazyTensor object for `t`'s value (same id, no record). Only
    the owner releases the id in live mode."""
    value = t.__dict__.get("_genie_value")
    if value is None:  # live mode, a meta value not made yet
        a = LazyTensor._unmade(t.shape, t.stride(), t.storage_offset(), t.dtype, t._genie_id, t._genie_storage)
    else:
        a = LazyTensor._wrap(value, t.shape, t.stride(), t.storage_offset(), t._genie_id, t._genie_storage)
    if not owner:
        a._genie_alias = True
    if requires_grad:
        a.requires_grad_(True)
    return a


def _plain_result(x):
    """Whether `x` is LazyTensors, Python scalars and None in tuples and lists (what _GradFn returns)."""
    t = type(x)
    if t is tuple or t is list:
        return all(_plain_result(i) for i in x)
    return t is LazyTensor or x is None or t in (int, float, bool, str)


def _flatten(x, flat):
    t = type(x)
    if t is LazyTensor:
        flat.append(x)
    elif t is tuple or t is list:
        for i in x:
            _flatten(i, flat)


def _unflatten(x, it):
    t = type(x)
    if t is LazyTensor:
        return next(it)
    if t is tuple or t is list:
        return t(_unflatten(i, it) for i in x)
    return x


class _GradCall:
    def __init__(self, templates, module, plain, args, kwargs, lazies, exts, flags):
        self.templates, self.module, self.plain = templates, module, plain
        self.args, self.kwargs, self.lazies, self.exts, self.flags = args, kwargs, lazies, exts, flags
        self.ids = [t._genie_id for t in exts]
        self.generation = _generation[0]
        self.rng = None  # the CPU generator's state before a forward that draws (see recompute)
        self.updated = ()  # the inputs its forward changed in place (a batch norm's batch count)

    def forwarded(self):
        """After the forward: the inputs it changed in place, and the ids
        its backward expects them to have."""
        ids = [t._genie_id for t in self.exts]
        self.updated = [k for k, (i, j) in enumerate(zip(self.ids, ids)) if i != j]
        self.ids = ids

    def run(self):
        flat = _GradFn.apply(self, *self.exts)
        out, self.out = self.out, None
        # The call (held by the autograd node) keeps no reference to the
        # results, whose grad_fn is that node: see _no_cycle.
        return _unflatten(out, iter(flat))

    def wanted(self):
        """Indices of the inputs whose gradients the call gives: those that
        require grad, each tensor once."""
        seen = set()
        found = []
        for k, (t, f) in enumerate(zip(self.exts, self.flags)):
            if f and id(t) not in seen:
                seen.add(id(t))
                found.append(k)
        return found

    def run_module(self, aliased):
        """Runs the module with autograd on: on aliases of its arguments (a
        graph that ends at this node) or on the program's own tensors.
        Returns its results and the tensors its gradients are taken for."""
        args, kwargs, inputs = self.args, self.kwargs, self.exts
        if aliased:
            aliases = {}

            def inner(t):
                a = aliases.get(id(t))
                if a is None:
                    a = aliases[id(t)] = _alias(t, t.requires_grad, False)
                return a
            args = [_map_lazies(a, inner) for a in args]
            kwargs = {k: _map_lazies(v, inner) for k, v in kwargs.items()}
            inputs = [aliases[id(t)] if k < len(self.lazies) else t for k, t in enumerate(self.exts)]
            lists = _lists(args, kwargs)
        self.templates.grad_depth += 1
        try:
            with torch.enable_grad():
                out = self.plain(self.module, args, kwargs)
        finally:
            self.templates.grad_depth -= 1
        if aliased:
            if _lists(args, kwargs) != lists:
                # The call ran on copies of the program's lists (its first call did not change them).
                raise CaptureError(f"genie: {type(self.module).__name__} changed a list argument in grad mode; "
                                   "GENIE_TEMPLATES=0 captures it op by op")
            for t in self.lazies:
                a = aliases.get(id(t))
                if a is not None and a._genie_id != t._genie_id:
                    # Changed in place (an accumulator passed in): the
                    # program's tensor takes the alias's new id and owns it.
                    if t.requires_grad:
                        raise CaptureError(f"genie: {type(self.module).__name__} changed an argument that requires "
                                           "grad in place; GENIE_TEMPLATES=0 captures it op by op")
                    t._genie_id = a._genie_id
        return out, [inputs[k] for k in self.wanted()]

    def differentiate(self, outs, inputs, grads):
        """Gradients of `inputs` (ordered as wanted()) through the graph from `outs`, recorded."""
        pairs = [(o, g) for o, g in zip(outs, grads) if g is not None and o.requires_grad]
        result = [None] * len(self.exts)
        if pairs:
            # A parameter frozen since the forward (requires_grad_(False)) still
            # gets its gradient, as the graph made at the forward gives it.
            frozen = [t for t in inputs if not t.requires_grad]
            for t in frozen:
                t.requires_grad_(True)
            try:
                # retain_graph: this node may be differentiated again (retain_graph or
                # create_graph outside), and its inner graph lives as long as it does.
                found = torch.autograd.grad([o for o, _ in pairs], inputs, [g for _, g in pairs], allow_unused=True,
                                            retain_graph=True, create_graph=_grad_enabled())
            finally:
                for t in frozen:
                    t.requires_grad_(False)
            for k, g in zip(self.wanted(), found):
                result[k] = g
        return result

    def recompute(self, grads):
        """Runs the call again with autograd on and differentiates it, as
        checkpointing does (its ops are recorded again). With create_graph the
        call runs on the program's own tensors, so the gradients' own graph
        reaches them."""
        if _generation[0] != self.generation:
            raise RuntimeError("genie: a module was changed (an attribute set) between a call and its backward, "
                               "which must run that call again")
        # What the forward changed in place is changed again: it is put back
        # once differentiated (autograd checks what it saved). The modules'
        # buffers too, which some kernels change without saying so (torch
        # 1.13's native_batch_norm, a batch norm's running statistics).
        buffers = {id(t) for m in self.module.modules() for t in m._buffers.values()}
        with torch.no_grad():
            kept = [(t, t.detach().clone()) for k, t in enumerate(self.exts)
                    if k in self.updated or id(t) in buffers]
        if self.rng is None:
            out, inputs = self.run_module(aliased=not _grad_enabled())
        else:
            # The forward's random values (dropout's masks) again: the
            # generator as it was then, and as it is now afterwards.
            with torch.random.fork_rng(devices=[]):
                torch.set_rng_state(self.rng)
                out, inputs = self.run_module(aliased=not _grad_enabled())
        outs = []
        _flatten(out, outs)
        found = self.differentiate(outs, inputs, grads)
        with torch.no_grad():
            for t, v in kept:
                t.copy_(v)
        return found


class _GradCapture(_GradCall):
    """A proving capture in grad mode: the module runs on aliases of its
    arguments with autograd on, inside _GradFn's forward; its backward
    differentiates that inner graph, recorded."""

    def __init__(self, templates, fam, module, plain, args, kwargs, lazies, exts, flags):
        super().__init__(templates, module, plain, args, kwargs, lazies, exts, flags)
        self.fam = fam
        self.cap = None
        self.check = None  # the template with a T this capture checks

    def forward(self):
        start = self.templates.session._next_id
        self.rng = torch.get_rng_state()  # whether the call draws is not known yet
        out, self.inputs = self.run_module(aliased=True)
        self.inner_outs = []
        outer = {}

        def rebuild(x):
            t = type(x)
            if t is LazyTensor:
                o = outer.get(id(x))
                if o is None:
                    self.inner_outs.append(x)
                    if x._genie_id >= start:  # made by the call: the program's object owns the id
                        o = _alias(x, False, True)
                        x._genie_alias = True
                    else:
                        o = x
                    outer[id(x)] = o
                return o
            if t is tuple or t is list:
                return t(rebuild(i) for i in x)
            if not _plain_result(x):
                raise CaptureError(f"genie: {type(self.module).__name__} returned a {t.__name__} in grad mode, where "
                                   "its first call returned tensors; GENIE_TEMPLATES=0 captures it op by op")
            return x
        self.out = rebuild(out)
        rebuild = None  # see _no_cycle
        flat = []
        _flatten(self.out, flat)
        return tuple(flat)

    def backward(self, grads):
        if _grad_enabled():
            return self.recompute(grads)
        t = self.templates
        s = t.session
        words, floats = s.words, s.floats
        start_word, start_float, start_id = len(words), len(floats), s._next_id
        if self.cap is not None:
            if not (t.capturing or t.learning):
                s.lifted = {}  # the constants its ops lift (see _parse)
            t.learning += 1  # records parsed below: replays inside go up whole
        try:
            result = self.differentiate(self.inner_outs, self.inputs, grads)
        finally:
            if self.cap is not None:
                t.learning -= 1
        if self.cap is not None:
            try:
                t._learn_backward(self, grads, result, words, floats, start_word, start_float, start_id)
            except _Ineligible:
                pass
        return result


class _GradReplay(_GradCall):
    """A replay in grad mode: the forward template's records and values, and
    at backward the backward template's for the gradients given; without one
    (other gradients, or create_graph), the call runs again (recompute)."""

    def __init__(self, templates, tpl, exts, ints, module, plain, args, kwargs, lazies):
        super().__init__(templates, module, plain, args, kwargs, lazies, exts, tpl.grad_flags)
        self.tpl, self.ints = tpl, ints
        self.release = None

    def forward(self):
        t = self.templates
        s = t.session
        tpl = self.tpl
        if tpl.draws or tpl.randoms:
            self.rng = torch.get_rng_state()
        self.base, self.values, self.w = t._replay_words(tpl, self.exts, self.ints)
        if tpl.updates:
            self.forwarded()
        if s.remote and tpl.dead:
            # The backward reads the forward's values: freed once this node is.
            self.release = _Release(s, [self.base + r for r in tpl.dead])
        self.out = _build(tpl.result, self.base, self.exts, self.values, self.w, {})
        flat = []
        _flatten(self.out, flat)
        return tuple(flat)

    def backward(self, grads):
        t = self.templates
        s = t.session
        tpl = self.tpl
        if any(x._genie_id != i for x, i in zip(self.exts, self.ids)):
            raise RuntimeError("genie: one of the variables needed for gradient computation has been modified by an "
                               "inplace operation (an argument, parameter or buffer of a replayed module call)")
        pattern, gints = _grad_pattern(grads)
        if tpl.t_index is None:
            btpl = tpl.backward.get((pattern, gints))
        else:
            # A template with a T: lines in the forward's integers and the gradients'.
            gints = self.ints + gints
            btpl = tpl.backward.get(pattern)
            if btpl is not None and (len(gints) != len(btpl.guards) or not btpl.fits(gints)):
                btpl = None
        if btpl is None or _grad_enabled() or any(type(g) is not LazyTensor for g in grads if g is not None):
            return self.recompute(grads)
        exts = [g for g in grads if g is not None] + self.exts + \
            _internals(tpl.out_pos, tpl.n_ids, self.base, self.w, self.values)
        base, values, w = t._replay_words(btpl, exts, gints)
        if s.remote and btpl.dead:
            s.released.extend([base + r for r in btpl.dead])
        t.replays += 1
        t.replayed_ops += len(btpl.program)
        return list(_build(btpl.result, base, exts, values, w, {}))


class _Release:
    """Live mode: releases a replayed forward's values when its autograd node is freed."""
    __slots__ = ("session", "ids")

    def __init__(self, session, ids):
        self.session, self.ids = session, ids

    def __del__(self):
        try:
            self.session.released.extend(self.ids)
        except AttributeError:
            pass


def _lists(args, kwargs):
    """The contents of the lists in a call's arguments, by identity."""
    found = []

    def walk(x):
        t = type(x)
        if t is tuple or t is list:
            if t is list:
                found.append((id(x), tuple(id(i) for i in x)))
            for i in x:
                walk(i)
    for a in args:
        walk(a)
    for v in kwargs.values():
        walk(v)
    return found


def _sequences(x):
    """Whether the tensors in `x` are held by lists and tuples only."""
    t = type(x)
    if t is tuple or t is list:
        return all(_sequences(i) for i in x)
    return not (t is dict or _state_type(t))


def _map_lazies(x, fn):
    t = type(x)
    if t is LazyTensor:
        return fn(x)
    if t is tuple or t is list:
        return t(_map_lazies(i, fn) for i in x)
    return x

