"""Data sets from local copies, for machines that cannot download."""
from __future__ import annotations

import os
from pathlib import Path

PLANETOID_RAW_SUFFIXES = ("x", "y", "tx", "ty", "allx", "ally", "graph",
                          "test.index")


def link_planetoid_raw(raw_dir: str | os.PathLike, root: str | os.PathLike,
                       name: str) -> Path:
    """Lay out the raw Planetoid files ``ind.<name>.*`` found in ``raw_dir``
    as ``root/<Name>/raw/`` (symlinks), where
    ``torch_geometric.datasets.Planetoid(root, name)`` reads them without
    downloading. Returns ``root``."""
    raw_dir, root = Path(raw_dir), Path(root)
    lower = name.lower()
    missing = [s for s in PLANETOID_RAW_SUFFIXES
               if not (raw_dir / f"ind.{lower}.{s}").is_file()]
    if missing:
        raise FileNotFoundError(
            f"{raw_dir} lacks the raw Planetoid files of {name}: "
            + ", ".join(f"ind.{lower}.{s}" for s in missing))
    target = root / name / "raw"
    target.mkdir(parents=True, exist_ok=True)
    for suffix in PLANETOID_RAW_SUFFIXES:
        link = target / f"ind.{lower}.{suffix}"
        if not link.exists():
            link.symlink_to((raw_dir / link.name).resolve())
    return root
