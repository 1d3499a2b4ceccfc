"""Helper threads that watch for work instead of sleeping (barenet.kernels.spin, barenet.threads._Spin).

The watch is only a hint on top of the queue that carries the parts: these tests check the counter
primitive itself with real threads, that a pool whose helper gave up watching (it slept on the queue)
still gets every part, and the conditions under which nobody watches.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from barenet import threads
from barenet.kernels._jit import NUMBA_ENABLED

needs_numba = pytest.mark.skipif(not NUMBA_ENABLED, reason="the watch is a compiled kernel")


@pytest.fixture
def split(monkeypatch):
    monkeypatch.setattr(threads, "MIN_WORK", 1)
    previous = threads.get_num_threads()
    threads.set_num_threads(2)
    with threads.engine():
        yield
    threads.set_num_threads(previous)


@needs_numba
def test_signal_and_wait_adds_watches_and_gives_up_after_its_rounds():
    from barenet.kernels.spin import signal_and_wait

    counters = np.zeros(16, dtype=np.int64)
    assert signal_and_wait(counters, 0, 8, 0, 1000) == 0  # added to 0; 8 never changed: gave up, gives seen
    assert counters.tolist() == [1] + [0] * 15
    assert signal_and_wait(counters, -1, 0, 0, 1) == 1  # already different from seen: returns at once
    assert signal_and_wait(counters, -1, 8, 5, 0) == 0  # no rounds: the value as it is

    def later() -> None:
        time.sleep(0.05)
        signal_and_wait(counters, 8, 8, -1, 0)

    other = threading.Thread(target=later)
    start = time.perf_counter()
    other.start()
    assert signal_and_wait(counters, -1, 8, 0, 1 << 62) == 1  # woken by the other thread's add
    assert time.perf_counter() - start >= 0.04
    other.join()


@needs_numba
def test_adds_from_four_threads_are_all_counted():
    from barenet.kernels.spin import signal_and_wait

    counters = np.zeros(16, dtype=np.int64)

    def add() -> None:
        for _ in range(20_000):
            signal_and_wait(counters, 0, 8, 0, 0)

    workers = [threading.Thread(target=add) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert counters[0] == 80_000


@needs_numba
def test_a_helper_that_gave_up_watching_still_gets_every_part(split, monkeypatch):
    threads.run(lambda rows: None, [slice(0, 1), slice(1, 2)])
    assert threads._pool.spin is not None
    monkeypatch.setattr(threads, "SPIN_SECONDS", 1e-4)
    for pause in (0.0, 0.002, 0.0, 0.01):
        time.sleep(pause)  # longer than the watch: the helper sleeps on the queue
        got = threads.run(lambda rows: (rows.start, threading.current_thread().name), [slice(0, 1), slice(1, 2)])
        assert [g[0] for g in got] == [0, 1] and got[1][1].startswith("barenet-")


@needs_numba
def test_nobody_watches_with_more_threads_than_cores_or_two_callers(split, monkeypatch):
    threads.run(lambda rows: None, [slice(0, 1), slice(1, 2)])
    spin = threads._pool.spin
    monkeypatch.setattr(threads, "_cores", lambda: 2)
    assert spin._rounds() > 0
    threads.set_num_threads(3)
    assert spin._rounds() == 0
    threads.set_num_threads(2)
    seen = []
    threads.run(lambda rows: seen.append(spin._rounds()), [slice(0, 1), slice(1, 2)])
    assert min(seen) > 0  # one caller: its helper watches
    threads._pool.enter()
    threads._pool.enter()  # two callers at once
    try:
        assert spin._rounds() == 0
    finally:
        threads._pool.leave()
        threads._pool.leave()
    assert spin._rounds() > 0


_PROBE = """
import barenet.threads as t
t.set_num_threads(2)
with t.engine():
    assert t.run(lambda rows: rows.start, [slice(0, 1), slice(1, 2)]) == [0, 1]
print(t._pool.spin is not None)
"""


@pytest.mark.parametrize("environment, watches", [
    ({"OMP_WAIT_POLICY": "PASSIVE"}, False), ({"BARENET_NUMBA": "0"}, False),
    ({"OMP_WAIT_POLICY": "active"}, NUMBA_ENABLED)])
def test_the_watch_is_off_when_openmp_is_told_passive_or_without_compiled_kernels(environment, watches):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "BARENET_NUMBA")}
    result = subprocess.run([sys.executable, "-c", _PROBE], env={**env, **environment}, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [str(watches)]


@needs_numba
def test_a_watch_that_cannot_be_built_leaves_the_pool_sleeping(monkeypatch):
    import barenet.kernels.spin as spin

    def broken(*args):
        raise RuntimeError("no such intrinsic on this processor")

    monkeypatch.setattr(spin, "signal_and_wait", broken)
    pool = threads._Pool()  # no thread started: the pool's parts would go to its queue, taken without watching
    assert pool.spin is None
    future = pool.submit(lambda rows: rows.stop, slice(0, 3))
    (taken, function, part), _ = pool._next(False, 0)
    assert taken is future and function(part) == 3
