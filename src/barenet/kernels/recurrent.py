r"""One time step of the LSTM and GRU cells outside their recurrent matrix product.

A recurrent layer's step is one product :math:`h_{t-1} U` (BLAS) and then element-wise work on the
``(batch, gates*units)`` gate block: the gate non-linearities, the cell update and, backward, the
gate derivatives. In NumPy that is 15-20 passes over the block per step, each a separate call; the
compiled forms here do it in one loop over the batch and units.

Each kernel has its NumPy reference (``*_reference``, readable, any float dtype) and the name the
layers call, which is the compiled form for float32 arrays when numba is enabled (see
:mod:`barenet.kernels`) and the reference otherwise. All arrays are C-contiguous, float, and written
in place; shapes use ``B`` (batch) and ``n`` (units).

Fast tanh
---------
``np.tanh`` costs about 3 ns per float32 on this kind of CPU and the scalar ``tanh`` a compiled loop
would call is slower still, so the compiled float32 kernels use a rational approximation,
:math:`\tanh x \approx x P(x^2)/Q(x^2)` with :math:`P, Q` of degree 4 in :math:`x^2` (fitted to
:math:`\tanh` on :math:`[0, 9]` for relative error about :math:`2\cdot10^{-8}`) and :math:`x` clamped
to :math:`[-9, 9]`, beyond which float32 :math:`\tanh` is :math:`\pm1` to within one rounding, and the
result clamped to :math:`[-1, 1]`. It has
no branches and no library calls, so the loop compiles to SIMD instructions; in float32 it is within 6
units in the last place of the exact :math:`\tanh`. The sigmoid is :math:`\tfrac12(1 + \tanh(x/2))`, as in
:func:`barenet.functional.sigmoid`. float64 arrays always take the NumPy reference, whose accuracy the
gradient checks rely on.

Whole sequences
---------------
``lstm_sequence_forward``/``_backward`` and ``gru_sequence_forward``/``_backward`` run every time step of
a layer: per step the recurrent product :math:`h_{t-1} U` (backward: :math:`\bar z_t U^\top`) and then
the step kernel above. Their compiled float32 forms are one loop in compiled code, the products called
from it through SciPy's BLAS (numba's ``np.dot``), so no Python runs per time step and, without the GIL,
threads can run the recurrences of different rows of the batch at once. Each takes the rows
``start:stop`` of the batch to work on; the rows of one sample never depend on another's. The compiled
forms need SciPy (numba's ``np.dot`` calls its BLAS); without it the reference forms, a Python loop over
the steps, run instead.
"""

from __future__ import annotations

import importlib
import importlib.util

import numpy as np

from .. import functional as F
from ._jit import njit

# --------------------------------------------------------------------- the float32 tanh
# Coefficients of P and Q, lowest power first (P(0) = Q(0) = 1, so tanh x ~ x near 0).
_P1, _P2, _P3, _P4 = (np.float32(c) for c in (0.1338394433259964, 0.003498956561088562, 2.0660714653786272e-05,
                                              1.341928435039108e-08))
_Q1, _Q2, _Q3, _Q4 = (np.float32(c) for c in (0.46717265248298645, 0.02589005045592785, 0.0003290977911092341,
                                              7.804461006344354e-07))
_CLAMP = np.float32(9.0)
_ONE = np.float32(1.0)
_HALF = np.float32(0.5)


def _tanh32_scalar(x):
    """Rational approximation of :math:`\\tanh x` for one float32 (see the module docstring)."""
    x = min(max(x, -_CLAMP), _CLAMP)
    s = x * x
    p = (((_P4 * s + _P3) * s + _P2) * s + _P1) * s + _ONE
    q = (((_Q4 * s + _Q3) * s + _Q2) * s + _Q1) * s + _ONE
    t = x * p / q
    return min(max(t, -_ONE), _ONE)  # the fit overshoots 1 by an ulp near |x| = 8


def _sigmoid32_scalar(x):
    """:math:`\\sigma(x) = \\tfrac12(1 + \\tanh(x/2))` for one float32, with the approximate tanh."""
    return _HALF + _HALF * _tanh32(_HALF * x)


# error_model="numpy": a float division never raises, which lets the loops vectorize.
_tanh32 = njit(nogil=True, error_model="numpy", inline="always")(_tanh32_scalar)
_sigmoid32 = njit(nogil=True, error_model="numpy", inline="always")(_sigmoid32_scalar)


# --------------------------------------------------------------------- LSTM
def lstm_forward_reference(a: np.ndarray, hu: np.ndarray, c_prev: np.ndarray, c: np.ndarray, tanh_c: np.ndarray,
                           h: np.ndarray) -> None:
    r"""One LSTM step after the recurrent product.

    Parameters
    ----------
    a : (B, 4n)
        In: the input part :math:`x_t W + b`; out: the activated gates :math:`[i, f, g, o]`.
    hu : (B, 4n)
        The recurrent product :math:`h_{t-1} U`.
    c_prev : (B, n)
        :math:`c_{t-1}`.
    c, tanh_c, h : (B, n)
        Out: :math:`c_t = f c_{t-1} + i g`, :math:`\tanh c_t` and :math:`h_t = o \tanh c_t`.
    """
    n = c.shape[1]
    a += hu
    a[:, :2 * n] = F.sigmoid(a[:, :2 * n])
    np.tanh(a[:, 2 * n:3 * n], out=a[:, 2 * n:3 * n])
    a[:, 3 * n:] = F.sigmoid(a[:, 3 * n:])
    i, f, g, o = a[:, :n], a[:, n:2 * n], a[:, 2 * n:3 * n], a[:, 3 * n:]
    np.add(f * c_prev, i * g, out=c)
    np.tanh(c, out=tanh_c)
    np.multiply(o, tanh_c, out=h)


def lstm_backward_reference(a: np.ndarray, c_prev: np.ndarray, tanh_c: np.ndarray, g_out: np.ndarray,
                            dh: np.ndarray, dc: np.ndarray, dz: np.ndarray) -> None:
    r"""One LSTM step of backpropagation through time, before the recurrent product.

    Parameters
    ----------
    a : (B, 4n)
        The activated gates :math:`[i, f, g, o]` of step :math:`t`.
    c_prev, tanh_c : (B, n)
        :math:`c_{t-1}` and :math:`\tanh c_t`.
    g_out : (B, n)
        The gradient arriving at the output :math:`h_t`.
    dh : (B, n)
        :math:`\bar z_{t+1} U^\top`, the gradient reaching :math:`h_t` from step :math:`t+1`. Read only.
    dc : (B, n)
        In: the gradient reaching :math:`c_t` from step :math:`t+1`; out: the gradient reaching :math:`c_{t-1}`.
    dz : (B, 4n)
        Out: :math:`\bar z_t`, the gradient of the pre-activations (see :class:`barenet.layers.LSTM`).
    """
    n = dc.shape[1]
    i, f, g, o = a[:, :n], a[:, n:2 * n], a[:, 2 * n:3 * n], a[:, 3 * n:]
    dh_t = dh + g_out
    dc += dh_t * o * (1 - tanh_c * tanh_c)
    dz[:, :n] = dc * g * i * (1 - i)
    dz[:, n:2 * n] = dc * c_prev * f * (1 - f)
    dz[:, 2 * n:3 * n] = dc * i * (1 - g * g)
    dz[:, 3 * n:] = dh_t * tanh_c * o * (1 - o)
    dc *= f


def _lstm_forward32(a, hu, c_prev, c, tanh_c, h):
    # Two loops per row, not one: with every array of the step in one loop body the compiler would
    # need too many overlap checks between them and leaves the loop scalar (about 4x slower).
    n = c.shape[1]
    for b in range(a.shape[0]):
        for j in range(4 * n):
            x = a[b, j] + hu[b, j]
            a[b, j] = _tanh32(x) if 2 * n <= j < 3 * n else _sigmoid32(x)
        for j in range(n):
            ct = a[b, n + j] * c_prev[b, j] + a[b, j] * a[b, 2 * n + j]
            tc = _tanh32(ct)
            c[b, j], tanh_c[b, j], h[b, j] = ct, tc, a[b, 3 * n + j] * tc


def _lstm_backward32(a, c_prev, tanh_c, g_out, dh, dc, dz):
    n = dc.shape[1]
    for b in range(a.shape[0]):
        for j in range(n):
            i, f, g, o = a[b, j], a[b, n + j], a[b, 2 * n + j], a[b, 3 * n + j]
            tc = tanh_c[b, j]
            dh_t = dh[b, j] + g_out[b, j]
            d = dc[b, j] + dh_t * o * (_ONE - tc * tc)
            dz[b, j] = d * g * i * (_ONE - i)
            dz[b, n + j] = d * c_prev[b, j] * f * (_ONE - f)
            dz[b, 2 * n + j] = d * i * (_ONE - g * g)
            dz[b, 3 * n + j] = dh_t * tc * o * (_ONE - o)
            dc[b, j] = d * f


# --------------------------------------------------------------------- GRU (reset after the product)
def gru_forward_reference(a: np.ndarray, hu: np.ndarray, b_h: np.ndarray, h_prev: np.ndarray, u_h: np.ndarray,
                          h: np.ndarray) -> None:
    r"""One GRU step (``reset_after=True``) after the recurrent product.

    Parameters
    ----------
    a : (B, 3n)
        In: the input part :math:`x_t W + b_x = [a^z, a^r, a^h]`; out: :math:`[z, r, \tilde h]`.
    hu : (B, 3n)
        The recurrent product :math:`h_{t-1} U` (without its bias).
    b_h : (3n,)
        The recurrent bias.
    h_prev : (B, n)
        :math:`h_{t-1}`.
    u_h : (B, n)
        Out: :math:`u^h = h_{t-1} U^h + b_h^h`, kept for the backward pass.
    h : (B, n)
        Out: :math:`h_t = z h_{t-1} + (1 - z) \tilde h`.
    """
    n = h.shape[1]
    u = hu + b_h
    a[:, :2 * n] = F.sigmoid(a[:, :2 * n] + u[:, :2 * n])
    u_h[...] = u[:, 2 * n:]
    a[:, 2 * n:] += a[:, n:2 * n] * u_h
    np.tanh(a[:, 2 * n:], out=a[:, 2 * n:])
    z, hh = a[:, :n], a[:, 2 * n:]
    np.add(hh, z * (h_prev - hh), out=h)


def gru_backward_reference(a: np.ndarray, h_prev: np.ndarray, u_h: np.ndarray, g_out: np.ndarray, dh: np.ndarray,
                           dhz: np.ndarray, da: np.ndarray, du: np.ndarray) -> None:
    r"""One GRU step (``reset_after=True``) of backpropagation through time, before the recurrent product.

    Parameters
    ----------
    a : (B, 3n)
        :math:`[z, r, \tilde h]` of step :math:`t`.
    h_prev, u_h : (B, n)
        :math:`h_{t-1}` and :math:`u^h` of step :math:`t`.
    g_out : (B, n)
        The gradient arriving at the output :math:`h_t`.
    dh : (B, n)
        :math:`\bar u_{t+1} U^\top`, the gradient reaching :math:`h_t` through step :math:`t+1`'s product.
    dhz : (B, n)
        In: :math:`\bar h_{t+1} z_{t+1}`, the gradient reaching :math:`h_t` directly; out: :math:`\bar h_t z_t`.
    da : (B, 3n)
        Out: the gradient of :math:`x_t W + b_x`.
    du : (B, 3n)
        Out: the gradient of :math:`h_{t-1} U + b_h`.
    """
    n = dh.shape[1]
    z, r, hh = a[:, :n], a[:, n:2 * n], a[:, 2 * n:]
    dh_t = dh + dhz + g_out
    da[:, 2 * n:] = dh_t * (1 - z) * (1 - hh * hh)
    da[:, :n] = dh_t * (h_prev - hh) * z * (1 - z)
    da[:, n:2 * n] = da[:, 2 * n:] * u_h * r * (1 - r)
    du[:, :2 * n] = da[:, :2 * n]
    np.multiply(da[:, 2 * n:], r, out=du[:, 2 * n:])
    np.multiply(dh_t, z, out=dhz)


def _gru_forward32(a, hu, b_h, h_prev, u_h, h):
    n = h.shape[1]
    for b in range(a.shape[0]):  # two loops per row, as in _lstm_forward32
        for j in range(2 * n):
            a[b, j] = _sigmoid32(a[b, j] + hu[b, j] + b_h[j])
        for j in range(n):
            uh = hu[b, 2 * n + j] + b_h[2 * n + j]
            hh = _tanh32(a[b, 2 * n + j] + a[b, n + j] * uh)
            a[b, 2 * n + j], u_h[b, j] = hh, uh
            h[b, j] = hh + a[b, j] * (h_prev[b, j] - hh)


def _gru_backward32(a, h_prev, u_h, g_out, dh, dhz, da, du):
    n = dh.shape[1]
    for b in range(a.shape[0]):
        for j in range(n):
            z, r, hh = a[b, j], a[b, n + j], a[b, 2 * n + j]
            dh_t = dh[b, j] + dhz[b, j] + g_out[b, j]
            d_hh = dh_t * (_ONE - z) * (_ONE - hh * hh)
            d_z = dh_t * (h_prev[b, j] - hh) * z * (_ONE - z)
            d_r = d_hh * u_h[b, j] * r * (_ONE - r)
            da[b, j], da[b, n + j], da[b, 2 * n + j] = d_z, d_r, d_hh
            du[b, j], du[b, n + j], du[b, 2 * n + j] = d_z, d_r, d_hh * r
            dhz[b, j] = dh_t * z


# --------------------------------------------------------------------- whole sequences
def lstm_sequence_forward_reference(A: np.ndarray, U: np.ndarray, H: np.ndarray, C: np.ndarray, tanh_C: np.ndarray,
                                    hu: np.ndarray, start: int, stop: int) -> None:
    r"""The LSTM forward pass over every time step, for the batch rows ``start:stop``.

    Parameters
    ----------
    A : (T, B, 4n)
        In: :math:`x_t W + b` of every step; out: the activated gates :math:`[i, f, g, o]`.
    U : (n, 4n)
        The recurrent kernel.
    H, C : (T + 1, B, n)
        In: ``H[0]``, ``C[0]`` the initial state; out: :math:`h_t`, :math:`c_t` in ``H[t]``, ``C[t]``.
    tanh_C : (T, B, n)
        Out: :math:`\tanh c_t` in ``tanh_C[t - 1]``.
    hu : (B, 4n)
        Scratch for :math:`h_{t-1} U`.
    """
    rows = slice(start, stop)
    for t in range(A.shape[0]):
        np.matmul(H[t, rows], U, out=hu[rows])
        lstm_forward(A[t, rows], hu[rows], C[t, rows], C[t + 1, rows], tanh_C[t, rows], H[t + 1, rows])


def lstm_sequence_backward_reference(A: np.ndarray, U: np.ndarray, C: np.ndarray, tanh_C: np.ndarray,
                                     g_out: np.ndarray, dh: np.ndarray, dc: np.ndarray, dz: np.ndarray,
                                     start: int, stop: int) -> None:
    r"""Backpropagation through every LSTM time step, for the batch rows ``start:stop``.

    Parameters
    ----------
    A, U, C, tanh_C
        As left by :func:`lstm_sequence_forward_reference`.
    g_out : (T, B, n)
        The gradient arriving at each output :math:`h_t`.
    dh, dc : (B, n)
        In: zeros (nothing reaches the last step from later ones); out: the gradients reaching the initial
        state :math:`h_0` and :math:`c_0`.
    dz : (T, B, 4n)
        Out: :math:`\bar z_t`, the gradient of :math:`x_t W + h_{t-1} U + b`.
    """
    rows, UT = slice(start, stop), np.ascontiguousarray(U.T)  # NumPy's BLAS is faster on a C-ordered U^T
    for t in range(A.shape[0] - 1, -1, -1):
        lstm_backward(A[t, rows], C[t, rows], tanh_C[t, rows], g_out[t, rows], dh[rows], dc[rows], dz[t, rows])
        np.matmul(dz[t, rows], UT, out=dh[rows])


def gru_sequence_forward_reference(A: np.ndarray, U: np.ndarray, b_h: np.ndarray, H: np.ndarray, u_h: np.ndarray,
                                   hu: np.ndarray, start: int, stop: int) -> None:
    r"""The GRU (``reset_after=True``) forward pass over every time step, for the batch rows ``start:stop``.

    Parameters
    ----------
    A : (T, B, 3n)
        In: :math:`x_t W + b_x` of every step; out: :math:`[z, r, \tilde h]`.
    U : (n, 3n)
        The recurrent kernel.
    b_h : (3n,)
        The recurrent bias.
    H : (T + 1, B, n)
        In: ``H[0]`` the initial state; out: :math:`h_t` in ``H[t]``.
    u_h : (T, B, n)
        Out: :math:`u^h` of step :math:`t` in ``u_h[t - 1]`` (see :func:`gru_forward_reference`).
    hu : (B, 3n)
        Scratch for :math:`h_{t-1} U`.
    """
    rows = slice(start, stop)
    for t in range(A.shape[0]):
        np.matmul(H[t, rows], U, out=hu[rows])
        gru_forward(A[t, rows], hu[rows], b_h, H[t, rows], u_h[t, rows], H[t + 1, rows])


def gru_sequence_backward_reference(A: np.ndarray, U: np.ndarray, H: np.ndarray, u_h: np.ndarray, g_out: np.ndarray,
                                    dh: np.ndarray, dhz: np.ndarray, da: np.ndarray, du: np.ndarray,
                                    start: int, stop: int) -> None:
    r"""Backpropagation through every GRU (``reset_after=True``) time step, for the batch rows ``start:stop``.

    Parameters
    ----------
    A, U, H, u_h
        As left by :func:`gru_sequence_forward_reference`.
    g_out : (T, B, n)
        The gradient arriving at each output :math:`h_t`.
    dh : (B, n)
        In: zeros; out: the gradient reaching the initial state :math:`h_0`.
    dhz : (B, n)
        Scratch, in: zeros.
    da, du : (T, B, 3n)
        Out: the gradients of :math:`x_t W + b_x` and of :math:`h_{t-1} U + b_h`.
    """
    rows, UT = slice(start, stop), np.ascontiguousarray(U.T)
    for t in range(A.shape[0] - 1, -1, -1):
        gru_backward(A[t, rows], H[t, rows], u_h[t, rows], g_out[t, rows], dh[rows], dhz[rows], da[t, rows],
                     du[t, rows])
        np.matmul(du[t, rows], UT, out=dh[rows])
    dh[rows] += dhz[rows]


# The compiled forms: the same loops, with numba's np.dot (SciPy's BLAS) for the products. Row slices of
# C-contiguous arrays taken inside the loop stay C-contiguous, so np.dot needs no copies.
def _lstm_sequence_forward32(A, U, H, C, tanh_C, hu, start, stop):
    for t in range(A.shape[0]):
        np.dot(H[t, start:stop], U, hu[start:stop])
        lstm_forward_fast(A[t, start:stop], hu[start:stop], C[t, start:stop], C[t + 1, start:stop],
                          tanh_C[t, start:stop], H[t + 1, start:stop])


def _lstm_sequence_backward32(A, U, C, tanh_C, g_out, dh, dc, dz, start, stop):
    UT = U.T
    for t in range(A.shape[0] - 1, -1, -1):
        lstm_backward_fast(A[t, start:stop], C[t, start:stop], tanh_C[t, start:stop], g_out[t, start:stop],
                           dh[start:stop], dc[start:stop], dz[t, start:stop])
        np.dot(dz[t, start:stop], UT, dh[start:stop])


def _gru_sequence_forward32(A, U, b_h, H, u_h, hu, start, stop):
    for t in range(A.shape[0]):
        np.dot(H[t, start:stop], U, hu[start:stop])
        gru_forward_fast(A[t, start:stop], hu[start:stop], b_h, H[t, start:stop], u_h[t, start:stop],
                         H[t + 1, start:stop])


def _gru_sequence_backward32(A, U, H, u_h, g_out, dh, dhz, da, du, start, stop):
    UT = U.T
    for t in range(A.shape[0] - 1, -1, -1):
        gru_backward_fast(A[t, start:stop], H[t, start:stop], u_h[t, start:stop], g_out[t, start:stop],
                          dh[start:stop], dhz[start:stop], da[t, start:stop], du[t, start:stop])
        np.dot(du[t, start:stop], UT, dh[start:stop])
    for b in range(start, stop):
        for j in range(dh.shape[1]):
            dh[b, j] += dhz[b, j]


# --------------------------------------------------------------------- dispatch
_kernel = njit(nogil=True, error_model="numpy")
lstm_forward_fast = _kernel(_lstm_forward32)
lstm_backward_fast = _kernel(_lstm_backward32)
gru_forward_fast = _kernel(_gru_forward32)
gru_backward_fast = _kernel(_gru_backward32)
lstm_sequence_forward_fast = _kernel(_lstm_sequence_forward32)
lstm_sequence_backward_fast = _kernel(_lstm_sequence_backward32)
gru_sequence_forward_fast = _kernel(_gru_sequence_forward32)
gru_sequence_backward_fast = _kernel(_gru_sequence_backward32)

# Whether SciPy is installed, asked of the import system without importing it; it is imported by the first loop.
_SCIPY = importlib.util.find_spec("scipy") is not None
_blas: bool | None = None  # whether SciPy's BLAS wrappers imported; None: not tried yet


def _has_blas() -> bool:
    """Import SciPy's BLAS wrappers once (numba's ``np.dot`` calls them); ``False`` where that fails."""
    global _blas
    if _blas is None:
        try:
            importlib.import_module("scipy.linalg.cython_blas")
            _blas = True
        except ImportError:  # pragma: no cover - exercised where SciPy is absent or broken
            _blas = False
    return _blas


def compiled_sequences(dtype: np.dtype, *, load: bool = False) -> bool:
    """Whether the ``*_sequence_*`` kernels run compiled, with no Python per time step, for arrays of ``dtype``
    (float32, with numba and SciPy installed and compiled kernels enabled).

    SciPy is imported only with ``load=True``, which a layer passes in Python just before it runs the loop (on
    barenet's threads): a BLAS library loaded then is among those :mod:`barenet.threads` holds to one thread,
    where one loaded from inside a compiled loop on a helper thread would run on its own threads for that call.
    """
    if lstm_sequence_forward_fast is None or np.dtype(dtype) != np.float32 or not _SCIPY:
        return False
    return _has_blas() if load else _blas is not False


def _pick(fast, reference, compiled=lambda a: a.dtype == np.float32):
    """The function the layers call: ``fast`` when compiled and ``compiled(first argument)``, else ``reference``."""
    if fast is None:
        return reference

    def kernel(a: np.ndarray, *args: np.ndarray) -> None:
        (fast if compiled(a) else reference)(a, *args)

    kernel.__doc__ = reference.__doc__
    kernel.__name__ = reference.__name__.removesuffix("_reference")
    return kernel


lstm_forward = _pick(lstm_forward_fast, lstm_forward_reference)
lstm_backward = _pick(lstm_backward_fast, lstm_backward_reference)
gru_forward = _pick(gru_forward_fast, gru_forward_reference)
gru_backward = _pick(gru_backward_fast, gru_backward_reference)


def _sequence_compiled(a: np.ndarray) -> bool:
    return compiled_sequences(a.dtype, load=True)


lstm_sequence_forward = _pick(lstm_sequence_forward_fast, lstm_sequence_forward_reference, _sequence_compiled)
lstm_sequence_backward = _pick(lstm_sequence_backward_fast, lstm_sequence_backward_reference, _sequence_compiled)
gru_sequence_forward = _pick(gru_sequence_forward_fast, gru_sequence_forward_reference, _sequence_compiled)
gru_sequence_backward = _pick(gru_sequence_backward_fast, gru_sequence_backward_reference, _sequence_compiled)
