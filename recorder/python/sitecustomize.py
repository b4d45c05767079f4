"""Activates Genie's capture frontend in programs started by `genie record`.

This module shadows the distribution's sitecustomize (Debian ships one), so it
runs that one too.
"""
import importlib.machinery
import importlib.util
import os
import sys


def _chain_to_shadowed_sitecustomize():
    here = os.path.dirname(os.path.abspath(__file__))
    path = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


if os.environ.get("GENIE_IPC"):
    try:
        from genie import bootstrap
        bootstrap.start()
    except OSError as e:
        print(f"genie: the capture frontend could not reach the genie process: {e}", file=sys.stderr)

_chain_to_shadowed_sitecustomize()
