"""Shared fixtures: array backends and hypothesis profiles.

Backends: NumPy; array-api-strict on its default device and on ``device1``
(which stands in for a GPU: mixing devices, or a hidden conversion through
NumPy, fails there); CuPy when it is installed and a GPU is present
(skipped otherwise).

Hypothesis profiles: ``ci`` (the default: 30 examples per test,
derandomised, so a CI run is reproducible and quick) and ``thorough``
(1000 examples, random): ``pytest --hypothesis-profile=thorough``.
"""

import os

import array_api_compat
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from refmaml import backends

settings.register_profile(
    "ci", max_examples=30, derandomize=True, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough", max_examples=1000, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci")


class Backend:
    """An array namespace and device, with conversions to and from NumPy."""

    def __init__(self, name, xp, device):
        self.name, self.xp, self.device = name, xp, device

    def put(self, a, dtype=None):
        """A NumPy array (or anything ``np.asarray`` takes) on this backend."""
        a = np.asarray(a) if dtype is None else np.asarray(a, dtype=dtype)
        return self.xp.asarray(a, device=self.device)

    def get(self, a):
        """Back to NumPy, checking namespace and device on the way."""
        self.assert_home(a)
        from refmaml._xp import to_numpy

        return to_numpy(a)

    def assert_home(self, a):
        """``a`` belongs to this backend's namespace and lives on its device."""
        assert array_api_compat.array_namespace(a) is self.xp, (
            f"result is from {array_api_compat.array_namespace(a).__name__}, expected {self.xp.__name__}"
        )
        assert array_api_compat.device(a) == self.device

    def __repr__(self):
        return self.name


BACKENDS = {"numpy": ("numpy", None), "strict": ("strict", "CPU_DEVICE"), "strict-device1": ("strict", "device1"),
            "cupy": ("cupy", None)}
"""The values of the ``backend`` fixture by id: a test that needs only some backends for some of
its cases parametrizes ``backend`` indirectly with them."""


def _backends():
    return [pytest.param(value, id=name) for name, value in BACKENDS.items()]


def _gpu_available():
    return backends.gpu()


@pytest.fixture(scope="session", params=_backends())
def backend(request):
    lib, dev = request.param
    if lib == "numpy":
        return Backend("numpy", array_api_compat.array_namespace(np.empty(0)), "cpu")
    if lib == "strict":
        strict = pytest.importorskip("array_api_strict")
        return Backend(f"strict:{dev}", strict, strict.Device(dev))
    if not _gpu_available():
        pytest.skip("CuPy tests need CuPy and an NVIDIA GPU")
    import cupy

    return Backend("cupy", array_api_compat.array_namespace(cupy.empty(0)), cupy.cuda.Device(0))


# --- in CI, a skip fails the run unless it is a CuPy test's (no GPU) ----------------------------

GPU_SKIP = "CuPy tests need CuPy and an NVIDIA GPU"
_SKIPPED = []


def pytest_runtest_logreport(report):
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _SKIPPED.append((report.nodeid, reason))


def _in_ci():
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_terminal_summary(terminalreporter):
    if os.environ.get("REFMAML_FUZZ_REPORT"):  # the tally RELIABILITY.md quotes
        from .fuzz import TALLY

        import collections
        total = collections.Counter()
        terminalreporter.section("fuzz tally")
        for name, counts in sorted(TALLY.items()):
            total.update(counts)
            terminalreporter.write_line(
                f"{name:40s} " + "  ".join(f"{e}->{o}: {c}" for (e, o), c in sorted(counts.items())))
        terminalreporter.write_line(
            f"{'all':40s} " + "  ".join(f"{e}->{o}: {c}" for (e, o), c in sorted(total.items()))
            + f"  total {sum(total.values())}")
    bad = [(node, reason) for node, reason in _SKIPPED if GPU_SKIP not in reason]
    if _in_ci() and bad:
        terminalreporter.section("skips that fail CI")
        for node, reason in bad:
            terminalreporter.write_line(f"{node}: {reason}")


def pytest_sessionfinish(session, exitstatus):
    if _in_ci() and any(GPU_SKIP not in reason for _, reason in _SKIPPED) and session.exitstatus == 0:
        session.exitstatus = 1


@pytest.fixture
def one_torch_thread():
    """PyTorch held to one thread for a module's tests (``pytestmark``): on a machine shared with other
    jobs its two threads spin waiting for each other, and a referee suite takes minutes instead of
    seconds; the numbers are the same."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
