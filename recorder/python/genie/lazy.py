"""LazyTensor: the tensor type of the "remote_accelerator" device.

A LazyTensor is a wrapper subclass on the meta device: it has the shape,
strides and dtype of the value it stands for and no storage. Every ATen op on
it reaches `__torch_dispatch__`, below autograd, so forward, backward and
optimizer ops are all captured the same way. In record mode each LazyTensor
also holds the real CPU value (`_genie_value`) so the program runs on to
completion with eager results.

Attributes use a `_genie_` prefix: a name like a Tensor property (`data`,
`grad`, `real`) on the subclass would break it.
"""
import copy

import torch

_session = None  # the active capture.Session; set by capture.activate()


def set_session(session):
    global _session
    _session = session


def release(tensor):
    """Live mode's LazyTensor.__del__: the value's id goes to the runtime with
    the next segment, which frees it. Autograd keeps the LazyTensors it saves
    alive, so a value is released only once nothing can use it."""
    try:
        d = tensor.__dict__
        if "_genie_alias" not in d:  # a second object for a value another one owns (see templates.py)
            _session.released.append(d["_genie_id"])
    except (AttributeError, KeyError):
        pass  # never finished construction, or the interpreter is shutting down


_META = torch.device("meta")
_make_wrapper = torch.Tensor._make_wrapper_subclass
_empty_strided = torch.empty_strided
_empty = torch.empty
_tensor = torch.tensor
_setitem = torch.Tensor.__setitem__
_getitem = torch.Tensor.__getitem__
_data = torch._C._TensorBase.data  # the C property: metadata and storage


def meta_value(shape, stride, offset, dtype):
    """A meta tensor of this metadata."""
    if offset == 0:
        return _empty_strided(shape, stride, dtype=dtype, device=_META)
    extent = 1 + sum((n - 1) * s for n, s in zip(shape, stride)) if all(n > 0 for n in shape) else 0
    return _empty((offset + extent,), dtype=dtype, device=_META).as_strided(shape, stride, offset)


class _MadeOnUse:
    """LazyTensor._genie_value where the instance holds none (see
    LazyTensor._unmade): makes the meta value and keeps it in the instance,
    whose own attribute later lookups find first (a descriptor without
    __set__). A __getattr__ would slow every attribute lookup on the class."""

    def __get__(self, obj, cls=None):
        if obj is None:
            return self
        value = obj.__dict__["_genie_value"] = meta_value(obj.shape, obj.stride(), obj.storage_offset(), obj.dtype)
        return value


class LazyTensor(torch.Tensor):
    @staticmethod
    def __new__(cls, value, value_id, storage_id):
        return cls._wrap(value, value.shape, value.stride(), value.storage_offset(), value_id, storage_id)

    @classmethod
    def _wrap(cls, value, shape, stride, offset, value_id, storage_id):
        """A LazyTensor for `value`, whose shape, strides and offset the caller already has."""
        r = _make_wrapper(cls, shape, strides=stride, storage_offset=offset, dtype=value.dtype, device=_META)
        r._genie_value = value
        r._genie_id = value_id
        r._genie_storage = storage_id
        return r

    @classmethod
    def _unmade(cls, shape, stride, offset, dtype, value_id, storage_id):
        """Live mode: a LazyTensor whose meta value is made when first asked
        for (_MadeOnUse). Most never are: the shape cache answers for the ops
        that read them from their metadata."""
        r = _make_wrapper(cls, shape, strides=stride, storage_offset=offset, dtype=dtype, device=_META)
        r._genie_id = value_id
        r._genie_storage = storage_id
        return r

    _genie_value = _MadeOnUse()

    # Skip the torch-function layer: every op goes straight to dispatch.
    __torch_function__ = torch._C._disabled_torch_function_impl

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        return _session.dispatch(func, args, kwargs or {})

    # Materialization points that do not pass through an ATen op.
    def tolist(self):
        from . import codes
        return _session.materialize(self, codes.HOW_TOLIST).tolist()

    def numpy(self, *args, **kwargs):
        from . import codes
        # A copy: an array sharing the recorded value's memory would let the
        # program change it without an op, which no replay could reproduce.
        return _session.materialize(self, codes.HOW_NUMPY).numpy(*args, **kwargs).copy()

    def __reduce_ex__(self, protocol):
        # torch.save and pickle: torch would pickle the meta tensor the
        # wrapper is, which holds no data (a checkpoint of a remote model
        # saved no weights). The values are fetched and pickled as a CPU
        # tensor, as eager pickles a device tensor with its data; loading
        # gives CPU tensors, which `.to("remote_accelerator")` moves back.
        from . import codes
        value = _session.materialize(self, codes.HOW_CPU).clone()
        if self.__dict__.get("_is_param"):
            # A remote Parameter (torch marks a subclass's so): a Parameter,
            # so that a whole pickled module loads with Parameters.
            value = torch.nn.Parameter(value, requires_grad=self.requires_grad)
        elif self.requires_grad:
            value.requires_grad_(True)
        return value.__reduce_ex__(protocol)

    def __deepcopy__(self, memo):
        # copy.deepcopy (of a model, an optimizer's state): torch's own copies
        # the wrapper's __dict__ onto the clone, which then named the
        # original's value, and the copy's first use failed ("fetched value
        # ... does not exist") or wrote into the original. A clone, captured
        # as an op, with the program's own attributes (a Parameter's
        # `_is_param`) copied and genie's left to the clone.
        if id(self) in memo:
            return memo[id(self)]
        if not self.is_leaf:
            raise RuntimeError("Only Tensors created explicitly by the user (graph leaves) support the deepcopy "
                               "protocol at the moment")
        with torch.no_grad():
            new = self.clone()
        new.requires_grad_(self.requires_grad)
        memo[id(self)] = new
        for k, v in self.__dict__.items():
            if not k.startswith("_genie"):
                setattr(new, k, copy.deepcopy(v, memo))
        return new

    def __repr__(self, *args, **kwargs):
        from . import codes
        text = repr(_session.materialize(self, codes.HOW_PRINT))
        if not text.endswith(")"):
            return text
        suffix = ", device='remote_accelerator'"
        if self.grad_fn is not None:
            suffix += f", grad_fn=<{type(self.grad_fn).__name__}>"
        elif self.requires_grad:
            suffix += ", requires_grad=True"
        return text[:-1] + suffix + ")"

    @property
    def data(self):
        return _data.__get__(self)

    @data.setter
    def data(self, new):
        # `param.data = other` (an initialization, a weight swapped in):
        # torch's setter gives the wrapper the other's metadata and storage
        # in C++, where genie does not see it, and the tensor went on naming
        # its old value. The tensor takes a view of the other's value as its
        # own (an alias, captured as an op, so either one may be dropped
        # first), sharing its storage as in eager.
        if type(new) is not LazyTensor:
            raise RuntimeError("genie: .data of a remote_accelerator tensor set to a tensor on "
                               f"{new.device if isinstance(new, torch.Tensor) else type(new).__name__}; "
                               "move it first (`.data = t.to(\"remote_accelerator\")`)")
        with torch.no_grad():
            alias = torch.ops.aten.alias.default(new)
        _data.__set__(self, alias)
        d = self.__dict__
        if "_genie_alias" in d:
            del d["_genie_alias"]  # it owned no value, and owns the alias's now
        elif _session.remote:
            release(self)
        alias.__dict__["_genie_alias"] = True
        d["_genie_id"] = alias._genie_id
        d["_genie_storage"] = alias._genie_storage
        if "_genie_value" in alias.__dict__:
            d["_genie_value"] = alias.__dict__["_genie_value"]
        else:
            d.pop("_genie_value", None)  # live mode: made again from the new metadata

    def __getitem__(self, key):
        # `v[:, [-1]]` (nanoGPT's top-k): torch makes a list of indices a
        # tensor on the tensor's own device, for a LazyTensor the meta
        # device, in C++, where its values are lost (the op was refused).
        # A CPU tensor of them instead, lifted as a constant.
        t = type(key)
        if t is list or t is tuple and list in map(type, key):
            key = _index_key(key)
        return _getitem(self, key)

    def __setitem__(self, key, value):
        # `x[:, 3:] = 7`, `x[mask] = 0`: torch makes the number a tensor on
        # the tensor's own device, which for a LazyTensor is the meta device,
        # without an op that dispatch sees, so its value would be lost. A CPU
        # tensor of the same dtype holds it instead, as eager's does, and is
        # lifted as a constant like any CPU tensor mixed in.
        if isinstance(value, (int, float, complex)):
            value = _tensor(value, dtype=self.dtype)
        t = type(key)
        if t is list or t is tuple and list in map(type, key):
            key = _index_key(key)
        _setitem(self, key, value)

    def __format__(self, spec):
        if self.dim() == 0:
            return self.item().__format__(spec)
        return self.__repr__()


def _numbers(seq):
    """Whether `seq` (a list) holds only ints and bools, or lists of them."""
    return all(type(x) in (int, bool) or type(x) is list and _numbers(x) for x in seq)


def _index_key(key):
    """An index with its lists of numbers as CPU tensors (see __getitem__).
    A top-level list of fewer than 32 items holding anything but numbers
    (lists, slices, tensors) is a tuple of indices, as torch reads it."""
    if type(key) is list:
        if len(key) >= 32 or all(type(k) is int or type(k) is bool for k in key):
            return _as_index(key)
        key = tuple(key)
    return tuple(_as_index(k) if type(k) is list else k for k in key)


def _as_index(seq):
    if not seq:
        return _tensor([], dtype=torch.int64)
    return _tensor(seq) if _numbers(seq) else seq
