"""Whether this process was started by ``torchrun``: read from the launcher's environment only, without importing
torch, so every command can ask on its start-up path (:mod:`dfkit.train.distributed` does the data-parallel work)."""

from __future__ import annotations

import os


def env_int(name: str, default: int) -> int:
    """An integer from the environment (``default`` when unset or not a number)."""
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def launched() -> bool:
    """True when this process was started by ``torchrun`` with more than one process."""
    return env_int("WORLD_SIZE", 1) > 1


def refuse_distributed(what: str) -> None:
    """Commands that do not shard their work say so under ``torchrun`` instead of running W times over."""
    if launched():
        from dfkit.errors import DfkitError

        raise DfkitError(f"{what} runs in one process; start it without torchrun (only `dfkit train` is "
                         "data-parallel)")
