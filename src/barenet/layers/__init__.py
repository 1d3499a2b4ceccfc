"""Layers: each a small class with ``build``, ``forward``, ``backward`` and ``get_config``."""

from .activations import ELU, GELU, Activation, LeakyReLU, Linear, ReLU, Sigmoid, Softmax, Tanh
from .augmentation import RandomFlip
from .base import Cache, Layer, check_contract, layer_class, register
from .bidirectional import Bidirectional
from .conv import Conv2D
from .conv1d import Conv1D
from .dense import Dense
from .depthwise import DepthwiseConv2D, SeparableConv2D
from .dropout import Dropout
from .embedding import Embedding
from .normalization import BatchNormalization
from .pooling import AveragePooling2D, GlobalAveragePooling2D, MaxPooling2D
from .recurrent import GRU, LSTM, Recurrent, SimpleRNN
from .reshape import Flatten, Reshape

__all__ = [
    "Activation", "AveragePooling2D", "BatchNormalization", "Cache", "Conv2D", "Dense", "Dropout", "ELU", "Flatten",
    "GELU",
    "GlobalAveragePooling2D", "Layer", "LeakyReLU", "Linear", "MaxPooling2D", "RandomFlip", "ReLU", "Reshape",
    "Sigmoid", "Softmax", "Tanh", "check_contract", "layer_class", "register",
    "Bidirectional", "Embedding", "GRU", "LSTM", "Recurrent", "SimpleRNN",
    "Conv1D",
    "DepthwiseConv2D", "SeparableConv2D",
]
