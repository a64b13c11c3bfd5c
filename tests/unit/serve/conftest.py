"""Fixtures of the serving tests."""

import time

import pytest


@pytest.fixture
def wait_for():
    """wait_for(predicate, timeout=10) -> whether predicate() became true in time (polled every 5 ms)."""
    def wait(predicate, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.005)
        return False

    return wait
