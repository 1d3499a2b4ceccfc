"""Layers: each a small class with ``build``, ``forward``, ``backward`` and ``get_config``."""

from .activations import (
    ELU,
    GELU,
    Activation,
    HardSigmoid,
    HardSwish,
    LeakyReLU,
    Linear,
    Mish,
    ReLU,
    ReLU6,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Tanh,
)
from .augmentation import RandomFlip, RandomTranslation
from .base import Cache, Layer, check_contract, layer_class, register
from .bidirectional import Bidirectional
from .conv import Conv2D
from .conv1d import Conv1D
from .cropping import Cropping1D
from .dense import Dense
from .depthwise import DepthwiseConv2D, SeparableConv2D
from .dropout import Dropout
from .embedding import Embedding
from .merge import Add, Average, Concatenate, Maximum, Merge, Multiply, Subtract
from .multi_head_attention import MultiHeadAttention
from .normalization import BatchNormalization, LayerNormalization
from .padding import ZeroPadding2D
from .pooling import AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, MaxPooling2D
from .pooling1d import AveragePooling1D, GlobalAveragePooling1D, GlobalMaxPooling1D, MaxPooling1D
from .position import PositionEmbedding, SinusoidalPositionEncoding, TokenAndPositionEmbedding
from .recurrent import GRU, LSTM, Recurrent, SimpleRNN
from .reshape import Flatten, Reshape
from .upsampling import UpSampling2D

__all__ = [
    "Activation", "AveragePooling2D", "BatchNormalization", "Cache", "Conv2D", "Dense", "Dropout", "ELU", "Flatten",
    "GELU",
    "GlobalAveragePooling2D", "Layer", "LeakyReLU", "Linear", "MaxPooling2D", "RandomFlip", "ReLU", "Reshape",
    "Sigmoid", "Softmax", "Tanh", "check_contract", "layer_class", "register",
    "Bidirectional", "Embedding", "GRU", "LSTM", "Recurrent", "SimpleRNN",
    "Add", "Average", "Concatenate", "Maximum", "Merge", "Multiply", "Subtract", "MultiHeadAttention",
    "PositionEmbedding", "SinusoidalPositionEncoding", "TokenAndPositionEmbedding",
    "LayerNormalization", "SiLU", "Softplus", "ReLU6", "HardSigmoid", "HardSwish", "Mish",
    "GlobalMaxPooling2D", "MaxPooling1D", "AveragePooling1D", "GlobalAveragePooling1D", "GlobalMaxPooling1D",
    "UpSampling2D", "ZeroPadding2D",
    "Conv1D",
    "DepthwiseConv2D", "SeparableConv2D",
    "Cropping1D",
    "RandomTranslation",
]
