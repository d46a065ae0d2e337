"""Seeds derived from names: the same in every process, on every machine and in every Python run.

``hash()`` of a string changes between Python runs (hash randomisation), so anything that must be
reproduced -- which students a task distils, which candidates a search scores, a random init -- takes its
seed from :func:`stable_seed` instead.
"""
from __future__ import annotations

import hashlib


def stable_seed(*parts) -> int:
    """A 63-bit seed from strings and ints (sha256 of their ``|``-joined text)."""
    h = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF
