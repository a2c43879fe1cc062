"""The cores: refmaml's worker threads, and the BLAS library held to one thread while they run.

OpenBLAS threads a product itself once it is large enough, and its worker threads then keep
spinning for a while after the product, waiting for the next one. A thread of ours that runs a
share of the work meanwhile finds the other core busy with that spinning and takes as long as the
whole work in one thread (measured: benchmarks/README.md, "Thread use"). So a call that shares its
work among threads (:func:`refmaml.policy.sharing`) holds the BLAS library to one thread for its
duration (:func:`one_blas_thread`), through threadpoolctl, and does its own sharing.

Holding BLAS to one thread is process-wide, and done from the main thread only: OpenBLAS ignores a
thread count set from another thread once the main thread has set one (measured with OpenBLAS
0.3.31), so a hold taken or given back elsewhere could leave the process on one BLAS thread. A
call in another thread shares the cores without the hold (slower where OpenBLAS's threads spin,
never different). It changes speed only, never a result: a call holds it only where every
product it computes is one that OpenBLAS computes with the same bits on one thread or several
(:func:`refmaml.policy.sharing` says which; ``tests/test_policy.py`` checks it).
"""

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

MAX_THREADS = 8  # measured with 2; more threads contend for the GIL between short operations
CORES = min(os.cpu_count() or 1, MAX_THREADS)

_LOCK = threading.Lock()
_POOL = []
_BLAS = {"held": False, "controller": None, "kernels": None}


def pool():
    """One process-wide pool of (cores - 1) worker threads, made on first use, and made anew in a
    child process (a fork copies the pool but not its threads, and work sent to it would wait
    forever); the calling thread takes the first share of the work itself."""
    with _LOCK:
        if not _POOL or _POOL[0][0] != os.getpid():
            _POOL[:] = [(os.getpid(), ThreadPoolExecutor(max(1, CORES - 1), thread_name_prefix="refmaml"))]
        return _POOL[0][1]


def both(f, g):
    """``(f(), g())``, ``f`` in a worker thread while the caller computes ``g`` (one after the
    other on one core). Each is computed as it would be alone."""
    if CORES < 2:
        return f(), g()
    future = pool().submit(f)
    second = g()
    return future.result(), second


def _blas():
    """threadpoolctl's controller of the BLAS libraries loaded in this process, made on first use;
    None where threadpoolctl finds none."""
    if _BLAS["controller"] is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - a declared dependency
            _BLAS["controller"] = False
        else:
            found = ThreadpoolController().select(user_api="blas")
            _BLAS["controller"] = found if found.lib_controllers else False
    return _BLAS["controller"] or None


def blas_kernels():
    """The lower-case names of the kernels of the BLAS libraries loaded in this process, as
    threadpoolctl reports them (``"haswell"``, ``"skylakex"``, ...; ``None`` for a library that
    names none, such as MKL); an empty tuple where it finds none. Read once, at first use."""
    if _BLAS.get("kernels") is None:
        blas = _blas()
        libs = [] if blas is None else blas.lib_controllers
        _BLAS["kernels"] = tuple((getattr(lib, "architecture", None) or "").lower() or None for lib in libs)
    return _BLAS["kernels"]


@contextlib.contextmanager
def one_blas_thread():
    """Within this block, called from the main thread, the BLAS library runs each product on one
    thread, and gets its setting back at the end; from any other thread, or inside such a block
    already, this does nothing."""
    if _BLAS["held"] or threading.current_thread() is not threading.main_thread():
        yield
        return
    blas = _blas()
    limiter = None if blas is None else blas.limit(limits=1)
    _BLAS["held"] = True
    try:
        yield
    finally:
        _BLAS["held"] = False
        if limiter is not None:
            limiter.restore_original_limits()
