"""barenet: neural networks from scratch on NumPy.

The public API::

    import barenet as bn
    model = bn.Sequential([bn.layers.Dense(10, activation="relu", input_dim=2),
                           bn.layers.Dense(1, activation="sigmoid")], seed=42)
    model.compile(loss="binary_crossentropy", optimizer=bn.optimizers.SGD(0.01), metrics=["accuracy"])
    history = model.fit(X, y, epochs=100)
"""

from . import callbacks, data, datasets, errors, functional, initializers, layers, losses, metrics, optimizers, threads
from .errors import BarenetError
from .gradcheck import gradcheck
from .io import load, load_model, save
from .models import History, Input, Model, Sequential
from .onnx import export_onnx, import_onnx
from .threads import get_num_threads, set_num_threads

__version__ = "0.1.0"

__all__ = [
    "BarenetError", "History", "Input", "Model", "Sequential", "callbacks", "data", "errors", "functional", "gradcheck",
    "initializers",
    "layers", "losses", "metrics", "optimizers",
    "datasets", "export_onnx", "import_onnx", "load", "load_model", "save", "threads", "get_num_threads",
    "set_num_threads",
]
