"""Training on data larger than memory: streams of batches for ``fit``, ``evaluate`` and ``predict``.

::

    import barenet as bn
    train = bn.data.from_parquet("logs/", target="clicked").shuffle(100_000, seed=0).batch(256).prefetch()
    model.fit(train, epochs=5)

A :class:`Dataset` reads its source (:func:`from_arrays`, :func:`from_npy`, :func:`from_parquet`,
:func:`from_csv`, :func:`from_dask`) one block at a time; its stages (``shuffle``, ``batch``, ``map``,
``prefetch``, ``take``, ``skip``) hold a bounded number of rows. Passes are reproducible: a seeded shuffle
gives each epoch its own order, the same every time. This package imports pandas, pyarrow and Dask only
when a source that needs them is made.
"""

from .dataset import Dataset
from .sources import from_arrays, from_csv, from_dask, from_npy, from_parquet

__all__ = ["Dataset", "from_arrays", "from_csv", "from_dask", "from_npy", "from_parquet"]
