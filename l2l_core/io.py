"""Atomic result files: written to a temporary sibling and renamed, so a reader never sees half a file."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas only where frames are read: the drop-in optimizer's checkpoints need no pandas
    import pandas as pd


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; on success rename it onto ``path``, on error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_frame(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a DataFrame as parquet (.parquet) or CSV (.csv), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        elif path.suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            raise ValueError(f"path={str(path)!r} must end in .parquet or .csv")
    return path


def read_frame(path: str | os.PathLike) -> pd.DataFrame:
    """Read a parquet (.parquet) or CSV file as a DataFrame."""
    import pandas as pd

    path = Path(path)
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def write_json(obj, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    return Path(path)
