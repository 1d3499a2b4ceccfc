"""The optimizer contract.

One optimizer serves a whole model. It sees the model's parameters and gradients as two
dicts keyed by a stable dotted path (``"layers.0.kernel"``) and updates parameters in place.
Its per-parameter state ("slots": momentum, Adam moments) is keyed by the same paths, so
:meth:`Optimizer.get_state` / :meth:`Optimizer.set_state` can save and resume training.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import ConfigError
from . import schedules
from .schedules import Schedule

#: The key :meth:`Optimizer.update` gets when it updates every parameter at once.
_PACKED = "<all parameters>"

#: Where an optimizer with an ``epsilon`` adds it to its denominator: as Keras 3 does, or as PyTorch does
#: (see :class:`~barenet.optimizers.Adam` and :class:`~barenet.optimizers.RMSprop`).
EPSILON_PLACEMENTS = ("keras", "pytorch")


def check_epsilon(who: str, epsilon: Any, placement: Any) -> tuple[float, str]:
    """``(epsilon, placement)`` checked for the optimizer named ``who``."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float, np.floating)) or not epsilon > 0:
        raise ConfigError(f"{who} epsilon must be a number > 0, got {epsilon!r}")
    if placement not in EPSILON_PLACEMENTS:
        raise ConfigError(f"{who} epsilon_placement must be one of {list(EPSILON_PLACEMENTS)}, got {placement!r}")
    return float(epsilon), placement


def _whole(arrays: list[np.ndarray]) -> np.ndarray | None:
    """The 1-d array that ``arrays`` exactly tile as consecutive contiguous views, in order; else None."""
    base = arrays[0].base if arrays else None
    if base is None or base.ndim != 1 or not base.flags.c_contiguous:
        return None
    address = base.__array_interface__["data"][0]
    for a in arrays:
        if a.base is not base or not a.flags.c_contiguous or a.__array_interface__["data"][0] != address:
            return None
        address += a.nbytes
    return base if address == base.__array_interface__["data"][0] + base.nbytes else None


class Optimizer:
    """Base class. Subclasses implement :meth:`update` and list their slot names in ``slot_names``.

    Parameters
    ----------
    learning_rate : float or Schedule
        A constant, or a schedule called with the step count before each update.
    clipnorm : float, optional
        If set, each gradient array :math:`g_k` whose L2 norm exceeds ``clipnorm`` is scaled to norm
        ``clipnorm``, each on its own (Keras's ``clipnorm``).
    global_clipnorm : float, optional
        If set, all gradients are scaled together so that their global L2 norm
        :math:`\\sqrt{\\sum_k \\|g_k\\|^2}` is at most ``global_clipnorm`` (Keras's ``global_clipnorm``,
        PyTorch's ``clip_grad_norm_``). At most one of the two may be set.

    Notes
    -----
    Configurations saved before ``global_clipnorm`` existed hold ``clipnorm`` with the global meaning;
    :meth:`from_config` reads them so (a configuration written now marks its per-array ``clipnorm``
    with ``"clipnorm_per_array": true``).
    """

    slot_names: tuple[str, ...] = ()
    #: Settings that did not exist when some configurations were saved, with the value those configurations
    #: were trained with: :meth:`from_config` fills them in where a configuration lacks them.
    legacy_config: dict[str, Any] = {}

    def __init__(self, learning_rate: float | Schedule = 0.01, *, clipnorm: float | None = None,
                 global_clipnorm: float | None = None) -> None:
        if not isinstance(learning_rate, Schedule):
            if not isinstance(learning_rate, (int, float, np.floating)) or not learning_rate > 0:
                raise ConfigError(f"learning_rate must be a positive number or a Schedule, got {learning_rate!r}")
            learning_rate = float(learning_rate)
        for name, value in (("clipnorm", clipnorm), ("global_clipnorm", global_clipnorm)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, np.floating))
                                      or not value > 0):
                raise ConfigError(f"{name} must be a number > 0, got {value!r}")
        if clipnorm is not None and global_clipnorm is not None:
            raise ConfigError("set at most one of clipnorm (each gradient's norm) and global_clipnorm "
                              f"(the norm of all gradients together), got {clipnorm!r} and {global_clipnorm!r}")
        self.learning_rate = learning_rate
        self.clipnorm = None if clipnorm is None else float(clipnorm)
        self.global_clipnorm = None if global_clipnorm is None else float(global_clipnorm)
        self.iterations = 0
        self.slots: dict[str, dict[str, np.ndarray]] = {name: {} for name in self.slot_names}
        self._scratch: dict[np.dtype, np.ndarray] = {}
        self._layout: tuple[list[np.ndarray], tuple[np.ndarray, np.ndarray] | None] | None = None
        self._packed_parts: dict[str, tuple[int, tuple[int, ...]]] = {}
        self._packed_slots: dict[str, np.ndarray] = {}
        self._packed_segments: tuple[np.ndarray, list[str]] | None = None

    def current_learning_rate(self) -> float:
        """The rate the next :meth:`step` will use."""
        lr = self.learning_rate
        return float(lr(self.iterations)) if isinstance(lr, Schedule) else lr

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        """Apply one update to every parameter in ``params`` (in place) from ``grads`` (clipped in place)."""
        self._clip(grads)
        lr = self.current_learning_rate()
        self.iterations += 1
        flat = self._packed(params, grads)
        if flat is not None:
            self.update(_PACKED, *flat, lr)
            return
        for key, param in params.items():
            grad = np.ascontiguousarray(grads[key])
            if param.flags.c_contiguous:
                self.update(key, param, grad, lr)
            else:  # updates work on flat views: update a contiguous copy and write it back
                work = np.ascontiguousarray(param)
                self.update(key, work, grad, lr)
                param[...] = work

    def _clip(self, grads: dict[str, np.ndarray]) -> None:
        """Scale gradients in place by ``clipnorm`` (each array) or ``global_clipnorm`` (all together)."""
        if self.clipnorm is not None:
            for g in grads.values():
                norm = math.sqrt(float(np.vdot(g, g)))
                if norm > self.clipnorm:
                    g *= g.dtype.type(self.clipnorm / norm)
        if self.global_clipnorm is not None:
            norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
            if norm > self.global_clipnorm:
                scale = self.global_clipnorm / norm
                for g in grads.values():
                    g *= g.dtype.type(scale)

    def update(self, key: str, param: np.ndarray, grad: np.ndarray, lr: float) -> None:
        """Update one parameter in place.

        ``param`` and ``grad`` are C-contiguous (:meth:`step` sees to it), so their 1-d views alias them.
        Update rules are element-wise, so ``param`` may also be every parameter of the model at once,
        as a 1-d array (see :meth:`_packed`); ``key`` then stands for all of them in :meth:`slot` and
        :meth:`segments`.
        """
        raise NotImplementedError

    def segments(self, key: str, param: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """``[start, stop)`` of each parameter inside the 1-d view of ``param``, as ``(k, 2) int64``, and
        their keys: the whole array for one parameter, one range per parameter for the packed array."""
        if key is not _PACKED:
            return np.array([[0, param.size]], dtype=np.int64), [key]
        if self._packed_segments is None:
            bounds = [(start, start + math.prod(shape)) for start, shape in self._packed_parts.values()]
            self._packed_segments = np.array(bounds, dtype=np.int64).reshape(-1, 2), list(self._packed_parts)
        return self._packed_segments

    def _packed(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]
                ) -> tuple[np.ndarray, np.ndarray] | None:
        """``(all_params, all_grads)`` when the parameters are consecutive views of one 1-d array and the
        gradients of another, in the same order (as :class:`~barenet.Sequential` lays them out); else None.

        The check is remembered for the same arrays, so it costs a few identity tests per step.
        """
        arrays = [*params.values(), *(grads[key] for key in params)]
        cached = self._layout
        if cached is not None and len(cached[0]) == len(arrays) and all(
                a is b for a, b in zip(cached[0], arrays, strict=True)):
            return cached[1]
        half = len(params)
        flat = _whole(arrays[:half]), _whole(arrays[half:])
        if flat[0] is None or flat[1] is None or flat[0].shape != flat[1].shape or flat[0].dtype != flat[1].dtype:
            flat = None
        else:
            offsets = np.cumsum([0, *(a.size for a in arrays[:half])])
            self._packed_parts = {key: (int(offsets[i]), params[key].shape) for i, key in enumerate(params)}
            self._packed_slots = {}
            self._packed_segments = None
        self._layout = (arrays, flat)
        return flat

    def slot(self, name: str, key: str, like: np.ndarray) -> np.ndarray:
        """The ``name`` slot of parameter ``key``, created as zeros on first use."""
        if key is _PACKED:
            return self._packed_slot(name, like)
        store = self.slots[name]
        if key not in store:
            store[key] = np.zeros_like(like)
        return store[key]

    def _packed_slot(self, name: str, like: np.ndarray) -> np.ndarray:
        """The ``name`` slot of every parameter as one array laid out like the packed parameters.

        ``slots[name][key]`` stay views of it, so :meth:`get_state` is unchanged; entries replaced by
        :meth:`set_state` (or missing) are copied in (or zeroed) the next time the array is asked for.
        """
        flat = self._packed_slots.get(name)
        store, parts = self.slots[name], self._packed_parts
        if flat is not None and all(key in store and store[key].base is flat for key in parts):
            return flat
        flat = self._packed_slots[name] = np.zeros_like(like)
        for key, (start, shape) in parts.items():
            view = flat[start:start + int(np.prod(shape))].reshape(shape)
            if key in store:
                view[...] = store[key]
            store[key] = view
        return flat

    def scratch(self, like: np.ndarray) -> np.ndarray:
        """A work array of ``like``'s shape and dtype, reused by every update (never part of the state).

        Its content is garbage on entry; updates write it with ``out=`` ufuncs instead of
        allocating temporaries, which for large parameters cost page faults on every step.
        """
        buffer = self._scratch.get(like.dtype)
        if buffer is None or buffer.size < like.size:
            buffer = self._scratch[like.dtype] = np.empty(like.size, dtype=like.dtype)
        return buffer[:like.size].reshape(like.shape)

    # ----------------------------------------------------------------- persistence
    def get_config(self) -> dict[str, Any]:
        """The constructor's arguments as JSON data (a schedule as its own config), which :meth:`from_config`
        takes back; subclasses add their own."""
        lr = self.learning_rate
        config: dict[str, Any] = {
            "learning_rate": schedules.serialize(lr) if isinstance(lr, Schedule) else lr,
        }
        if self.clipnorm is not None:
            config["clipnorm"] = self.clipnorm
            config["clipnorm_per_array"] = True
        if self.global_clipnorm is not None:
            config["global_clipnorm"] = self.global_clipnorm
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Optimizer:
        """Inverse of :meth:`get_config`; a ``clipnorm`` without ``clipnorm_per_array`` (saved before
        ``global_clipnorm`` existed, when ``clipnorm`` clipped the global norm) becomes ``global_clipnorm``,
        and a setting of :attr:`legacy_config` that ``config`` lacks takes the value given there."""
        config = {**cls.legacy_config, **config}
        if not config.pop("clipnorm_per_array", False) and "clipnorm" in config:
            config["global_clipnorm"] = config.pop("clipnorm")
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = schedules.deserialize(config["learning_rate"])
        return cls(**config)

    def get_state(self) -> dict[str, np.ndarray]:
        """Slots and step count as flat arrays keyed ``"<slot>/<path>"``."""
        state = {f"{name}/{key}": value for name, store in self.slots.items() for key, value in store.items()}
        state["iterations"] = np.array(self.iterations, dtype=np.int64)
        return state

    def legacy_slots(self) -> dict[str, tuple[str, float]]:
        """Slot names of earlier versions' saved state: ``old name -> (slot, factor to multiply by)``."""
        return {}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Inverse of :meth:`get_state` (which also accepts the slots of :meth:`legacy_slots`)."""
        self.iterations = int(state.get("iterations", 0))
        self.slots = {name: {} for name in self.slot_names}
        legacy = self.legacy_slots()
        for flat, value in state.items():
            if flat == "iterations":
                continue
            name, _, key = flat.partition("/")
            if name in legacy and name not in self.slots:
                name, factor = legacy[name]
                value = np.asarray(value)
                value = value * value.dtype.type(factor)
            if name not in self.slots:
                raise ConfigError(f"optimizer state has unknown slot {name!r}; {type(self).__name__} has "
                                  f"{list(self.slot_names)}")
            self.slots[name][key] = np.array(value)

    def __repr__(self) -> str:
        config = {k: v for k, v in self.get_config().items() if k != "clipnorm_per_array"}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in config.items())})"
