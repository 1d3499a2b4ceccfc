"""scikit-learn estimators built on :class:`barenet.Sequential`.

:class:`NeuralNetClassifier` and :class:`NeuralNetRegressor` are multi-layer perceptrons with the
interface (and most of the parameters) of scikit-learn's ``MLPClassifier`` and ``MLPRegressor``, so
they work in ``Pipeline``, ``GridSearchCV``, ``cross_val_score`` and the rest of scikit-learn. This
module is the one edge of barenet that imports scikit-learn; the engine stays NumPy-only.

Example::

    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from barenet.sklearn import NeuralNetClassifier

    pipe = make_pipeline(StandardScaler(), NeuralNetClassifier(max_iter=50, random_state=0))
    search = GridSearchCV(pipe, {"neuralnetclassifier__hidden_layer_sizes": [(32,), (64, 32)]}, cv=3)
    search.fit(X, y)
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, column_or_1d, validate_data

from . import optimizers
from .errors import ConfigError, DataError
from .layers import BatchNormalization, Dense, Dropout
from .layers import activations as activations_mod
from .models import Sequential
from .models.callbacks import Callback, EarlyStopping
from .models.history import History
from .models.training import DIVERGENCE_FACTOR

__all__ = ["NeuralNetClassifier", "NeuralNetRegressor"]

_SOLVERS = ("sgd", "rmsprop", "adam", "adamw")
#: scikit-learn's activation names, accepted next to barenet's own.
_ACTIVATION_ALIASES = {"logistic": "sigmoid", "identity": "linear"}
_FLOATS = (np.float64, np.float32)


class _BaseNeuralNet(BaseEstimator):
    """Parameters, model construction and the training loop shared by both estimators.

    The parameters are documented on :class:`NeuralNetClassifier`.
    """

    #: Whether the early-stopping split keeps the class proportions (classifiers with 1-d labels).
    _stratify = False

    def __init__(
        self,
        *,
        hidden_layer_sizes: tuple[int, ...] = (100,),
        activation: str = "relu",
        solver: str | optimizers.Optimizer = "adam",
        learning_rate_init: float = 0.001,
        alpha: float = 1e-4,
        batch_size: int | str = "auto",
        max_iter: int = 200,
        dropout: float = 0.0,
        batch_norm: bool = False,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        tol: float = 1e-4,
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 0,
        dtype: str = "float32",
        warm_start: bool = False,
        shuffle: bool = True,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.learning_rate_init = learning_rate_init
        self.alpha = alpha
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose
        self.dtype = dtype
        self.warm_start = warm_start
        self.shuffle = shuffle

    # ----------------------------------------------------------------- parameters
    def set_params(self, **params: Any) -> _BaseNeuralNet:
        """scikit-learn's ``set_params``, all or nothing: with an unknown name among ``params`` no parameter
        changes (scikit-learn's own sets the names before it and then raises)."""
        valid = self.get_params(deep=False)
        for key, value in params.items():
            if key.partition("__")[0] not in valid:
                super().set_params(**{key: value})  # raises scikit-learn's error for this name
        return super().set_params(**params)

    def _check_params(self) -> None:
        """Raise a :class:`~barenet.errors.ConfigError` naming the first parameter out of range."""
        name = type(self).__name__

        def bad(param: str, expected: str) -> ConfigError:
            return ConfigError(f"{name}: {param} must be {expected}, got {getattr(self, param)!r}")

        if any(not _is_int(u) or u < 1 for u in self._hidden_sizes()):
            raise bad("hidden_layer_sizes", "a tuple of positive integers")
        self._activation_name()
        if not isinstance(self.solver, optimizers.Optimizer) and self.solver not in _SOLVERS:
            raise bad("solver", f"one of {list(_SOLVERS)} or a barenet Optimizer")
        if not _is_real(self.learning_rate_init) or not self.learning_rate_init > 0:
            raise bad("learning_rate_init", "a positive number")
        if not _is_real(self.tol) or self.tol < 0:
            raise bad("tol", "a number >= 0")
        if not _is_real(self.alpha) or self.alpha < 0:
            raise bad("alpha", "a number >= 0")
        if self.batch_size != "auto" and (not _is_int(self.batch_size) or self.batch_size < 1):
            raise bad("batch_size", "a positive integer or 'auto'")
        for param in ("max_iter", "n_iter_no_change"):
            if not _is_int(getattr(self, param)) or getattr(self, param) < 1:
                raise bad(param, "a positive integer")
        if not _is_real(self.dropout) or not 0 <= self.dropout < 1:
            raise bad("dropout", "in [0, 1)")
        if not _is_real(self.validation_fraction) or not 0 < self.validation_fraction < 1:
            raise bad("validation_fraction", "in (0, 1)")
        if str(self.dtype) not in ("float32", "float64"):
            raise bad("dtype", "'float32' or 'float64'")

    def _hidden_sizes(self) -> tuple[Any, ...]:
        sizes = self.hidden_layer_sizes
        return tuple(sizes) if hasattr(sizes, "__iter__") else (sizes,)

    def _activation_name(self) -> str:
        act = self.activation
        if isinstance(act, str):
            act = _ACTIVATION_ALIASES.get(act.lower(), act.lower())
        try:
            activations_mod.get(act)
        except ConfigError as exc:
            raise ConfigError(f"{type(self).__name__}: activation {self.activation!r} is unknown; "
                              f"also accepted: {sorted(_ACTIVATION_ALIASES)} ({exc})") from None
        return act

    def _batch_size(self, n: int) -> int:
        return min(200 if self.batch_size == "auto" else int(self.batch_size), n)

    def _make_optimizer(self) -> optimizers.Optimizer:
        if isinstance(self.solver, optimizers.Optimizer):
            return type(self.solver).from_config(self.solver.get_config())
        return optimizers.get(self.solver, learning_rate=float(self.learning_rate_init))

    # ----------------------------------------------------------------- the network
    def _build_model(self, n_features: int, n_outputs: int, out_activation: str, loss: str, seed: int) -> Sequential:
        """Dense (-> BatchNormalization) -> activation (-> Dropout) per hidden layer, then the output layer,
        compiled with scikit-learn's objective (see :func:`_penalty_per_weight`)."""
        l2 = _penalty_per_weight(float(self.alpha), loss, n_outputs)
        act = self._activation_name()
        layers = []
        for units in self._hidden_sizes():
            if self.batch_norm:
                layers += [Dense(int(units), l2=l2), BatchNormalization(), activations_mod.get(act)]
            else:
                layers.append(Dense(int(units), activation=act, l2=l2))
            if self.dropout:
                layers.append(Dropout(float(self.dropout)))
        layers.append(Dense(n_outputs, activation=out_activation, l2=l2))
        model = Sequential(layers, seed=seed, dtype=str(self.dtype))
        model.build((n_features,))
        model.compile(loss=loss, optimizer=self._make_optimizer(), reduction="sample_weight")
        return model

    def _raw_output(self, X: Any) -> tuple[np.ndarray, np.dtype]:
        """Network outputs ``(n_samples, n_outputs_)`` for validated ``X``, and the dtype to return them in."""
        check_is_fitted(self, "model_")
        X = validate_data(self, X, dtype=_FLOATS, reset=False)
        return self.model_.predict(X.astype(self.model_.dtype, copy=False)), X.dtype

    # ----------------------------------------------------------------- training
    def _fit(self, X: np.ndarray, y: np.ndarray, Y: np.ndarray, sample_weight: Any, *, incremental: bool,
             task: tuple[int, str, str]) -> _BaseNeuralNet:
        """Train on validated ``X : (n, features)``, original targets ``y`` and network targets ``Y : (n, outputs)``.

        ``task`` is ``(n_outputs, output activation, loss)``. ``incremental`` (partial_fit) runs one
        epoch without convergence checks or early stopping. The caller checked the parameters
        (:meth:`_check_params`) before changing anything, so a bad one leaves a fitted estimator as it was.
        """
        rs = check_random_state(self.random_state)
        fresh = not hasattr(self, "model_") or not (incremental or self.warm_start)
        n_outputs, out_activation, loss = task
        w = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True).astype(self.dtype)

        early = bool(self.early_stopping) and not incremental
        if early:
            stratify = y if self._stratify and y.ndim == 1 else None
            train, val = train_test_split(np.arange(len(X)), test_size=self.validation_fraction,
                                          random_state=rs.randint(np.iinfo(np.int32).max), stratify=stratify)
            validation = (X[val], y[val], w[val])
            X, Y, w = X[train], Y[train], w[train]
        else:
            validation = None
        batch = self._batch_size(len(X))
        if fresh:
            self.model_ = self._build_model(X.shape[1], n_outputs, out_activation, loss,
                                            int(rs.randint(np.iinfo(np.int32).max)))
            self.n_outputs_ = n_outputs
            self.out_activation_ = out_activation
            self.loss_curve_: list[float] = []
            self.n_iter_ = 0
        elif not incremental:
            self.model_.optimizer = self._make_optimizer()
        if early:
            if fresh or not hasattr(self, "validation_scores_"):
                self.validation_scores_: list[float] = []
            self.best_loss_: float | None = None

        X = X.astype(self.model_.dtype, copy=False)
        Y = Y.astype(self.model_.dtype, copy=False)
        record = _Record(self, validation)
        callbacks: list[Callback] = [record]
        stopper = None
        if not incremental:
            # scikit-learn's rule: stop after n_iter_no_change epochs without an improvement of tol.
            stopper = (EarlyStopping("val_score", patience=int(self.n_iter_no_change) + 1, min_delta=float(self.tol),
                                     mode="max", restore_best_weights=True) if early else
                       EarlyStopping("loss", patience=int(self.n_iter_no_change) + 1, min_delta=float(self.tol),
                                     mode="min"))
            callbacks.append(stopper)
        history = self.model_.fit(X, Y, epochs=1 if incremental else int(self.max_iter), batch_size=batch,
                                  shuffle=bool(self.shuffle), sample_weight=w, callbacks=callbacks, verbose=0)
        if history.diverged_at is not None:
            raise DataError(self._divergence(history))
        if early:
            self.best_validation_score_ = max(self.validation_scores_, default=-np.inf)
        else:
            self.best_loss_ = min(self.loss_curve_)
        if stopper is not None and stopper.stopped_epoch is None:
            warnings.warn(f"{type(self).__name__}: max_iter={self.max_iter} epochs reached without "
                          "convergence; raise max_iter or learning_rate_init", ConvergenceWarning, stacklevel=3)
        return self

    def _divergence(self, history: History) -> str:
        """What went wrong in a fit whose ``history`` diverged (see :mod:`barenet.models.training`).

        ``history`` holds this fit's epochs, the diverged one last; ``loss_curve_`` and ``n_iter_`` hold the
        finite epochs of every fit (warm starts add up), so epochs are numbered from the estimator's first.
        """
        losses = history.history["loss"]
        loss, first = losses[-1], losses[0]
        before = self.n_iter_ - (len(losses) - 1)  # epochs of earlier fits
        epoch = before + len(losses)
        if not np.isfinite(loss):
            what = f"the training loss became {loss:.4g} at epoch {epoch}"
        elif len(losses) > 1 and loss > DIVERGENCE_FACTOR * first:
            what = (f"the training loss became {loss:.4g} at epoch {epoch}, more than {DIVERGENCE_FACTOR:g} "
                    f"times epoch {before + 1}'s {first:.4g}")
        else:
            what = f"a weight became NaN or infinite at epoch {epoch} (training loss {loss:.4g})"
        kept = ("its weights from before this fit" if history.kept_epoch is None
                else f"the weights of epoch {before + history.kept_epoch + 1}")
        return (f"{type(self).__name__}: {what}; scale the inputs or lower learning_rate_init (model_ keeps "
                f"{kept})")

    def _say(self, message: str) -> None:
        if self.verbose:
            print(message)

    def _validation_score(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray) -> float:
        """Weighted score of the network on the early-stopping split: accuracy for classifiers, R2 for
        regressors (as scikit-learn's MLP scores it)."""
        raise NotImplementedError

    # ----------------------------------------------------------------- weights as scikit-learn shows them
    @property
    def coefs_(self) -> list[np.ndarray]:
        """The Dense layers' kernels in order, ``coefs_[i] : (units_in, units_out)`` as in ``MLPClassifier``.

        Read-only views of the network's live weights, in the network's dtype: they follow later
        ``partial_fit`` and ``warm_start`` fits (copy them to keep a snapshot; ``model_.set_weights`` changes
        them), while a fit from scratch builds a new network and leaves earlier views on the old one.
        Raises scikit-learn's ``NotFittedError`` before the first fit.
        """
        return [_read_only(layer.params["kernel"]) for layer in self._dense_layers()]

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """The Dense layers' biases in order, ``intercepts_[i] : (units_out,)``; read-only views like :attr:`coefs_`."""
        return [_read_only(layer.params["bias"]) for layer in self._dense_layers()]

    def _dense_layers(self) -> list[Dense]:
        check_is_fitted(self, "model_")
        return [layer for layer in self.model_.layers if isinstance(layer, Dense)]


class _Record(Callback):
    """Keeps the estimator's per-epoch record (``n_iter_``, ``loss_curve_``, ``validation_scores_``) and
    puts the early-stopping score in the epoch logs as ``val_score`` for :class:`EarlyStopping`."""

    def __init__(self, estimator: _BaseNeuralNet,
                 validation: tuple[np.ndarray, np.ndarray, np.ndarray] | None) -> None:
        self.estimator = estimator
        self.validation = validation

    def on_epoch_end(self, epoch, logs=None):
        est, logs = self.estimator, logs if logs is not None else {}
        est.n_iter_ += 1
        est.loss_curve_.append(logs["loss"])
        message = f"Iteration {est.n_iter_}, loss = {logs['loss']:.8f}"
        if self.validation is not None:
            logs["val_score"] = score = est._validation_score(*self.validation)
            est.validation_scores_.append(score)
            message += f", validation score = {score:.6f}"
        est._say(message)


def _penalty_per_weight(alpha: float, loss: str, n_outputs: int) -> float:
    r"""The Dense layers' ``l2`` that gives scikit-learn's MLP objective under ``reduction="sample_weight"``.

    scikit-learn's MLP descends, batch by batch,
    :math:`J = \big(\sum_i w_i L_i + \tfrac{\alpha}{2}\sum \|W\|^2\big) / \sum_i w_i` (``_backprop``: the L2
    term divided by the batch's weight sum, ``sw_sum``), where :math:`L_i` sums over the outputs: the
    cross-entropy of the classes, the binary cross-entropies of the labels, :math:`\tfrac12 (p - t)^2` of the
    targets. barenet's losses average over the outputs instead, so for :math:`k` outputs barenet's
    :math:`\ell_i` is :math:`c L_i` with :math:`c = 1` (one output, or classes under softmax), :math:`1/k`
    (labels) or :math:`2/k` (squared error). The penalty :math:`c\,\alpha/2` keeps :math:`J_{barenet} = c J`:
    the same minimum and, for Adam, the same steps; plain SGD steps :math:`c` times scikit-learn's.
    """
    if loss == "categorical_crossentropy":
        c = 1.0
    elif loss == "mean_squared_error":
        c = 2.0 / n_outputs
    else:
        c = 1.0 / n_outputs
    return c * alpha / 2


def _read_only(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


class NeuralNetClassifier(ClassifierMixin, _BaseNeuralNet):
    """Multi-layer perceptron classifier trained with barenet.

    Binary targets get one sigmoid output and binary cross-entropy; more classes get a softmax
    output and categorical cross-entropy; a 2-d 0/1 indicator matrix is a multi-label problem
    with one sigmoid output per label. Labels may be any values (strings too).

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default (100,)
        Units of each hidden Dense layer; ``()`` gives a linear model.
    activation : str, default "relu"
        Hidden activation: ``"relu"``, ``"tanh"``, ``"sigmoid"`` (or ``"logistic"``), ``"elu"``,
        ``"gelu"``, ``"leaky_relu"``, ``"linear"`` (or ``"identity"``), or any other name
        ``barenet.layers.activations.get`` knows (``"silu"``, ``"mish"`` ...).
    solver : {"adam", "sgd", "rmsprop", "adamw"} or barenet Optimizer, default "adam"
        A name gets ``learning_rate=learning_rate_init``; an Optimizer object is copied with fresh state.
    learning_rate_init : float, default 0.001
    alpha : float, default 1e-4
        L2 penalty on kernels, scaled as in scikit-learn's MLP (and with its default): see Notes.
    batch_size : int or "auto", default "auto"
        ``"auto"`` is ``min(200, n_samples)``; larger values are clipped to ``n_samples``.
    max_iter : int, default 200
        Maximum epochs of ``fit``.
    dropout : float, default 0.0
        Dropout rate after each hidden layer.
    batch_norm : bool, default False
        BatchNormalization between each hidden Dense layer and its activation.
    early_stopping : bool, default False
        Hold out ``validation_fraction`` of the data; stop when the validation score has not
        improved by ``tol`` for more than ``n_iter_no_change`` epochs; keep the best epoch's weights.
        (Both stopping rules are the engine's :class:`~barenet.callbacks.EarlyStopping`.)
    validation_fraction : float, default 0.1
    n_iter_no_change : int, default 10
    tol : float, default 1e-4
        Without early stopping, training stops once the training loss has not improved by ``tol``
        for more than ``n_iter_no_change`` epochs.
    random_state : int, RandomState or None
        Seeds initialization, shuffling, dropout and the validation split; an int makes fits repeatable.
    verbose : int, default 0
    dtype : {"float32", "float64"}, default "float32"
        Precision of the network; predictions are float32 for float32 ``X`` and float64 otherwise.
    warm_start : bool, default False
        ``fit`` continues from the previous weights (with a fresh optimizer).
    shuffle : bool, default True

    Attributes
    ----------
    classes_ : ndarray (n_classes,)
        Class labels (for multi-label targets, the label indices ``0 .. n_labels - 1``).
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` was a DataFrame with string column names.
    model_ : barenet.Sequential
        The trained network.
    coefs_ : list of ndarray
        The Dense layers' kernels, ``coefs_[i] : (units_in, units_out)``, as ``MLPClassifier`` has them:
        read-only views of the live weights (they follow later ``partial_fit`` calls; copy them to keep a
        snapshot). With ``batch_norm`` the network also has BatchNormalization layers between them.
    intercepts_ : list of ndarray
        The Dense layers' biases, ``intercepts_[i] : (units_out,)``, read-only views like ``coefs_``.
    loss_curve_ : list of float
        Training loss (with the L2 penalty) after each epoch.
    validation_scores_ : list of float
        Validation accuracy after each epoch (only with ``early_stopping``).
    best_validation_score_ : float
        Only with ``early_stopping``.
    best_loss_ : float or None
        Lowest training loss (None with ``early_stopping``).
    n_iter_ : int
        Epochs trained, counted across ``warm_start`` fits and ``partial_fit`` calls.
    n_outputs_ : int
    out_activation_ : {"sigmoid", "softmax"}

    Notes
    -----
    Each batch descends scikit-learn's MLP objective, the weighted loss and the L2 penalty both divided by
    the batch's sum of sample weights: :math:`(\\sum_i w_i \\ell_i + \\tfrac{\\alpha}{2}\\sum \\|W\\|^2) / \\sum_i w_i`.
    A sample weight of 3 is the same as three copies of the sample, and heavier weights weaken the penalty
    as more data would. (For several outputs, barenet's losses average over them where scikit-learn's sum;
    the penalty is scaled to match, see :func:`barenet.sklearn._penalty_per_weight`.) ``partial_fit`` trains
    one epoch exactly as ``fit`` does: a first ``partial_fit`` equals ``fit`` with ``max_iter=1``, and ``k``
    calls on the same data equal ``fit`` with ``max_iter=k`` when no stopping rule ends it earlier.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from barenet.sklearn import NeuralNetClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = NeuralNetClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=300, random_state=0)
    >>> clf.fit(X, y).score(X, y) > 0.9
    True
    """

    _stratify = True

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> NeuralNetClassifier:
        """Train on ``X : (n_samples, n_features)`` and labels ``y : (n_samples,)`` or a 0/1 indicator
        matrix ``(n_samples, n_labels)``; ``sample_weight : (n_samples,)`` weights each sample's loss."""
        self._check_params()
        refit = not (self.warm_start and hasattr(self, "classes_"))
        X, y = validate_data(self, X, y, dtype=_FLOATS, multi_output=True, reset=refit)
        y = self._check_targets(y)
        if refit:
            binarizer = LabelBinarizer().fit(y)
        else:
            binarizer = self._binarizer
            if self._multilabel != (y.ndim == 2) or len(np.setdiff1d(y, self.classes_)):
                raise DataError(f"warm_start can only be used where y has the same classes as in the previous "
                                f"call to fit; previously got {self.classes_}, y has {np.unique(y)}")
        return self._fit_encoded(X, y, binarizer, sample_weight, incremental=False)

    def partial_fit(self, X: Any, y: Any, classes: Any = None, sample_weight: Any = None) -> NeuralNetClassifier:
        """Train one epoch on ``(X, y)``, continuing from the current weights and optimizer state.

        ``classes`` (every label that will ever appear) is required on the first call and
        optional afterwards; for multi-label targets pass the label indices ``range(n_labels)``.
        """
        self._check_params()
        first = not hasattr(self, "classes_")
        if first and classes is None:
            raise DataError(f"{type(self).__name__}.partial_fit needs classes=... (all labels) on its first call")
        X, y = validate_data(self, X, y, dtype=_FLOATS, multi_output=True, reset=first)
        y = self._check_targets(y)
        if first:
            binarizer = LabelBinarizer().fit(y if y.ndim == 2 else np.asarray(classes))
        else:
            binarizer = self._binarizer
            if classes is not None and not np.array_equal(np.unique(classes), self.classes_):
                raise DataError(f"classes={np.unique(classes)} differs from the classes of the first call, "
                                f"{self.classes_}")
        unknown = np.setdiff1d(y, binarizer.classes_) if y.ndim == 1 else []
        if len(unknown):
            raise DataError(f"y has labels {unknown} that are not in classes={binarizer.classes_}")
        return self._fit_encoded(X, y, binarizer, sample_weight, incremental=True)

    def _check_targets(self, y: np.ndarray) -> np.ndarray:
        check_classification_targets(y)
        if type_of_target(y) == "multilabel-indicator":
            return y
        return column_or_1d(y, warn=True)

    def _fit_encoded(self, X, y, binarizer: LabelBinarizer, sample_weight, *, incremental: bool):
        if len(binarizer.classes_) < 2:
            raise DataError(f"{type(self).__name__} needs samples of at least 2 classes; got 1 class: "
                            f"{binarizer.classes_}")
        self._binarizer = binarizer
        self._multilabel = binarizer.y_type_ == "multilabel-indicator"
        self.classes_ = binarizer.classes_
        Y = binarizer.transform(y)
        if binarizer.y_type_ == "multiclass":
            task = (len(self.classes_), "softmax", "categorical_crossentropy")
        else:
            task = (Y.shape[1], "sigmoid", "binary_crossentropy")
        if not incremental and not self.warm_start and hasattr(self, "model_"):
            del self.model_  # refit from scratch even if the previous fit had other classes
        return self._fit(X, y, Y, sample_weight, incremental=incremental, task=task)

    def _validation_score(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray) -> float:
        return float(accuracy_score(y, self._binarizer.inverse_transform(self.model_.predict(X)),
                                    sample_weight=sample_weight))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``(n_samples, n_classes)`` (for multi-label targets, each label's
        probability ``(n_samples, n_labels)``), float32 for float32 ``X`` and float64 otherwise."""
        out, dtype = self._raw_output(X)
        if self.out_activation_ == "sigmoid" and not self._multilabel:
            out = np.hstack([1 - out, out])
        return out.astype(dtype, copy=False)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        """Labels ``(n_samples,)`` (or a 0/1 indicator matrix ``(n_samples, n_labels)`` for multi-label)."""
        out, _ = self._raw_output(X)
        return self._binarizer.inverse_transform(out)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class NeuralNetRegressor(RegressorMixin, _BaseNeuralNet):
    """Multi-layer perceptron regressor trained with barenet: linear outputs and mean squared error.

    ``y`` may be ``(n_samples,)`` or ``(n_samples, n_outputs)`` for multi-output regression.

    Parameters
    ----------
    See :class:`NeuralNetClassifier`; they are the same.

    Attributes
    ----------
    n_features_in_, feature_names_in_, model_, coefs_, intercepts_, loss_curve_, validation_scores_,
    best_validation_score_, best_loss_, n_iter_, n_outputs_, out_activation_ (``"linear"``)
        As for :class:`NeuralNetClassifier`; validation scores are R2.
    """

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> NeuralNetRegressor:
        """Train on ``X : (n_samples, n_features)`` and targets ``y : (n_samples,)`` or ``(n_samples, n_outputs)``."""
        self._check_params()
        reset = not (self.warm_start and hasattr(self, "model_"))
        X, y = validate_data(self, X, y, dtype=_FLOATS, multi_output=True, y_numeric=True, reset=reset)
        return self._fit_targets(X, y, sample_weight, incremental=False, reset=reset)

    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> NeuralNetRegressor:
        """Train one epoch on ``(X, y)``, continuing from the current weights and optimizer state."""
        self._check_params()
        reset = not hasattr(self, "model_")
        X, y = validate_data(self, X, y, dtype=_FLOATS, multi_output=True, y_numeric=True, reset=reset)
        return self._fit_targets(X, y, sample_weight, incremental=True, reset=reset)

    def _fit_targets(self, X, y, sample_weight, *, incremental: bool, reset: bool):
        Y = y.reshape(len(y), -1)
        if not reset and Y.shape[1] != self.n_outputs_:
            raise DataError(f"y has {Y.shape[1]} outputs, but {type(self).__name__} was fitted with "
                            f"{self.n_outputs_}; fit again without warm_start to change them")
        if reset and hasattr(self, "model_"):
            del self.model_
        return self._fit(X, y, Y, sample_weight, incremental=incremental,
                         task=(Y.shape[1], "linear", "mean_squared_error"))

    def _validation_score(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray) -> float:
        return float(r2_score(y, self.model_.predict(X).reshape(y.shape), sample_weight=sample_weight))

    def predict(self, X: Any) -> np.ndarray:
        """Predictions ``(n_samples,)`` for a single output, else ``(n_samples, n_outputs)``;
        float32 for float32 ``X`` and float64 otherwise."""
        out, dtype = self._raw_output(X)
        return (out[:, 0] if self.n_outputs_ == 1 else out).astype(dtype, copy=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
