r"""Learning-rate schedules: callables mapping the optimizer's step count (0, 1, 2 ...) to a rate.

Pass one as ``learning_rate`` to any optimizer. Epoch-based schedules and reduce-on-plateau
are callbacks (:class:`barenet.callbacks.LearningRateScheduler`,
:class:`barenet.callbacks.ReduceLROnPlateau`), since they act between epochs.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import ConfigError


class Schedule:
    """Base class: ``schedule(step) -> learning rate``."""

    def __call__(self, step: int) -> float:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return dict(vars(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


def _positive(name: str, value: float) -> float:
    if not value > 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")
    return float(value)


class StepDecay(Schedule):
    r""":math:`\eta_0 \cdot \gamma^{\lfloor t / s \rfloor}`: multiply by ``factor`` every ``step_size`` steps."""

    def __init__(self, initial_learning_rate: float, step_size: int, factor: float = 0.5) -> None:
        self.initial_learning_rate = _positive("initial_learning_rate", initial_learning_rate)
        self.step_size = int(_positive("step_size", step_size))
        self.factor = _positive("factor", factor)

    def __call__(self, step):
        return self.initial_learning_rate * self.factor ** (step // self.step_size)


class ExponentialDecay(Schedule):
    r""":math:`\eta_0 \cdot r^{t / T}` (``decay_rate`` per ``decay_steps``)."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, decay_rate: float) -> None:
        self.initial_learning_rate = _positive("initial_learning_rate", initial_learning_rate)
        self.decay_steps = int(_positive("decay_steps", decay_steps))
        self.decay_rate = _positive("decay_rate", decay_rate)

    def __call__(self, step):
        return self.initial_learning_rate * self.decay_rate ** (step / self.decay_steps)


class CosineDecay(Schedule):
    r"""Cosine annealing to ``alpha`` times the initial rate over ``decay_steps``, then flat:
    :math:`\eta_0\,[\alpha + (1-\alpha)\tfrac12(1 + \cos(\pi \min(t, T)/T))]`."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, alpha: float = 0.0) -> None:
        self.initial_learning_rate = _positive("initial_learning_rate", initial_learning_rate)
        self.decay_steps = int(_positive("decay_steps", decay_steps))
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1], got {alpha!r}")
        self.alpha = float(alpha)

    def __call__(self, step):
        progress = min(step, self.decay_steps) / self.decay_steps
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return self.initial_learning_rate * (self.alpha + (1 - self.alpha) * cosine)


_BY_NAME = {cls.__name__: cls for cls in (StepDecay, ExponentialDecay, CosineDecay)}


def serialize(schedule: Schedule) -> dict[str, Any]:
    if type(schedule).__name__ not in _BY_NAME:
        raise ConfigError(f"schedule {schedule!r} is not a built-in schedule and cannot be saved")
    return {"class": type(schedule).__name__, "config": schedule.get_config()}


def deserialize(spec: dict[str, Any]) -> Schedule:
    cls = _BY_NAME.get(spec.get("class"))
    if cls is None:
        raise ConfigError(f"unknown schedule {spec.get('class')!r}; expected one of {sorted(_BY_NAME)}")
    return cls(**spec["config"])
