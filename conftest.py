from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated(montage_home: Path) -> Path:
    """Every test (core and plugins) gets its own analysis cache and job store."""
    return montage_home
