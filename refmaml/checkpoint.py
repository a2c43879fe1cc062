"""Checkpoint files: ``.npz`` archives written atomically and read as untrusted input.

Writing: through :mod:`refmaml._atomic`, the writer of every file refmaml writes:
the archive goes to a temporary file in the target's directory, is flushed to
disk, then renamed over the target, so a reader (or a run killed at any moment)
sees the previous complete file or the new complete file, never a partial one.

Reading: no pickle (``allow_pickle=False``), and every member is checked before
its data is read: the archive's member names must be exactly the expected ones,
each stored or deflated (as ``np.savez`` and ``np.savez_compressed`` write them), not encrypted,
each header must declare a plain numeric, boolean or string dtype, and the size
the header declares must equal the size stored in the archive (so a forged
header cannot make the reader allocate more than the file holds).
"""

import math
import os
import zipfile
import zlib

import numpy as np

from . import _atomic, _validate

MAX_BYTES = 2**31  # refuse archives whose members declare more than 2 GiB together
METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}  # np.savez, np.savez_compressed


class InvalidCheckpoint(ValueError):
    """A checkpoint file that is missing, corrupt, or does not match what was asked for."""


def write(path, arrays):
    """Write ``arrays`` (name -> NumPy array) to ``path`` as an ``.npz`` archive, atomically."""
    with _atomic.replacing(path, binary=True) as f:
        np.savez(f, **arrays)


def _header(f, name, stored):
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unknown format version {version}")
    except ValueError as exc:
        raise InvalidCheckpoint(f"member {name!r} is not a valid .npy array: {exc}") from None
    if dtype.hasobject or dtype.kind not in "biufcUS":
        raise InvalidCheckpoint(f"member {name!r} has dtype {dtype}; only numeric, boolean and "
                                "string arrays are read (no pickled objects)")
    declared = math.prod(shape) * dtype.itemsize
    if declared != stored - f.tell():
        raise InvalidCheckpoint(f"member {name!r} declares shape {shape} of {dtype} ({declared} bytes) "
                                f"but stores {stored - f.tell()} bytes of data")
    return declared


def read(path, required, optional=()):
    """Read the archive at ``path``: it must hold every name in ``required`` and nothing outside
    ``required`` and ``optional``. Returns name -> array."""
    path = os.fspath(path)
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise InvalidCheckpoint(f"checkpoint {path!r} does not exist") from None
    except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError, ValueError, EOFError) as exc:
        raise InvalidCheckpoint(f"checkpoint {path!r} is not a readable .npz archive ({exc})") from None
    with archive:
        members = {info.filename: info for info in archive.infolist()}
        allowed = {n + ".npy" for n in (*required, *optional)}
        missing = sorted(set(required) - {m[:-4] for m in members if m.endswith(".npy")})
        extra = sorted(set(members) - allowed)
        if missing or extra:
            raise InvalidCheckpoint(f"checkpoint {path!r} does not hold the expected fields"
                                    + (f"; missing: {_validate.listing(missing)}" if missing else "")
                                    + (f"; unexpected: {_validate.listing(extra)}" if extra else ""))
        names = [m[:-4] for m in members]
        for name, info in members.items():  # what np.savez writes: no other compression, no encryption
            if info.compress_type not in METHODS:
                raise InvalidCheckpoint(f"checkpoint {path!r}: member {name!r} declares compression method "
                                        f"{info.compress_type}; only {' and '.join(METHODS.values())} members are read")
            if info.flag_bits & 0x41:
                raise InvalidCheckpoint(f"checkpoint {path!r}: member {name!r} is marked encrypted; "
                                        "checkpoints are never encrypted")
        total = sum(info.file_size for info in members.values())
        if total > MAX_BYTES:
            raise InvalidCheckpoint(f"checkpoint {path!r} declares {total} bytes; the limit is {MAX_BYTES}")
        out = {}
        for name in names:
            info = members[name + ".npy"]
            try:
                with archive.open(info) as f:
                    _header(f, name, info.file_size)
                with archive.open(info) as f:
                    out[name] = np.lib.format.read_array(f, allow_pickle=False)
            except InvalidCheckpoint as exc:
                raise InvalidCheckpoint(f"checkpoint {path!r}: {exc}") from None
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError,
                    RuntimeError) as exc:  # the last two: a zip feature or version zipfile does not take
                raise InvalidCheckpoint(f"checkpoint {path!r}: member {name!r} could not be read ({exc})") \
                    from None
    return out
