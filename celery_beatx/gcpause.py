"""Holding off Python's cyclic garbage collector during bulk work.

A bulk add or import of 10,000 tasks, or beat loading 100,000, builds many small objects
that all stay alive.  Each few hundred of them start a collection that walks the young
objects again, and every so often one that walks the whole heap: measured, a third of an
``add_many`` of 10,000.  None of that work frees anything (the objects are alive), so it
waits until the bulk work is done.  Reference counting frees memory as usual meanwhile.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["gc_paused"]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cyclic collector for the block (or, as ``@gc_paused()``, the decorated
    call); enable it again afterwards only if it was enabled before (an application that
    turned it off keeps it off)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
