"""Module paths and phases of captured ops.

Global module hooks keep a stack of the modules being run; each op is tagged
with the innermost one's path ("GPT.blocks.0.attn"). Paths come from the
outermost module's `named_modules()`, rooted at its class name.

Phases: ops inside `backward()` / `torch.autograd.grad` are "backward"; ops
inside an optimizer's `step()` are "optimizer"; the ops of an outermost module
call are "forward", or "prefill"/"decode" when the module's forward takes a
KV cache argument (a parameter named like `past_key_values` or `cache`) and
it is given none (prefill) or one (decode). Ops after a forward and outside
any module (a loss, sampling the next token) keep that forward's phase.
"""
import functools
import inspect
import weakref

import torch

from . import codes, device, lazy, steps

_names = weakref.WeakKeyDictionary()
_cache_param = {}  # forward function -> index and name of its KV cache parameter, or None
_stack = []        # (module, path) of the modules being run
_override = []     # phases forced by backward() and optimizer steps


def _cache_parameter(module):
    try:
        fwd = type(module).forward
    except AttributeError:
        return None  # a ScriptModule's compiled forward (torch.jit.script): no KV cache parameter to find
    if fwd not in _cache_param:
        found = None
        try:
            params = list(inspect.signature(fwd).parameters.values())[1:]
        except (TypeError, ValueError):
            params = []
        for i, p in enumerate(params):
            n = p.name.lower()
            if n != "use_cache" and ("past" in n or n.endswith("cache") or n.endswith("caches")):
                found = (i, p.name)
                break
        _cache_param[fwd] = found
    return _cache_param[fwd]


def _is_empty(cache):
    if cache is None:
        return True
    if isinstance(cache, (list, tuple, dict)):
        return len(cache) == 0
    return False


def _root_phase(module, args, kwargs):
    found = _cache_parameter(module)
    if found is None:
        return codes.PHASE_FORWARD
    i, name = found
    cache = kwargs.get(name) if name in kwargs else (args[i] if i < len(args) else None)
    return codes.PHASE_PREFILL if _is_empty(cache) else codes.PHASE_DECODE


def _pre_hook(module, args):
    session = lazy._session
    if not _stack:
        if module not in _names:
            root = type(module).__name__
            for name, m in module.named_modules():
                _names.setdefault(m, f"{root}.{name}" if name else root)
        if not _override:
            session.phase = _root_phase(module, args, _pending_kwargs.get(id(module), {}))
    path = _names.get(module)
    if path is None:
        path = f"{_stack[-1][1]}.{type(module).__name__}" if _stack else type(module).__name__
    _stack.append((module, path))
    session.module_sid = session.intern(path)


def _post_hook(module, args, output):
    session = lazy._session
    while _stack and _stack[-1][0] is not module:
        _stack.pop()  # modules whose forward raised
    if _stack:
        _stack.pop()
    session.module_sid = session.intern(_stack[-1][1]) if _stack else session.empty_sid


_pending_kwargs = {}


def _wrap_call(orig):
    """Module.__call__: sees keyword arguments (1.13's pre-hooks get only
    positional ones), and lets the session's templates replay calls they have
    proven (see templates.py)."""
    def plain(self, args, kwargs):
        if _stack or not kwargs:
            return orig(self, *args, **kwargs)
        _pending_kwargs[id(self)] = kwargs
        try:
            return orig(self, *args, **kwargs)
        finally:
            _pending_kwargs.pop(id(self), None)

    @functools.wraps(orig)
    def call(self, *args, **kwargs):
        session = lazy._session
        templates = session.templates
        if templates is not None and not _override and not session.in_kernel:
            out = templates.call(self, plain, args, kwargs)
        else:
            out = plain(self, args, kwargs)
        if session.remote and (_stack or _override or not session.channel.answered_early):
            session.send_ahead()  # a module's ops go ahead once enough are open
        # A training step's forward, while the genie process answers its
        # loss early, waits for backward(), which sends it with the loss in
        # one part (see _with_phase): only the loss's few ops come between,
        # and a part costs a write and a wake-up of the genie process and
        # the runtime. Inner modules of a long forward still send theirs.
        return out
    return call


# Open record words (about 8 ops) that go ahead at the end of a backward or an optimizer step.
_PHASE_PART_WORDS = 256


def _with_phase(phase, fn, capture_all=False):
    """Runs `fn` in `phase`. With `capture_all`, every ATen op inside goes
    through the session: autograd's backward formulas create helper tensors
    (`at::scalar_tensor(0, grad.options())`) on the wrapper's meta device,
    which no LazyTensor argument would route to the session."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        session = lazy._session
        if capture_all and not session.made_any():
            # A program that has not used remote_accelerator yet: its
            # backward is all its own, and a dispatch mode would only slow
            # every op of it down (device._on_host lets them through).
            return fn(*args, **kwargs)
        if session.remote and not _override:
            # What came before (a training step's forward and loss) goes
            # ahead too: the runtime runs it while the backward is captured.
            # While the genie process answers the loss early (see below),
            # it goes however few its ops (the loss is fetched early only
            # from a part), and nothing goes at an optimizer step.
            early = session.channel.answered_early
            if phase != codes.PHASE_OPTIMIZER:
                session.send_ahead(1 if early else _PHASE_PART_WORDS)
            elif not early:
                session.send_ahead(_PHASE_PART_WORDS)
        plan = None
        if phase == codes.PHASE_OPTIMIZER and session.remote and not _override and steps.installed and args:
            plan = steps.begin(args[0])
        saved_module = session.module_sid
        session.bump_written()  # foreach writes since the last phase, before a backward checks versions
        _override.append(phase)
        session.phase = phase
        session.module_sid = session.empty_sid
        try:
            if capture_all:
                with device.capture_all():
                    out = fn(*args, **kwargs)
            else:
                out = fn(*args, **kwargs)
        finally:
            if plan is not None:
                steps.end(plan)
            session.bump_written()
            _override.pop()
            session.phase = _override[-1] if _override else codes.PHASE_NONE
            session.module_sid = saved_module
        if session.remote and not _override and phase != codes.PHASE_OPTIMIZER and not session.channel.answered_early:
            # A training step's backward goes ahead as a part: the runtime
            # runs it while the optimizer step is captured. The optimizer
            # step's ops stay open for the materialization that comes next
            # (the loss's): the runtime answers it before running them when
            # they cannot change what it fetches (server.cc AnswerFirst), and
            # runs them while the program goes on. Sent as a part, they would
            # run before that answer. While the genie process answers the
            # loss from the value its step's first part fetched (live.cc,
            # early answers), the backward waits for that materialization
            # too: nothing waits for it, and a part costs a write and a
            # wake-up of the genie process and the runtime.
            session.send_ahead(_PHASE_PART_WORDS)
        return out
    run._genie_phase = True
    return run


def _wrap_optimizer_init(orig_init):
    @functools.wraps(orig_init)
    def init(self, *args, **kwargs):
        orig_init(self, *args, **kwargs)
        cls = type(self)
        if not getattr(cls.step, "_genie_phase", False):
            cls.step = _with_phase(codes.PHASE_OPTIMIZER, cls.step)
        if not getattr(cls.zero_grad, "_genie_steps", False):
            cls.zero_grad = _wrap_zero_grad(cls.zero_grad)
        _prefer_foreach(self)
    return init


def _wrap_zero_grad(fn):
    """An optimizer's zero_grad, whose foreach call (gradients kept, as
    torch 1.13 does by default) follows the previous call's (see steps.py)."""
    @functools.wraps(fn)
    def zero_grad(self, *args, **kwargs):
        if steps.installed and not _override and lazy._session.remote:
            return steps.zero_grad(self, fn, args, kwargs)
        return fn(self, *args, **kwargs)
    zero_grad._genie_steps = True
    return zero_grad


# Optimizers whose foreach implementation was checked to give bit for bit
# the results of their per-parameter loop (tests/python/test_capture.py on
# torch 1.13; the mlp_train, cnn and recsys examples on torch 2.11; AdamW,
# amsgrad and weight decay included, on two_tower's model on both). Others
# keep torch's own choice.
_FOREACH_DEFAULT = (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD)


def _prefer_foreach(optimizer):
    """An Adam, AdamW or SGD optimizer of remote_accelerator parameters that was
    left to pick its implementation (foreach=None) takes the foreach one, as
    torch picks for CUDA parameters: one op per update for all parameters,
    recorded as the per-tensor ops (see capture._foreach), with one dispatch
    instead of one per parameter. An explicit foreach=False stays."""
    if type(optimizer) not in _FOREACH_DEFAULT:
        return
    groups = optimizer.param_groups
    if not all(isinstance(p, lazy.LazyTensor) for g in groups for p in g["params"]):
        return
    for d in (optimizer.defaults, *groups):
        if "foreach" in d and d["foreach"] is None and not d.get("fused") and not d.get("differentiable"):
            d["foreach"] = True


# Loss functions called as functions (`F.cross_entropy(model(x), y)`, as
# most training loops do): templates take each call as one of a module
# without parameters or state (_Function), so a training step's loss and its
# backward replay as a module call's do, instead of being captured op by op.
_FUNCTIONS = ("cross_entropy", "nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits", "mse_loss",
              "l1_loss", "smooth_l1_loss", "huber_loss", "kl_div")


class _Function(torch.nn.Module):
    """A function of torch.nn.functional, as the module templates.call takes."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


def _wrap_function(fn):
    module = _Function(fn)

    def plain(_, args, kwargs):
        # Every op inside goes through the session: a C++ composite makes
        # helper tensors on its input's meta device (cross_entropy with
        # label_smoothing fills with a scalar tensor), which no LazyTensor
        # argument would route to it.
        with device.capture_all():
            return fn(*args, **kwargs)

    @functools.wraps(fn)
    def call(*args, **kwargs):
        session = lazy._session
        if session.in_kernel or not (any(type(a) is lazy.LazyTensor for a in args) or
                                     any(type(v) is lazy.LazyTensor for v in kwargs.values())):
            return fn(*args, **kwargs)
        templates = session.templates
        if templates is None or _override:
            return plain(module, args, kwargs)
        return templates.call(module, plain, args, kwargs)
    return call


def install():
    torch.nn.modules.module.register_module_forward_pre_hook(_pre_hook)
    torch.nn.modules.module.register_module_forward_hook(_post_hook)
    torch.nn.Module.__call__ = _wrap_call(torch.nn.Module.__call__)
    functional = torch.nn.functional
    for name in _FUNCTIONS:
        if hasattr(functional, name):
            setattr(functional, name, _wrap_function(getattr(functional, name)))
    torch.autograd.backward = _with_phase(codes.PHASE_BACKWARD, torch.autograd.backward, capture_all=True)
    torch.autograd.grad = _with_phase(codes.PHASE_BACKWARD, torch.autograd.grad, capture_all=True)
    torch.optim.Optimizer.__init__ = _wrap_optimizer_init(torch.optim.Optimizer.__init__)
