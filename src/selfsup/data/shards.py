"""Splitting work into independent jobs (``--shard I/N``): job I of N takes items I, I+N, I+2N, ...

Used by ``selfsup render`` (render shards) and ``selfsup finetune`` / ``probe`` (budget × seed cells),
so a Slurm array or a Kubernetes indexed Job can run the pieces on many machines that share the output
folder. The pieces land as files in that folder; a final run without ``--shard`` merges them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from selfsup.core.errors import UserError

T = TypeVar("T")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"I/N"`` → ``(I, N)`` with 0 ≤ I < N; None or "" → None (all of the work)."""
    if text is None or not str(text).strip():
        return None
    parts = str(text).strip().split("/")
    try:
        index, count = (int(p) for p in parts)
    except ValueError:
        raise UserError(f"invalid shard {text!r}: give I/N, e.g. 0/4 (job I of N, counted from 0)") from None
    if count < 1 or not 0 <= index < count:
        raise UserError(f"invalid shard {text!r}: need N ≥ 1 and 0 ≤ I < N")
    return index, count


def mine(items: Sequence[T], shard: tuple[int, int] | None) -> list[T]:
    """The items that job ``shard`` handles (every item when ``shard`` is None)."""
    if shard is None:
        return list(items)
    index, count = shard
    return [item for k, item in enumerate(items) if k % count == index]


def label(shard: tuple[int, int] | None) -> str:
    return "" if shard is None else f"{shard[0]}/{shard[1]}"
