"""Fixtures every test file shares."""

from __future__ import annotations

import signal
import threading

import pytest


@pytest.fixture(autouse=True)
def python_sigint_handler():
    """Each test starts with Python's own Ctrl-C handler, as a user's program does (``fit`` defers Ctrl-C only
    under that handler). A library another test imported or ran in the same worker may leave its own handler
    behind; a handler barenet left behind is a defect and fails the test that left it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    left = signal.getsignal(signal.SIGINT)
    if left is not signal.default_int_handler:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        module = getattr(left, "__module__", "") or ""
        if module.startswith("barenet"):
            pytest.fail(f"the test left barenet's SIGINT handler {left!r} installed")
