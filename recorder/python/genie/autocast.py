"""Mixed precision on the remote device: `torch.autocast("remote_accelerator",
dtype=torch.bfloat16)` (or `torch.amp.autocast`, a decorator alike).

torch's own autocast works at a dispatch key that only CPU, CUDA and a few
other backends' tensors carry; a LazyTensor, on the meta device, has none of
them, so torch leaves its ops alone (and torch 1.13 refuses the device name).
While a region of the remote device is entered, genie puts a torch function
mode on the stack that does, above autograd, what CUDA autocast does below it:
a function on CUDA's lists gets its floating remote tensors cast (captured
`_to_copy` ops, which autograd records and backward() casts back), so a GPU
runtime runs the matmuls and convolutions in the lower precision.

The lists are CUDA's (torch 2.x, autocast_mode.cpp), by the Python-level
function a program calls: a remote runtime is a GPU's. Functions written in
Python (torch.nn.functional's losses, softmax, layer_norm) are taken whole,
since the mode sees the ops they call in C++ no more; device.py's
scaled_dot_product_attention, which the mode does not see, casts its own. `dtype` defaults to
bfloat16, which every runtime runs (CUDA's default float16 has no CPU matmul
in torch 1.13). Casts are not cached per region as torch's are: a parameter
used twice is cast twice, to the same values (a module call replayed from a
template holds its own casts; a cache would hand one call's cast to another).
Tensors of other devices, float64 tensors, and ops outside the region are
left alone, as CUDA autocast leaves them.
"""
import functools
import warnings

import torch
from torch.overrides import TorchFunctionMode

from .capture import is_remote_device
from .lazy import LazyTensor

_LOWER, _FP32, _FP32_DTYPE, _PROMOTE, _BANNED = range(5)

# By the names of the functions a program calls (torch.*, Tensor.*,
# torch.nn.functional.*, torch.linalg.*, torch.special.*).
_LISTS = {
    _LOWER: (
        "conv1d", "conv2d", "conv3d", "conv_tbc", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
        "convolution", "_convolution", "prelu", "addmm", "addmv", "addr", "matmul", "__matmul__", "__rmatmul__",
        "einsum", "mm", "mv", "vecdot", "linear", "addbmm", "baddbmm", "bmm", "chain_matmul", "multi_dot",
        "lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell", "scaled_dot_product_attention",
    ),
    _FP32: (
        "acos", "asin", "cosh", "erfinv", "exp", "expm1", "log", "log10", "log2", "log1p", "reciprocal", "rsqrt",
        "sinh", "tan", "pow", "__pow__", "__rpow__", "float_power", "softplus", "layer_norm", "native_layer_norm",
        "group_norm", "norm", "frobenius_norm", "nuclear_norm", "cosine_similarity", "poisson_nll_loss",
        "cosine_embedding_loss", "nll_loss", "hinge_embedding_loss", "kl_div", "l1_loss", "smooth_l1_loss",
        "huber_loss", "mse_loss", "margin_ranking_loss", "multilabel_margin_loss", "soft_margin_loss",
        "triplet_margin_loss", "multi_margin_loss", "binary_cross_entropy_with_logits", "cross_entropy", "dist",
        "pdist", "cdist", "renorm", "logsumexp", "interpolate", "upsample", "upsample_nearest", "upsample_bilinear",
    ),
    _FP32_DTYPE: (
        "prod", "softmax", "log_softmax", "cumprod", "cumsum", "vector_norm", "matrix_norm", "sum",
    ),
    _PROMOTE: (
        "addcdiv", "addcmul", "atan2", "bilinear", "cross", "dot", "grid_sample", "index_put", "scatter_add",
        "tensordot", "stack", "cat", "index_copy",
    ),
    _BANNED: ("binary_cross_entropy",),
}

_POLICY = {}  # function object -> policy
_state = []   # per entered remote region: (enabled, dtype)
current = [None]  # the dtype remote ops are cast to now, or None (templates key their calls by it)
_mode = [None]


def _namespaces():
    return (torch, torch.Tensor, torch.nn.functional, torch._C._nn, torch.linalg, torch.special)


def _policies():
    for policy, names in _LISTS.items():
        for name in names:
            for ns in _namespaces():
                fn = getattr(ns, name, None)
                # A function genie wraps (phases.py's losses) reaches the mode
                # as the wrapper, which a Python function of torch names when
                # it hands itself on: both are taken.
                while fn is not None:
                    try:
                        _POLICY.setdefault(fn, policy)
                    except TypeError:
                        break  # an unhashable attribute
                    fn = getattr(fn, "__wrapped__", None)


def _cast(v, dtype, want):
    """`v` cast for a policy: a floating remote tensor `want(t)` picks is cast
    to `dtype`; lists and tuples element by element; anything else as it is."""
    t = type(v)
    if t is LazyTensor:
        return v.to(dtype) if want(v) else v
    if (t is list or t is tuple) and any(type(e) is LazyTensor for e in v):
        return t(e.to(dtype) if type(e) is LazyTensor and want(e) else e for e in v)
    return v


def _eligible(t):
    """Whether autocast may cast tensor `t`: floating, not float64 (CUDA's is_eligible)."""
    return t.is_floating_point() and t.dtype != torch.float64


def lowered(v, dtype):
    """`v` cast to `dtype` where it is an eligible remote tensor of another dtype."""
    if type(v) is LazyTensor and _eligible(v) and v.dtype != dtype:
        return v.to(dtype)
    return v


def _floats(args, kwargs):
    """The dtypes of the floating remote tensors among the arguments."""
    out = []
    for v in (*args, *kwargs.values()):
        items = v if type(v) is list or type(v) is tuple else (v,)
        for e in items:
            if type(e) is LazyTensor and e.is_floating_point():
                out.append(e.dtype)
    return out


_HALVES = (torch.float16, torch.bfloat16)


class _AutocastMode(TorchFunctionMode):
    """On the mode stack while a remote autocast region is entered (see the module's docstring)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        dtype = current[0]
        policy = _POLICY.get(func) if dtype is not None else None
        if policy is None:
            return func(*args, **kwargs)
        floats = _floats(args, kwargs)
        if not floats:
            return func(*args, **kwargs)
        if policy == _LOWER:
            want = lambda t: _eligible(t) and t.dtype != dtype  # noqa: E731
            to = dtype
        elif policy == _FP32:
            want = lambda t: t.dtype in _HALVES  # noqa: E731
            to = torch.float32
        elif policy == _FP32_DTYPE:
            first = next((a for a in args if isinstance(a, torch.Tensor)), None)
            if type(first) is LazyTensor and _eligible(first) and kwargs.get("dtype") is None and \
                    not any(isinstance(a, torch.dtype) for a in args):
                kwargs = dict(kwargs, dtype=torch.float32)
            return func(*args, **kwargs)
        elif policy == _PROMOTE:
            to = functools.reduce(torch.promote_types, floats)
            want = lambda t: t.is_floating_point() and t.dtype != to  # noqa: E731
        else:
            raise RuntimeError(
                f"genie: {getattr(func, '__name__', func)} is unsafe to autocast (as on CUDA): "
                "use binary_cross_entropy_with_logits (or nn.BCEWithLogitsLoss), or cast to float32 "
                "outside the autocast region")
        args = tuple(_cast(a, to, want) for a in args)
        kwargs = {k: _cast(v, to, want) for k, v in kwargs.items()}
        return func(*args, **kwargs)


def _remote(args, kwargs):
    device = kwargs.get("device_type", args[0] if args else None)
    return isinstance(device, str) and is_remote_device(device)


def _wrap_init(orig):
    @functools.wraps(orig)
    def __init__(self, *args, **kwargs):
        if not _remote(args, kwargs):
            return orig(self, *args, **kwargs)
        names = ("device_type", "dtype", "enabled", "cache_enabled")
        bound = dict(zip(names, args), **kwargs)
        unknown = set(bound) - set(names)
        if unknown:
            raise TypeError(f"autocast() got an unexpected keyword argument {sorted(unknown)[0]!r}")
        dtype = bound.get("dtype") or torch.bfloat16
        enabled = bool(bound.get("enabled", True))
        if enabled and dtype not in _HALVES:
            warnings.warn(f"genie: autocast on {bound['device_type']} casts to torch.float16 or torch.bfloat16, "
                          f"not {dtype}; autocast is disabled")
            enabled = False
        self._genie_autocast = (enabled, dtype)
        self.device = bound["device_type"]
        self.fast_dtype = dtype
        self._enabled = enabled
        self._cache_enabled = bound.get("cache_enabled")
    return __init__


def _wrap_enter(orig):
    @functools.wraps(orig)
    def __enter__(self):
        region = getattr(self, "_genie_autocast", None)
        if region is None:
            return orig(self)
        if not _state:
            mode = _mode[0] = _AutocastMode()
            mode.__enter__()
        _state.append(region)
        current[0] = region[1] if region[0] else None
        return self
    return __enter__


def _wrap_exit(orig):
    @functools.wraps(orig)
    def __exit__(self, *exc):
        if getattr(self, "_genie_autocast", None) is None:
            return orig(self, *exc)
        _state.pop()
        if _state:
            enabled, dtype = _state[-1]
            current[0] = dtype if enabled else None
        else:
            current[0] = None
            mode, _mode[0] = _mode[0], None
            mode.__exit__(*exc)
        return False
    return __exit__


def install():
    """Makes torch's autocast class take the remote device; called once, when
    capture activates, after the other modules have wrapped torch's functions."""
    _policies()
    cls = torch.amp.autocast_mode.autocast
    cls.__init__ = _wrap_init(cls.__init__)
    cls.__enter__ = _wrap_enter(cls.__enter__)
    cls.__exit__ = _wrap_exit(cls.__exit__)
