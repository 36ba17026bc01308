"""Shared fixtures: the tiny offline artifact (no torch), copied fresh where a test mutates it."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fixtures.tiny_model import build_artifact  # noqa: E402


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only-by-convention tiny artifact shared by the session."""
    return build_artifact(tmp_path_factory.mktemp("tiny") / "artifact")


@pytest.fixture
def tiny_copy(tiny_artifact: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny artifact for tests that corrupt or edit it."""
    return Path(shutil.copytree(tiny_artifact, tmp_path / "artifact"))


@pytest.fixture(scope="session")
def tiny_encoder(tiny_artifact: Path):
    from embedrt import Encoder

    return Encoder.load(tiny_artifact, device="cpu")
