"""Keep the torch backend alive when TensorFlow was imported first.

With TensorFlow 2.21 and triton 3.x in one environment, importing triton *after* TensorFlow crashes the
process (a segfault while loading ``triton._C.libtriton``; both bundle LLVM). Keras on the torch backend
imports ``torch._dynamo``, which imports triton, so ``import tensorflow`` followed by anything that builds a
model on torch (tfclip's own README example does exactly this) would kill Python. torch treats an
``ImportError`` from triton as "triton not installed", so while TensorFlow is loaded and triton is not,
anyclip answers triton's import with a ``ModuleNotFoundError`` instead. The cost: in such a process torch.compile has
no triton kernels (CPU inference never uses them). Importing triton before TensorFlow is unaffected.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

REASON = ("triton is not imported in this process: TensorFlow was imported first, and importing triton after "
          "TensorFlow crashes Python (both bundle LLVM). Import torch._dynamo or triton before tensorflow to use "
          "triton kernels.")


class _TritonAfterTensorFlow(importlib.abc.MetaPathFinder):
    """Refuses ``import triton`` (and its submodules) while TensorFlow is loaded and triton is not."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] == "triton" and "tensorflow" in sys.modules and "triton" not in sys.modules:
            raise ModuleNotFoundError(REASON, name=fullname)  # what find_spec probes (torch._native) expect
        return None


def guard_triton_after_tensorflow() -> bool:
    """Install the guard once (only where triton is installed); return whether it is installed.

    Example:
        >>> guard_triton_after_tensorflow() in (True, False)
        True
    """
    if any(isinstance(finder, _TritonAfterTensorFlow) for finder in sys.meta_path):
        return True
    if "triton" in sys.modules or importlib.util.find_spec("triton") is None:
        return False
    sys.meta_path.insert(0, _TritonAfterTensorFlow())
    return True
