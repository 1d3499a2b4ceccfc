"""A grid search over NeuralNetClassifier run on a real Dask cluster gives the same results as locally."""

from __future__ import annotations

import logging

import joblib
import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV

from barenet.sklearn import NeuralNetClassifier

distributed = pytest.importorskip("dask.distributed")


def _search() -> GridSearchCV:
    estimator = NeuralNetClassifier(learning_rate_init=0.01, max_iter=20, random_state=0)
    grid = {"hidden_layer_sizes": [(4,), (16,)], "alpha": [0.0, 1.0]}
    return GridSearchCV(estimator, grid, cv=3)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_grid_search_on_a_local_cluster_matches_the_same_search_run_locally():
    X, y = make_classification(n_samples=150, n_features=6, n_informative=4, flip_y=0.1, random_state=0)
    local = _search().set_params(n_jobs=1).fit(X, y)

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=logging.ERROR) as cluster, distributed.Client(cluster) as client:
        with distributed.get_task_stream(client) as stream, joblib.parallel_config(backend="dask"):
            remote = _search().set_params(n_jobs=-1).fit(X, y)
        workers = {task["worker"] for task in stream.data}
    assert cluster.status.name == "closed"

    assert len(workers) == 2  # the fits really ran on both worker processes of the cluster
    np.testing.assert_array_equal(remote.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"])
    np.testing.assert_array_equal(remote.cv_results_["split0_test_score"], local.cv_results_["split0_test_score"])
    assert remote.best_params_ == local.best_params_
    assert len(set(local.cv_results_["mean_test_score"])) > 1  # the grid points really differ
    np.testing.assert_array_equal(remote.predict(X), local.predict(X))
