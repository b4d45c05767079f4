"""Live mode: an optimizer step's foreach calls, recorded from the calls of
its previous step.

An optimizer with foreach=True (phases.py makes it the default for Adam,
AdamW and SGD) makes the same few foreach calls at every step, on the same
lists of tensors: `torch._foreach_mul_(exp_avgs, beta1)`,
`torch._foreach_addcdiv_(params, exp_avgs, denom, step_size)`, and one in
its zero_grad, `torch._foreach_zero_(grads)`. Each is recorded from the
_Layout that capture keeps per form of a foreach call, but reaching it
costs more than the records: torch's dispatcher builds the call's argument
lists and calls LazyTensor.__torch_dispatch__, and capture works out the
call's form from every tensor's metadata to find its _Layout (a call of
Adam on 13 tensors: about 45 us on the 2-core CI machine, the dispatch
alone 9).

So while a live-mode step (or zero_grad) runs, `torch._foreach_*` are taken
at the Python level: the n-th call is checked against the n-th call of the
optimizer's previous step (_Call), and when it matches, its records are
appended from that call's _Layout directly (Session._from_layout, which
capture would have used): the same records, with this call's tensor ids and
numbers. It matches when it is the same function with its arguments in the
same places, in the same phase and module; each list of tensors holds the
same tensor objects as then (or, one by one, tensors of the same form:
gradients that backward() made anew), or the same results of an earlier
call of this step; each list of numbers has numbers of the same type, each
other number is a float again or the same value; no tensor requires grad in
grad mode (autograd would record the call); and no torch function or
dispatch mode is active. These are what capture's form of the call
(_layout_key) and its test for aliased targets (_aliased) depend on, so a
matching call gets the records capture would give it. A call that does not
match goes through torch, as do the rest of that step's calls, which become
the next step's. An optimizer whose steps miss _MISSES_LIMIT times in a row
is left to torch. GENIE_STEP_CALLS=0 leaves every call to torch.

zero_grad goes further (zero_grad, below): with set_to_none=False, when
the parameters hold the gradient objects that its last call zeroed, and
none has gained a grad_fn or come to require grad since, torch's loop over
the parameters would change nothing, and only its _foreach_zero_ calls,
the same as that call's, are made.

What a call taken this way skips besides the records: torch's dispatcher
bumps the version counter of every tensor an op writes in place (autograd
reads it to refuse a backward through a value changed since a forward saved
it). Where torch bumps a LazyTensor's at a foreach op (2.x; see
Session.foreach_bumps), the tensors that calls taken in place wrote have
theirs bumped once, at the end of the step, by one in-place foreach call
through the dispatcher that no session records (_bump_versions). Where it
does not (1.13), those requiring grad go with what capture noted of the
calls through torch (Session.note_foreach_written), bumped at the end of the
step as eager CPU's per-tensor foreach loop bumps them.
"""
import inspect
import operator
import weakref

import torch

from . import capture, device, lazy
from .capture import _WHOLE, _aliased, _form
from .lazy import LazyTensor

_MISSES_LIMIT = 8

# What a _Call checks per argument of the foreach op (see _check).
_ABSENT, _TENSORS, _RESULT, _NUMBERS, _FLOAT, _VALUE = range(6)

installed = False
_active = [None]  # the _Plan of the step running, or None
_plans = weakref.WeakKeyDictionary()  # optimizer -> {"step" or "zero_grad": _Plan}
_get_function_mode = getattr(torch._C, "_get_torch_function_mode", None)  # torch 1.13
_function_mode_on = getattr(torch._C, "_is_torch_function_mode_enabled", None)  # torch 2.x
_get_dispatch_mode = getattr(torch._C, "_get_torch_dispatch_mode", None)  # torch 1.13
_dispatch_depth = getattr(torch._C, "_len_torch_dispatch_stack", None)  # torch 2.x
_is = operator.is_


class _Call:
    """One foreach call of a step: the function, how many positional
    arguments and which keywords it was given, and, when its records came
    from a _Layout, the foreach op's argument plan, the layout and the checks."""
    __slots__ = ("fn", "nargs", "keywords", "at", "plan", "layout", "checks", "n", "inplace", "gives", "kind")

    def __init__(self, fn, args, kwargs, at):
        self.fn = fn
        self.nargs = len(args)
        self.keywords = tuple(kwargs)
        self.at = at  # the session's (phase, module) then, which a _Layout's records hold
        self.layout = None


class _Plan:
    __slots__ = ("calls", "building", "pos", "returned", "matching", "misses", "off", "taken", "missed", "written",
                 "zeroes", "skipped")

    def __init__(self):
        self.calls = None     # the previous step's _Calls
        self.building = None  # this step's
        self.pos = 0
        self.returned = None  # this step's results, per call (a list or tuple, or None: see _made)
        self.matching = False
        self.misses = 0  # in a row
        self.off = False
        self.taken = 0   # calls appended from the previous call's records
        self.missed = 0  # runs whose calls stopped matching the previous run's
        self.written = []  # the target lists of the calls taken in place this run
        self.zeroes = None  # zero_grad's: what its last call zeroed (see zero_grad)
        self.skipped = 0    # zero_grad's: calls that skipped torch's loop over the parameters


def counts(optimizer):
    """{"step" or "zero_grad": (calls taken, runs missed)} of an optimizer."""
    return {method: (plan.taken, plan.missed) for method, plan in _plans.get(optimizer, {}).items()}


def _modes_off():
    if _function_mode_on is not None and _function_mode_on():
        return False
    if _get_function_mode is not None and _get_function_mode() is not None:
        return False
    if _dispatch_depth is not None and _dispatch_depth():
        return False
    if _get_dispatch_mode is not None and _get_dispatch_mode() is not None:
        return False
    return not device._capturing_all[0]


def begin(optimizer, method="step"):
    """Called as a live-mode optimizer's `method` (its step, or zero_grad)
    starts, outside any other phase: returns the _Plan it runs with, or None."""
    if _active[0] is not None:
        return None
    plans = _plans.get(optimizer)
    if plans is None:
        try:
            plans = _plans[optimizer] = {}
        except TypeError:
            return None
    plan = plans.get(method)
    if plan is None:
        plan = plans[method] = _Plan()
    if plan.off or not _modes_off():
        return None
    plan.building = []
    plan.returned = []
    plan.pos = 0
    plan.matching = plan.calls is not None
    _active[0] = plan
    return plan


def end(plan):
    _active[0] = None
    if plan.written:
        session = lazy._session
        if session.foreach_bumps():
            _bump_versions(plan.written)
        else:
            for targets in plan.written:
                session.note_foreach_written(targets)
        plan.written = []
    miss = plan.calls is not None and (not plan.matching or plan.pos != len(plan.calls))
    plan.missed += miss
    plan.misses = plan.misses + 1 if miss else 0
    if plan.misses >= _MISSES_LIMIT:
        plan.off = True
        plan.calls = None
    else:
        plan.calls = plan.building
    plan.building = plan.returned = None


_zero_ = torch._foreach_zero_


def _bump_versions(written):
    """Bumps the version counter of each tensor that calls taken in place
    wrote, once, as torch's dispatcher does at every in-place op: one
    in-place foreach call through it, which no session records."""
    seen = set()
    tensors = [t for targets in written for t in targets if id(t) not in seen and not seen.add(id(t))]
    with capture.ignoring_ops(), torch.no_grad():
        _zero_(tensors)


def run(optimizer, method, fn, args, kwargs):
    """`fn(*args, **kwargs)`, the optimizer's `method`, with its _Plan."""
    plan = begin(optimizer, method)
    if plan is None:
        return fn(*args, **kwargs)
    try:
        return fn(*args, **kwargs)
    finally:
        end(plan)


# zero_grad(set_to_none=False) with foreach, as torch 1.13 calls it by
# default: a loop over every parameter (its gradient's grad_fn, device,
# dtype and is_sparse read, requires_grad_(False) called) under a profiler
# record_function, then one _foreach_zero_ per device and dtype. Eager takes
# about 35 us for recsys's 13 parameters; live mode's LazyTensors make the
# loop slower, 90 to 160 us with its foreach call. When the parameters hold
# the same gradient objects as at the last call, which left them without
# grad_fn and not requiring grad, the loop would change nothing: zero_grad
# makes the foreach calls that call made, on the same lists (see zero_grad).
_torch_zero_grad = torch.optim.Optimizer.zero_grad
try:
    _zero_default = inspect.signature(_torch_zero_grad).parameters["set_to_none"].default
except (KeyError, ValueError, TypeError):
    _zero_default = None


def zero_grad(optimizer, fn, args, kwargs):
    """`optimizer.zero_grad(*args, **kwargs)` in live mode, `fn` the
    optimizer class's zero_grad: torch's, or its foreach calls alone when
    they are all it would do (see _zeroes)."""
    plan = _zero_plan(optimizer)
    groups = _zeroes(optimizer, plan, fn, args, kwargs) if plan is not None and plan.zeroes is not None else None
    if groups is not None and begin(optimizer, "zero_grad") is plan:
        try:
            for grads in groups:
                torch._foreach_zero_(grads)
        finally:
            end(plan)
        plan.skipped += 1
        return None
    out = run(optimizer, "zero_grad", fn, (optimizer, *args), kwargs)
    plan = _zero_plan(optimizer)  # made by run's begin
    if plan is not None:
        plan.zeroes = _zeroed(optimizer, fn, args, kwargs)
    return out


def _zero_plan(optimizer):
    plans = _plans.get(optimizer)
    return plans.get("zero_grad") if plans is not None else None


def _may_skip(optimizer, fn, args, kwargs):
    """Whether torch's own zero_grad runs, keeping the gradients, on an
    optimizer with foreach (not fused): the loop a call can skip."""
    d = optimizer.defaults
    return _keeps_gradients(fn, args, kwargs) and d.get("foreach") and not d.get("fused")


def _keeps_gradients(fn, args, kwargs):
    """Whether the call is torch's zero_grad with set_to_none False."""
    if fn is not _torch_zero_grad:
        return False
    if not args and not kwargs:
        return _zero_default is False
    if kwargs:
        return not args and len(kwargs) == 1 and kwargs.get("set_to_none", True) is False
    return len(args) == 1 and args[0] is False


def _zeroed(optimizer, fn, args, kwargs):
    """After torch's zero_grad: what it zeroed, for the next call's _zeroes,
    or None when that call could not skip the loop (gradients set to None,
    sparse ones, no foreach, a zero_grad of the optimizer's own)."""
    if not _may_skip(optimizer, fn, args, kwargs) or not hasattr(optimizer, "_zero_grad_profile_name"):
        return None
    lists = [g["params"] for g in optimizer.param_groups]
    params = tuple(p for ps in lists for p in ps)
    grads = tuple(p.grad for p in params)
    per_device = {}
    for g in grads:
        if g is None:
            continue
        if type(g) is not LazyTensor or g.is_sparse or g.grad_fn is not None or g.requires_grad:
            return None
        per_device.setdefault(g.device, {}).setdefault(g.dtype, []).append(g)
    groups = [grads for per_dtype in per_device.values() for grads in per_dtype.values()]
    return lists, params, grads, groups


def _zeroes(optimizer, plan, fn, args, kwargs):
    """The lists of gradients to zero, one per device and dtype as torch's
    loop groups them, when this zero_grad call would only zero them:
    torch's, keeping the gradients, the optimizer still with foreach; its
    parameter lists the same objects with the same parameters as at the last
    call, each holding the same gradient object (or None) as then, none of
    which has since gained a grad_fn or come to require grad; no profiler on
    (the loop's record_function). Else None."""
    lists, params, grads, groups = plan.zeroes
    pgs = optimizer.param_groups
    if len(pgs) != len(lists) or not _may_skip(optimizer, fn, args, kwargs) or _profiling():
        return None
    i = 0
    n = len(params)
    for g, ps in zip(pgs, lists):
        if g["params"] is not ps:
            return None
        for p in ps:
            if i == n or p is not params[i] or p.grad is not grads[i]:
                return None
            i += 1
    if i != n:
        return None
    for g in grads:
        if g is not None and (g.grad_fn is not None or g.requires_grad):
            return None
    return groups


_profiling = getattr(torch._C._autograd, "_profiler_enabled", None) or (lambda: True)


def _call(plan, fn, args, kwargs):
    if plan.matching:
        calls = plan.calls
        pos = plan.pos
        if pos < len(calls):
            c = calls[pos]
            session = lazy._session
            if c.fn is fn and c.nargs == len(args) and c.keywords == tuple(kwargs) and \
                    c.at == (session.phase, session.module_sid):
                if c.layout is None:
                    out = fn(*args, **kwargs)
                    plan.building.append(c)
                    plan.returned.append(_made(out))
                    plan.pos = pos + 1
                    return out
                bound = _check(plan, c, args, kwargs)
                if bound is not None:
                    plan.taken += 1
                    if c.inplace:
                        plan.written.append(bound[0])
                    out = session._from_layout(c.layout, bound, c.n, None)
                    # What torch's call returned. In place: None (torch 1.13), or
                    # its targets (2.x); else a list (1.13) or a tuple (2.x).
                    if c.inplace:
                        out = None if c.gives is None else args[0] if c.gives else c.kind(args[0])
                    elif c.kind is tuple:
                        out = tuple(out)
                    plan.building.append(c)
                    plan.returned.append(_made(out))
                    plan.pos = pos + 1
                    return out
        plan.matching = False
    return _recorded(plan, fn, args, kwargs)


def _made(out):
    """What plan.returned keeps of a call's result: the list or tuple of its tensors, else None."""
    return out if type(out) is list or type(out) is tuple else None


def _check(plan, c, args, kwargs):
    """The call's arguments in the foreach op's order when they match _Call
    `c` (see the module's docstring), else None."""
    n = c.n
    bound = []
    lists = False  # whether a tensor list matched by form, not as the same objects
    nargs = c.nargs
    for j, (name, _, _, _) in enumerate(c.plan):
        v = args[j] if j < nargs else kwargs.get(name, _WHOLE)
        check = c.checks[j]
        kind = check[0]
        if kind == _TENSORS:
            if (type(v) is not list and type(v) is not tuple) or len(v) != n:
                return None
            if not all(map(_is, v, check[1])):
                forms = check[2]
                for i, t in enumerate(v):
                    if type(t) is not LazyTensor or _form(t) != forms[i]:
                        return None
                lists = True
        elif kind == _RESULT:
            made = plan.returned[check[1]]
            if made is None or (type(v) is not list and type(v) is not tuple) or len(v) != n or \
                    not all(map(_is, v, made)):
                return None
        elif kind == _NUMBERS:
            t = check[1]
            if (type(v) is not list and type(v) is not tuple) or len(v) != n:
                return None
            for x in v:
                if type(x) is not t:
                    return None
        elif kind == _FLOAT:
            if type(v) is not float:
                return None
        elif kind == _VALUE:
            if type(v) is not check[1] or v != check[2]:
                return None
        elif v is not _WHOLE:
            return None
        bound.append(v)
    if lists and c.inplace and _aliased(bound[0], [v for v, check in zip(bound, c.checks)
                                                   if check[0] == _TENSORS or check[0] == _RESULT]):
        return None
    if torch.is_grad_enabled() and _requires_grad(bound, c.checks):
        return None
    return bound


def _requires_grad(bound, checks):
    """Whether a tensor of the call requires grad: in grad mode, autograd
    would record the call (zero_grad runs in grad mode, on gradients that do not)."""
    for v, check in zip(bound, checks):
        if check[0] == _TENSORS or check[0] == _RESULT:
            for t in v:
                if t.requires_grad:
                    return True
    return False


def _recorded(plan, fn, args, kwargs):
    """A call through torch; a _Call for the next step's from what capture did with it."""
    session = lazy._session
    session.foreach_layout = None
    out = fn(*args, **kwargs)
    seen, session.foreach_layout = session.foreach_layout, None
    c = _Call(fn, args, kwargs, (session.phase, session.module_sid))
    if seen is not None:
        info, layout, bound = seen
        checks = _checks(plan, c, info.each[1], args, kwargs, bound)
        if checks is not None and not (torch.is_grad_enabled() and _requires_grad(bound, checks)):
            c.plan = info.each[1]
            c.checks = checks
            c.layout = layout
            c.n = len(bound[0])
            c.inplace = layout.results is None
            c.kind = type(out)
            if c.inplace:
                # Returned None, its first argument (True) or a new list or tuple of its elements (False).
                if out is None:
                    c.gives = None
                elif out is args[0] or ((c.kind is list or c.kind is tuple) and len(out) == c.n and
                                        all(map(_is, out, args[0]))):
                    c.gives = out is args[0]
                else:
                    c.layout = None
            elif c.kind is not list and c.kind is not tuple:
                c.layout = None
    plan.building.append(c)
    plan.returned.append(_made(out))
    return out


def _checks(plan, c, op_plan, args, kwargs, bound):
    """The checks of a call's arguments (see _check): None unless the
    Python call's arguments are the ones the foreach op was given (`bound`,
    in its argument order), which the _Layout was made from."""
    if len(args) + len(kwargs) != sum(v is not _WHOLE for v in bound):
        return None
    checks = []
    for j, ((name, kind, _, _), b) in enumerate(zip(op_plan, bound)):
        v = args[j] if j < c.nargs else kwargs.get(name, _WHOLE)
        if b is _WHOLE:
            if v is not _WHOLE:
                return None
            checks.append((_ABSENT,))
        elif kind == "tensors":
            if (type(v) is not list and type(v) is not tuple) or len(v) != len(b) or not all(map(_is, v, b)):
                return None
            made = next((k for k, r in enumerate(plan.returned) if r is not None and len(r) == len(v) and
                         all(map(_is, v, r))), None)
            checks.append((_TENSORS, list(v), [_form(t) for t in v]) if made is None else (_RESULT, made))
        elif kind == "numbers":
            if (type(v) is not list and type(v) is not tuple) or len(v) != len(b) or not v:
                return None
            t = type(v[0])
            if any(type(x) is not t or type(y) is not t or x != y for x, y in zip(v, b)):
                return None
            checks.append((_NUMBERS, t))
        else:
            t = type(v)
            if type(b) is not t or v != b:
                return None
            checks.append((_FLOAT,) if t is float else (_VALUE, t, v))
    return checks


def _wrap(fn):
    def foreach(*args, **kwargs):
        plan = _active[0]
        if plan is None:
            return fn(*args, **kwargs)
        return _call(plan, fn, args, kwargs)
    foreach.__name__ = fn.__name__
    foreach.__doc__ = fn.__doc__
    return foreach


def install():
    """Wraps torch's foreach functions; called once, when live mode activates
    (GENIE_STEP_CALLS=0: not at all)."""
    global installed
    installed = True
    for name in dir(torch):
        if name.startswith("_foreach_"):
            fn = getattr(torch, name)
            if callable(fn):
                setattr(torch, name, _wrap(fn))
