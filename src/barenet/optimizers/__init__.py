"""Optimizers and learning-rate schedules."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .adam import Adam, AdamW
from .base import Optimizer
from .rmsprop import RMSprop
from .schedules import CosineDecay, ExponentialDecay, Schedule, StepDecay
from .sgd import SGD

_BY_NAME: dict[str, type[Optimizer]] = {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW}


def get(optimizer: str | Optimizer, **kwargs: Any) -> Optimizer:
    """Resolve ``"adam"`` (with ``kwargs`` such as ``learning_rate``) or return an optimizer object."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str) and optimizer.lower() in _BY_NAME:
        return _BY_NAME[optimizer.lower()](**kwargs)
    raise ConfigError(f"unknown optimizer {optimizer!r}; expected one of {sorted(_BY_NAME)} or an Optimizer")


def serialize(optimizer: Optimizer) -> dict[str, Any]:
    """The JSON form of a built-in optimizer: ``{"name": "adam", "config": optimizer.get_config()}``."""
    name = next((k for k, v in _BY_NAME.items() if type(optimizer) is v), None)
    if name is None:
        raise ConfigError(f"optimizer {optimizer!r} is not a built-in optimizer and cannot be saved")
    return {"name": name, "config": optimizer.get_config()}


def deserialize(spec: dict[str, Any]) -> Optimizer:
    """Inverse of :func:`serialize`; an unknown name raises :class:`~barenet.errors.ConfigError`."""
    cls = _BY_NAME.get(spec.get("name"))
    if cls is None:
        raise ConfigError(f"unknown optimizer {spec.get('name')!r}; expected one of {sorted(_BY_NAME)}")
    return cls.from_config(spec.get("config", {}))


__all__ = [
    "SGD", "Adam", "AdamW", "CosineDecay", "ExponentialDecay", "Optimizer", "RMSprop", "Schedule", "StepDecay",
    "deserialize", "get", "serialize",
]
