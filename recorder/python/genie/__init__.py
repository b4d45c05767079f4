"""Genie's capture frontend.

Programs do not import this package: `genie record` and `genie run` put it on
the import path, and `sitecustomize` activates it once the program imports
torch. Tensors on the device "remote_accelerator" then become LazyTensors whose
ATen ops are recorded and sent to the genie process at each materialization
point (`.cpu()`, `.item()`, `.tolist()`, `.numpy()`, `bool()`, printing).
"""

__version__ = "0.1.0"

DEVICE = "remote_accelerator"
