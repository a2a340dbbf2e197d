import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    import corpus

    d = tmp_path_factory.mktemp("corpus")
    corpus.good(d / "good")
    corpus.bad(d / "bad")
    return d
