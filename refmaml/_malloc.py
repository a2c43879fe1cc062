"""The C allocator's thresholds, for processes that run long loops of NumPy work.

With glibc, an array above ``M_MMAP_THRESHOLD`` (128 KiB by default, adjusted as blocks are freed)
is given freshly mapped pages, and freed memory at the top of the heap beyond ``M_TRIM_THRESHOLD``
goes back to the system; either way the next iteration's arrays of the same size fault their
pages in again. A meta-training loop allocates the same few hundred-kilobyte temporaries at every
step, and on the benchmark machine those page faults were half the time of a network's
meta-gradient (benchmarks/README.md). :func:`keep_freed_blocks` raises both thresholds so that
freed blocks are reused.

It changes the whole process, so the library never calls it: the command line does, for the
commands that train (``refmaml demo``, ``refmaml train``), and ``benchmarks/bench.py`` says
whether it did.
"""

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_LIMIT = 32 * 2**20  # glibc's largest allowed mmap threshold on 64-bit systems


def keep_freed_blocks():
    """On Linux with glibc, keep freed blocks of up to 32 MiB for reuse (``mallopt``); returns
    whether the thresholds were set (False elsewhere, and nothing changes)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_LIMIT)) and bool(mallopt(M_TRIM_THRESHOLD, 2 * MMAP_LIMIT))
