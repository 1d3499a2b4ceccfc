"""barenet.memory: the memory a training step frees is kept for the next step (glibc only).

Each case runs in a fresh interpreter, whose allocator has glibc's own settings, and counts the page
faults of every step with ``getrusage``: a page the step takes back from the system costs one fault.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="barenet.memory changes glibc's malloc settings only")

# A model whose every step allocates and frees about 100 MB in 16 MB arrays (1024 x 4096 float32), with
# little arithmetic: the page faults are most of a step's work.
SCRIPT = textwrap.dedent("""
    import json, resource
    import numpy as np
    import barenet as bn
    from barenet import memory

    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20

    class Faults(bn.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.steps = []
        def on_epoch_begin(self, epoch, logs=None):
            self.start = faults()
        def on_batch_end(self, batch, logs=None):  # the faults since the step before ended
            now = faults()
            self.steps.append(now - self.start)
            self.start = now

    rng = np.random.default_rng(0)
    X = rng.standard_normal((6 * 1024, 16)).astype(np.float32)
    y = rng.standard_normal(6 * 1024).astype(np.float32)
    model = bn.Sequential([bn.layers.Dense(4096, activation="tanh", input_shape=(16,)),
                           bn.layers.Activation("sigmoid"), bn.layers.Activation("tanh"), bn.layers.Dense(1)],
                          seed=0)
    model.compile(loss="mse", optimizer="sgd")
    counter = Faults()
    model.fit(X, y, epochs=1, batch_size=1024, shuffle=False, verbose=0, callbacks=[counter])
    after_fit = rss_mb()
    memory.release_freed_memory()
    print(json.dumps({"steps": counter.steps, "rss_after_fit": after_fit, "rss_after_release": rss_mb(),
                      "keeping": memory._keeping}))
""")


def _run(**env: str) -> dict:
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "BARENET_NUM_THREADS": "1", **env})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_step_reuses_the_memory_the_step_before_it_freed_and_release_hands_it_back():
    kept, default = _run(), _run(BARENET_REUSE_MEMORY="0")
    # glibc's own settings: every step takes tens of MB back from the system (4 KiB a fault)
    assert min(default["steps"][2:]) > 4000, default
    # barenet's: after the first steps, the arrays land in memory the process already holds
    assert max(kept["steps"][2:]) < 200, kept
    # the kept memory goes back to the system on release (the arrays of a step: about 100 MB)
    assert kept["rss_after_fit"] - kept["rss_after_release"] > 40, kept
    assert not kept["keeping"]
