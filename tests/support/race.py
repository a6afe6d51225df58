"""``renameat2(RENAME_EXCHANGE)``: swap two names atomically, as an attacker racing a check would."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.renameat2.argtypes = [
    ctypes.c_int,
    ctypes.c_char_p,
    ctypes.c_int,
    ctypes.c_char_p,
    ctypes.c_uint,
]


def exchange(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> None:
    """Atomically swap the directory entries ``a`` and ``b`` (both must exist)."""
    if _libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


RACER_SOURCE = """\
import ctypes, os, sys, time
libc = ctypes.CDLL("libc.so.6", use_errno=True)
a, b = os.fsencode(sys.argv[1]), os.fsencode(sys.argv[2])
end = time.monotonic() + float(sys.argv[3])
open("racing", "w").close()
n = 0
while time.monotonic() < end and not os.path.exists("stop"):
    libc.renameat2(-100, a, -100, b, 2)
    n += 1
print("swaps", n)
"""
"""The same swap in a loop (``racer.py A B SECONDS``), for a sandboxed shell's python3: it
creates ``racing`` when it starts and ends early when ``stop`` appears."""
