import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


def in_ci() -> bool:
    """The one rule for "this is CI" (CI=1, true or yes, any case): there a missing tool fails a test
    instead of skipping it."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    import corpus

    d = tmp_path_factory.mktemp("corpus")
    corpus.good(d / "good")
    corpus.bad(d / "bad")
    return d
