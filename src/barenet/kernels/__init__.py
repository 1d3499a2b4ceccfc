"""Fused kernels for the memory-bound steps of training.

Each module here holds one family of kernels (normalization, pooling, optimizer updates, ...) in two
forms with one signature:

* the NumPy form, the readable reference, always available;
* a compiled form (numba, ``pip install "barenet[fast]"``) that does the same arithmetic in one or two
  passes over memory instead of one NumPy pass per operation.

Layers and optimizers call the module-level name (for example ``kernels.normalization.forward``), which
is the compiled form when numba is installed and ``BARENET_NUMBA`` is not ``0``, else the NumPy form.
numba itself is imported when a compiled kernel first runs (``_jit.LazyKernel``), not by ``import barenet``.
Tests check every compiled kernel against its NumPy reference to float rounding on the shapes the layers
use. Compiled kernels are cached on disk (numba's ``cache=True``), so only the first start pays the
compile time.
"""

from ._jit import NUMBA_ENABLED, njit

__all__ = ["NUMBA_ENABLED", "njit"]
