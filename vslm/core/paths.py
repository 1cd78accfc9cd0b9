"""Where things live. Every path is relative to the repository root so recipes run from there as shipped."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODELS = Path(os.environ.get("VSLM_MODELS_DIR", ROOT / "models"))
TEMPLATES = ROOT / "templates"
DATASETS = ROOT / "datasets"
DATASET_INFO = ROOT / "dataset_info.json"


def rel(path: Path | str) -> str:
    """Path as the user would type it from the repository root."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)
