"""The user's cache folder: what charrnn keeps between runs that can always be made again (the
Shakespeare text, the task corpora, the thread plans of threadplan.py), never a run's files."""

from __future__ import annotations

import os
from pathlib import Path

# Names another folder for the cache than the platform's.
CACHE_ENV_VAR = "CHARRNN_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$CHARRNN_CACHE_DIR``, else ``$XDG_CACHE_HOME/charrnn``, else ``~/.cache/charrnn``."""
    own = os.environ.get(CACHE_ENV_VAR, "").strip()
    if own:
        return Path(own)
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "charrnn"
