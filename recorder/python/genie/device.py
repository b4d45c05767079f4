"""Where "remote_accelerator" enters a program: factories given that device,
`Tensor.to(...)`, `Module.to(...)`, and `Tensor.new_tensor` on a LazyTensor.

These entry points are wrapped when the frontend activates rather than
intercepted with a global TorchFunctionMode: on torch 1.13 such a mode adds
about 9 us to every torch call of the program (measured on the CI machine),
more than the whole per-op budget of capture, while the wrappers cost nothing
to calls that do not name the device.
"""
import contextlib
import functools
import math

import torch
from torch.utils._python_dispatch import TorchDispatchMode, _pop_mode_temporarily

from . import DEVICE, autocast, capture, codes, lazy
from .capture import CaptureError, is_remote_device
from .lazy import LazyTensor

# Factories that build a tensor from Python data rather than an ATen op.
_DATA_FACTORIES = ("tensor", "as_tensor")
# Factories that are ATen ops: captured as ops, so a replay runs them remotely.
_OP_FACTORIES = (
    "zeros", "ones", "empty", "full", "rand", "randn", "randint", "randperm", "arange", "linspace",
    "logspace", "eye", "empty_strided", "zeros_like", "ones_like", "empty_like", "full_like",
    "rand_like", "randn_like", "randint_like", "tril_indices", "triu_indices",
)


def _on_host(args, kwargs):
    """Whether an op seen under capture_all() neither reads a LazyTensor nor
    names the meta device (a tensor there, or `device=`): an op of the
    program's own CPU (or CUDA) tensors, which runs as it would in eager. A
    CPU model's backward() in a program that also uses remote_accelerator,
    or a program that uses none, gets eager's gradients, on its device.
    Autograd's helper tensors for a LazyTensor's gradient are made on the
    meta device (the wrapper's), so they still go to the session."""
    for a in args:
        t = type(a)
        if t is LazyTensor:
            return False
        if t is list or t is tuple:
            for e in a:
                if type(e) is LazyTensor or (isinstance(e, _Tensor) and e.is_meta):
                    return False
        elif isinstance(a, _Tensor):
            if a.is_meta:
                return False
    for k, v in kwargs.items():
        if type(v) is LazyTensor or (isinstance(v, _Tensor) and v.is_meta):
            return False
        if k == "device" and v is not None and torch.device(v).type == "meta":
            return False
    return True


class CaptureAll(TorchDispatchMode):
    """Sends every ATen op to the session while active: around a factory with
    the remote device (whose op has no LazyTensor argument to route it) and
    around backward(); ops on the program's own host tensors run as they
    are (_on_host). Entered through capture_all()."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _on_host(args, kwargs):
            return func(*args, **kwargs)
        return lazy._session.dispatch(func, args, kwargs)


# torch 1.13 runs every op under a mode through a Python helper mode
# (_python_dispatch._TorchDispatchStackMode) that pops the mode stack in a
# context manager around each call: about 10 us per op, on every op of a
# backward. Where that torch has no other mode active, capture_all() sets
# _DirectCaptureAll as the mode itself instead, which steps aside for the
# session's own ops with two calls. torch 2.x keeps its mode stack in C++
# and has no such helper.
_set_mode = getattr(torch._C, "_set_torch_dispatch_mode", None)
_stack_depth = getattr(torch._C, "_len_torch_dispatch_stack", None)


class _DirectCaptureAll:
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        _set_mode(None)
        try:
            if _on_host(args, kwargs):
                return func(*args, **kwargs)
            return lazy._session.dispatch(func, args, kwargs)
        finally:
            _set_mode(self)


_direct = _DirectCaptureAll()
_capturing_all = [None]  # how capture_all() is on: None (off), "direct" or "stack"


@contextlib.contextmanager
def capture_all():
    """CaptureAll, entered once however deeply nested (torch.autograd.grad in
    a backward hook, a remote factory inside backward()): a second instance on
    the mode stack would take the CPU ops that the session runs inside the first."""
    if _capturing_all[0]:
        yield
        return
    if _set_mode is not None and _stack_depth() == 0:
        _capturing_all[0] = "direct"
        _set_mode(_direct)
        try:
            yield
        finally:
            _set_mode(None)
            _capturing_all[0] = None
        return
    _capturing_all[0] = "stack"
    try:
        with CaptureAll():
            yield
    finally:
        _capturing_all[0] = None


@contextlib.contextmanager
def outside_capture_all():
    """Suspends CaptureAll: for genie's own CPU ops inside backward() (the
    replays of templates.py's autograd function)."""
    how = _capturing_all[0]
    if not how:
        yield
        return
    _capturing_all[0] = None
    try:
        if how == "direct":
            _set_mode(None)
            try:
                yield
            finally:
                _set_mode(_direct)
        else:
            with _pop_mode_temporarily():
                yield
    finally:
        _capturing_all[0] = how


_META = torch.device("meta")
_CPU = torch.device("cpu")
_Tensor = torch.Tensor


def _with_meta_device(kwargs):
    return dict(kwargs, device=_META)


def _wrap_data_factory(orig):
    @functools.wraps(orig)
    def factory(*args, **kwargs):
        dev = kwargs.get("device")
        if dev is None or not is_remote_device(dev) or lazy._session.in_kernel:
            return orig(*args, **kwargs)
        requires_grad = kwargs.pop("requires_grad", False)
        kwargs["device"] = "cpu"
        value = orig(*args, **kwargs)
        return lazy._session.add_input(value, codes.INPUT_TENSOR).requires_grad_(requires_grad)
    return factory


def _wrap_op_factory(orig):
    @functools.wraps(orig)
    def factory(*args, **kwargs):
        dev = kwargs.get("device")
        if dev is None or not is_remote_device(dev) or lazy._session.in_kernel:
            return orig(*args, **kwargs)
        with capture_all():
            out = orig(*args, **_with_meta_device(kwargs))
        if type(out) is not LazyTensor:
            raise CaptureError(f"genie: torch.{orig.__name__}(device='remote_accelerator') could not be captured")
        return out
    return factory


def _target_device(args, kwargs):
    """The device a `.to(...)` call names, or None."""
    if args:
        a = args[0]
        if isinstance(a, (str, torch.device)):
            return a
        if type(a) is LazyTensor:
            return a.device
    return kwargs.get("device")


def _replace_device(args, kwargs, device):
    """The arguments of a `.to(...)` call with its device replaced by `device`."""
    if args and isinstance(args[0], (str, torch.device)):
        return (device,) + tuple(args[1:]), kwargs
    if args and isinstance(args[0], torch.Tensor):
        return (device, args[0].dtype) + tuple(args[1:]), kwargs
    return args, dict(kwargs, device=device)


class _ToRemote(torch.autograd.Function):
    """`cpu_tensor.to("remote_accelerator")` in grad mode, of a tensor that
    requires grad (a leaf the program wants the gradient of, an input image
    of a saliency map, a CPU encoder's output): the remote copy is an input
    of the segment, and the gradient that reaches it in backward() comes back
    to the CPU (one materialization, as eager's device-to-host copy), into
    the leaf's .grad or on through the CPU graph. Before, the remote copy was
    a leaf of its own: a CPU leaf's .grad stayed None, and a CPU tensor with
    a grad_fn was refused."""

    @staticmethod
    def forward(ctx, value):
        return lazy._session.add_input(value, codes.INPUT_TENSOR)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        return None if grad is None else grad.cpu()


def _wrap_to(orig):
    @functools.wraps(orig)
    def to(self, *args, **kwargs):
        if type(self) is _Tensor and len(args) == 1 and not kwargs and type(args[0]) is str and \
                args[0] == DEVICE and not self.requires_grad:
            # `batch.to("remote_accelerator")` in live mode: the session's upload, inline.
            session = lazy._session
            if session.remote and not session.in_kernel:
                out = session.upload(self)
                if out is not None:
                    return out
        dev = _target_device(args, kwargs)
        if dev is None or not is_remote_device(dev) or lazy._session.in_kernel:
            return orig(self, *args, **kwargs)
        if type(self) is LazyTensor:
            args, kwargs = _replace_device(args, kwargs, _META)
            return orig(self, *args, **kwargs)
        args, kwargs = _replace_device(args, kwargs, _CPU)
        if self.requires_grad and torch.is_grad_enabled() and not isinstance(self, torch.nn.Parameter):
            # Differentiable, as eager's to() is (_ToRemote).
            return _ToRemote.apply(orig(self, *args, **kwargs))
        value = orig(self, *args, **kwargs)
        kind = codes.INPUT_PARAMETER if isinstance(self, torch.nn.Parameter) else codes.INPUT_TENSOR
        # Without grad mode the copy does not require grad, as eager's does not.
        return lazy._session.add_input(value, kind)
    return to


def _wrap_parse_to(orig):
    @functools.wraps(orig)
    def parse_to(*args, **kwargs):
        args = tuple("meta" if isinstance(a, str) and is_remote_device(a) else a for a in args)
        if isinstance(kwargs.get("device"), str) and is_remote_device(kwargs["device"]):
            kwargs = dict(kwargs, device="meta")
        return orig(*args, **kwargs)
    return parse_to


def _new_tensor(self, data, dtype=None, device=None, requires_grad=False):
    if device is not None and not is_remote_device(device):
        return torch.tensor(data, dtype=dtype or self.dtype, device=device, requires_grad=requires_grad)
    value = torch.tensor(data, dtype=dtype or self.dtype)
    return lazy._session.add_input(value, codes.INPUT_TENSOR).requires_grad_(requires_grad)


def _new(self, *args, **kwargs):
    """The legacy `tensor.new(...)` (nn.init.orthogonal_'s
    `tensor.new(rows, cols).normal_()`): torch's makes the tensor on the
    tensor's device in C++, for a LazyTensor the meta device, out of
    genie's sight (it was refused at its first use with a remote tensor).
    Sizes (ints or a torch.Size) give an uninitialized tensor on the
    device, `torch.empty`'s; `new()` an empty one; a list or tuple of
    numbers, as `new_tensor`."""
    if kwargs:
        raise TypeError("genie: tensor.new(...) of a remote_accelerator tensor takes sizes or data, no keywords")
    if len(args) == 1 and isinstance(args[0], (tuple, list)) and not isinstance(args[0], torch.Size):
        return _new_tensor(self, args[0])  # data, as torch takes a list or tuple
    sizes = args[0] if len(args) == 1 and isinstance(args[0], torch.Size) else args
    if not all(type(n) is int for n in sizes):
        raise TypeError(f"genie: tensor.new(...) of a remote_accelerator tensor got {args!r}")
    return torch.empty(tuple(sizes) if sizes else (0,), dtype=self.dtype, device=DEVICE)


def _reduced_math_sdp():
    """Whether the math backend may keep float16/bfloat16 attention in that
    dtype (torch.backends.cuda.allow_fp16_bf16_reduction_math_sdp; torch 2.5
    and later). Older torch has no such upcast."""
    allowed = getattr(torch.backends.cuda, "fp16_bf16_reduction_math_sdp_allowed", None)
    return True if allowed is None else allowed()


def math_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                   enable_gqa=False):
    """scaled_dot_product_attention as ATen's math backend computes it
    (_scaled_dot_product_attention_math, torch 2.1 and later), from ops genie
    captures one by one, so that a CPU runtime gives eager CPU's result to the
    bit (the causal mask from a captured factory). Eager CPU takes the math
    backend whenever there is dropout. Like ATen: the query and the key are
    each scaled by the square root of the scale before their product; a
    mask is added in place, and only when there is one; softmax is
    _safe_softmax (torch 2.5 and later: rows masked whole give zeros, not
    NaN); float16/bfloat16 inputs are computed in float32 unless that
    reduction is allowed. The documented reference form, (q @ k^T) * scale,
    differs from it in the last bits."""
    if is_causal and attn_mask is not None:
        raise RuntimeError("_scaled_dot_product_attention: Explicit attn_mask should not be set when is_causal=True")
    dtype = query.dtype
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        attn_mask = torch.zeros(attn_mask.shape, dtype=dtype, device=attn_mask.device).masked_fill(
            attn_mask.logical_not(), float("-inf"))
    if not _reduced_math_sdp():
        query, key, value = (t.float() if t.dtype in (torch.float16, torch.bfloat16) else t for t in (query, key, value))
    root = math.sqrt(1.0 / math.sqrt(query.size(-1)) if scale is None else abs(scale))
    query = query * (-root if scale is not None and scale < 0 else root)
    if is_causal:
        keep = torch.ones(query.size(-2), key.size(-2), dtype=torch.bool, device=query.device).tril()
        attn_mask = torch.zeros(keep.shape, dtype=query.dtype, device=query.device).masked_fill(
            keep.logical_not(), float("-inf"))
    if enable_gqa and not query.size(-3) == key.size(-3) == value.size(-3):
        key = key.repeat_interleave(query.size(-3) // key.size(-3), -3)
        value = value.repeat_interleave(query.size(-3) // value.size(-3), -3)
    weights = query @ (key.transpose(-2, -1) * root)
    if attn_mask is not None:
        weights.add_(attn_mask)
    safe = getattr(torch.ops.aten, "_safe_softmax", None)
    weights = safe(weights, -1) if safe is not None else torch.softmax(weights, -1)
    if dropout_p > 0:
        weights = torch.dropout(weights, dropout_p, True)
    return (weights @ value).to(dtype)


def _wrap_attention(orig):
    """F.scaled_dot_product_attention on LazyTensors (torch 2.x). Left to
    itself it decomposes below the dispatcher, for a tensor on the meta
    device, into its math form, whose causal mask is built by C++ factories
    genie does not see: the mask would reach the runtime unfilled. Without
    autograd recording or dropout it is captured as the one op it is (the
    runtime runs its fused kernel); with them, as math_attention's ops."""
    op = torch.ops.aten.scaled_dot_product_attention.default

    @functools.wraps(orig)
    def attention(query, key, value, *args, **kwargs):
        if type(query) is not LazyTensor:
            return orig(query, key, value, *args, **kwargs)
        low = autocast.current[0]
        if low is not None:
            # In a remote autocast region: CUDA autocast runs attention in
            # the lower precision, its floating arguments cast (a query that
            # rotary embeddings made float32 beside bfloat16 values).
            query, key, value = (autocast.lowered(t, low) for t in (query, key, value))
            args = tuple(autocast.lowered(a, low) for a in args)
            kwargs = {k: autocast.lowered(v, low) for k, v in kwargs.items()}
        dropout = args[1] if len(args) > 1 else kwargs.get("dropout_p", 0.0)
        grad = torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (query, key, value, args[0] if args else kwargs.get("attn_mask")))
        if grad or dropout:
            return math_attention(query, key, value, *args, **kwargs)
        return lazy._session.dispatch(op, (query, key, value, *args), kwargs)
    return attention


def _wrap_one_hot(orig):
    """F.one_hot on a LazyTensor. torch 1.13's refuses every meta tensor,
    the number of classes given or not ("Can not infer total number of
    classes from meta tensor"), before any op genie could capture. As its
    own code does it: zeros, and a one scattered at each class. Without
    `num_classes`, the largest class is fetched (eager reads it too); the
    CPU kernel's checks of the values (negative, past `num_classes`) are
    the runtime's scatter's, as a CUDA tensor's are its device's."""
    @functools.wraps(orig)
    def one_hot(tensor, num_classes=-1):
        if type(tensor) is not LazyTensor:
            return orig(tensor, num_classes)
        if tensor.dtype != torch.int64:
            raise RuntimeError("one_hot is only applicable to index tensor.")
        if num_classes == -1:
            if not tensor.numel():
                raise RuntimeError("Can not infer total number of classes from empty tensor.")
            num_classes = int(tensor.max().item()) + 1
        out = torch.zeros(*tensor.shape, num_classes, dtype=torch.int64, device=tensor.device)
        return out.scatter_(-1, tensor.unsqueeze(-1), 1)
    return one_hot


def _wrap_capturing_all(orig, remote):
    """Functions that are C++ making a tensor with a factory on their
    argument's device, for a LazyTensor the meta device, which no LazyTensor
    argument routes to genie: `_pad_packed_sequence`'s padded result (its
    padding was never filled: the runtime's padded rows held whatever memory
    held), `combinations`' and `vander`'s (refused, or on torch 2.x an empty
    result). Where `remote(args)`, they run with every op going to genie, as
    backward() does (capture_all), and the factory is captured too."""
    @functools.wraps(orig)
    def run(*args, **kwargs):
        if not remote(args):
            return orig(*args, **kwargs)
        with capture_all():
            return orig(*args, **kwargs)
    return run


def _first_is_remote(args):
    return bool(args) and type(args[0]) is LazyTensor


def _packed_is_remote(args):
    return bool(args) and type(getattr(args[0], "data", None)) is LazyTensor


def _wrap_repeat_interleave(orig):
    """repeat_interleave of a LazyTensor by an int (grouped-query attention's
    `k.repeat_interleave(n_rep, dim=1)`): torch 1.13 makes the count a
    tensor on the tensor's device in C++, for a LazyTensor the meta device,
    and then refuses it ("cannot repeat_interleave a meta tensor without
    output_size"). The same values as a view expanded along a new dimension
    and flattened into `dim`, as torch 2.x computes it. Counts given as a
    tensor go through torch (their result's size depends on their values)."""
    @functools.wraps(orig)
    def repeat_interleave(input, *args, **kwargs):
        if type(input) is LazyTensor:
            repeats = args[0] if args else kwargs.get("repeats")
            if type(repeats) is int:
                return _repeat_each(input, repeats, args[1] if len(args) > 1 else kwargs.get("dim"))
        return orig(input, *args, **kwargs)
    return repeat_interleave


def _repeat_each(x, n, dim):
    if n < 0:
        raise RuntimeError("repeats can not be negative")
    if dim is None:
        x, dim = x.flatten(), 0
    elif dim < 0:
        dim += x.dim()
    shape = list(x.shape)
    out = x.unsqueeze(dim + 1).expand(*shape[:dim + 1], n, *shape[dim + 1:])
    return out.reshape(*shape[:dim], shape[dim] * n, *shape[dim + 1:])


def _wrap_load(orig):
    """torch.load(f, map_location="remote_accelerator") (a checkpoint loaded
    straight onto the device): torch restores each storage with the
    location's function, and knows none for this device ("don't know how to
    restore data location ... tagged with remote_accelerator"). Loaded on
    the CPU, then each tensor, Parameter and module moved to the device as
    `.to("remote_accelerator")` moves it; a map naming the device for any
    location moves all. Tensors that shared a storage in the file (views of
    one tensor) each get their own copy."""
    @functools.wraps(orig)
    def load(f, map_location=None, *args, **kwargs):
        names = map_location.values() if isinstance(map_location, dict) else (map_location,)
        if not any(isinstance(n, str) and is_remote_device(n) and n != "meta" for n in names):
            return orig(f, map_location, *args, **kwargs)
        return _moved(orig(f, "cpu", *args, **kwargs), {})
    return load


def _moved(obj, memo):
    """`obj` with the tensors and modules in it on the device (torch.load's result)."""
    if id(obj) in memo:
        return memo[id(obj)]
    if isinstance(obj, torch.nn.Parameter):
        out = torch.nn.Parameter(obj.detach().to(DEVICE), requires_grad=obj.requires_grad)
    elif isinstance(obj, torch.Tensor):
        out = obj.to(DEVICE)
    elif isinstance(obj, torch.nn.Module):
        out = obj.to(DEVICE)
    elif isinstance(obj, dict):
        out = type(obj)()  # OrderedDict (a state_dict) keeps its type and its _metadata
        for k, v in obj.items():
            out[k] = _moved(v, memo)
        if hasattr(obj, "_metadata"):
            out._metadata = obj._metadata
    elif isinstance(obj, (list, tuple)) and type(obj) in (list, tuple):
        out = type(obj)(_moved(v, memo) for v in obj)
    else:
        out = obj
    memo[id(obj)] = out
    return out


def _tensor_of(number):
    return lazy._tensor(number)  # torch.tensor before genie wraps it: a CPU tensor


def _wrap_where(orig):
    """torch.where and Tensor.where with a Python number for a branch
    (`torch.where(x > 0, x, 0.0)`): torch makes the number a tensor on the
    tensor's device in C++, for a LazyTensor the meta device, where its value
    is lost, and the op was refused ("a tensor on meta was mixed with
    remote_accelerator tensors"). A CPU tensor of the number instead, of the
    dtype torch infers for it, which promotes as the number would and is
    lifted as a constant."""
    @functools.wraps(orig)
    def where(condition, *args, **kwargs):
        if len(args) == 2 and not kwargs and (type(condition) is LazyTensor or any(type(a) is LazyTensor for a in args)):
            args = tuple(a if isinstance(a, torch.Tensor) else _tensor_of(a) for a in args)
        return orig(condition, *args, **kwargs)
    return where


def _wrap_tensor_where(orig):
    @functools.wraps(orig)
    def where(self, condition, other):
        if type(self) is LazyTensor and not isinstance(other, torch.Tensor):
            other = _tensor_of(other)
        return orig(self, condition, other)
    return where


def _wrap_module_apply(orig):
    """nn.Module._apply (what `module.to(...)` runs): the tensors it moves
    are the model's state, which goes up addressed by content (see
    capture._payload_frame), buffers as well as parameters."""
    @functools.wraps(orig)
    def _apply(self, *args, **kwargs):
        moving = capture.moving_model
        # Parameters that modules share (a language model's embedding tied
        # to its output layer): torch moves a CPU Parameter to another type
        # of tensor as a new Parameter per module holding it, which untied
        # them (two weights trained apart). Eager keeps the one object
        # (`param.data = moved`, a device tensor's type being the CPU's), and
        # so does this, giving every module the first one's new Parameter.
        held = [(m, k, p) for m in self.modules() for k, p in m._parameters.items() if p is not None] \
            if moving[0] == 0 else None
        moving[0] += 1
        try:
            out = orig(self, *args, **kwargs)
        finally:
            moving[0] -= 1
        if held:
            _tie_again(held)
        return out
    return _apply


def _tie_again(held):
    """After Module._apply: modules whose parameter was one object before
    (`held`: (module, name, parameter before)) get one object again."""
    first = {}
    for module, name, before in held:
        params = module._parameters  # a ScriptModule's is a wrapper: no get()
        now = params[name] if name in params else None
        kept = first.setdefault(id(before), now)
        if now is not kept and now is not None and kept is not None:
            params[name] = kept


def _wrap_manual_seed(orig):
    @functools.wraps(orig)
    def manual_seed(seed):
        out = orig(seed)
        session = lazy._session
        if session.remote:
            session.seed_pending = torch.initial_seed()  # sent with the next remote draw (Session.seed_runtime)
        return out
    return manual_seed


def install():
    """Wraps the entry points; called once, when the frontend activates."""
    torch.manual_seed = torch.random.manual_seed = _wrap_manual_seed(torch.random.manual_seed)
    torch.nn.functional.one_hot = _wrap_one_hot(torch.nn.functional.one_hot)
    torch.where = _wrap_where(torch.where)
    torch.load = _wrap_load(torch.load)
    torch.repeat_interleave = _wrap_repeat_interleave(torch.repeat_interleave)
    torch.Tensor.repeat_interleave = _wrap_repeat_interleave(torch.Tensor.repeat_interleave)
    torch.nn.utils.rnn.pad_packed_sequence = _wrap_capturing_all(torch.nn.utils.rnn.pad_packed_sequence, _packed_is_remote)
    for name in ("combinations", "vander"):
        setattr(torch, name, _wrap_capturing_all(getattr(torch, name), _first_is_remote))
    try:
        torch.Tensor.where(torch.zeros(1), torch.ones(1, dtype=torch.bool), 0.0)
    except TypeError:
        pass  # torch 1.13's takes tensors only, as eager does then
    else:
        torch.Tensor.where = _wrap_tensor_where(torch.Tensor.where)
    if hasattr(torch.nn.functional, "scaled_dot_product_attention"):
        torch.nn.functional.scaled_dot_product_attention = _wrap_attention(
            torch.nn.functional.scaled_dot_product_attention)
    for name in _DATA_FACTORIES:
        setattr(torch, name, _wrap_data_factory(getattr(torch, name)))
    for name in _OP_FACTORIES:
        if hasattr(torch, name):
            setattr(torch, name, _wrap_op_factory(getattr(torch, name)))
    torch.Tensor.to = _wrap_to(torch.Tensor.to)
    torch.nn.Module._apply = _wrap_module_apply(torch.nn.Module._apply)
    torch._C._nn._parse_to = _wrap_parse_to(torch._C._nn._parse_to)
    LazyTensor.new_tensor = _new_tensor
    LazyTensor.new = _new
