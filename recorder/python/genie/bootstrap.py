"""Starts the frontend inside a program launched by `genie record` or, with
GENIE_MODE=remote, by `genie run PROGRAM` (live mode).

Runs from sitecustomize at interpreter start-up, before the program: connects
to the genie process (GENIE_IPC), says hello (which interpreter, whether it can
import torch), and arranges for capture to activate right after the program
imports torch, so nothing in the program has to change.
"""
import atexit
import gc
import importlib.abc
import importlib.util
import os
import platform
import sys

from . import __version__, codes
from .channel import Channel, pack_strings

_channel = None
_session = None


class _AfterTorchImport(importlib.abc.MetaPathFinder):
    """Finds torch through the other finders, then activates capture once its
    module has executed."""

    def find_spec(self, name, path=None, target=None):
        if name != "torch":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("torch")
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_activate(module):
            exec_module(module)
            _activate()

        spec.loader.exec_module = exec_then_activate
        return spec


def _activate():
    global _session
    from . import autocast, capture, device, lazy, phases, steps, templates
    if os.environ.get("GENIE_MODE") == "remote":
        _session = capture.RemoteSession(_channel)
        lazy.LazyTensor.__del__ = lazy.release  # the runtime frees what the program drops
        if os.environ.get("GENIE_STEP_CALLS", "1") != "0":
            steps.install()
    else:
        _session = capture.Session(_channel, os.environ.get("GENIE_PAYLOAD", "full"))
    if templates.ENABLED:
        _session.templates = templates.Templates(_session)
        templates.install()
    lazy.set_session(_session)
    device.install()
    phases.install()
    autocast.install()
    # torch's import leaves about 100,000 objects (modules, functions,
    # classes) that live as long as the program. Python's full collections
    # walk all of them, and a capture makes a wrapper object for every
    # value, so they come often: in a decode loop they took about 15% of the
    # program's CPU. Frozen, they are never walked again (and garbage among
    # them never freed: there is none to speak of right after an import).
    # GENIE_GC_FREEZE=0 leaves them.
    if os.environ.get("GENIE_GC_FREEZE", "1") != "0":
        gc.freeze()


def _finish():
    """At exit: sends what is still open and ends the connection cleanly."""
    if _session is not None:
        _session.close()
    else:
        _channel.send(codes.FRAME_END)
        _channel.close()


def start():
    global _channel
    _channel = Channel(os.environ["GENIE_IPC"])
    torch_spec = importlib.util.find_spec("torch")
    hello = pack_strings([
        str(codes.PROTOCOL_VERSION), __version__, sys.executable, platform.python_version(),
        "yes" if torch_spec is not None else "no", str(os.getpid()),
    ])
    _channel.send(codes.FRAME_HELLO, hello)
    atexit.register(_finish)
    if torch_spec is None:
        return
    if "torch" in sys.modules:
        _activate()
    else:
        sys.meta_path.insert(0, _AfterTorchImport())
