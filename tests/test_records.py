"""Records the project keeps about itself: the CI rule every test uses, the benchmark page's commit stamp."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from conftest import in_ci

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("TRUE", True), ("yes", True),
                                             ("", False), ("0", False), ("false", False)])
def test_one_ci_rule(monkeypatch, value, expected):
    monkeypatch.setenv("CI", value)
    assert in_ci() is expected


def _run_all():
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_page_is_stamped_with_the_commit():
    run_all = _run_all()
    at = run_all.commit()
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", at), at
    assert run_all.stamp_of(f"# page\n\nCommit: `{at}`\n") == at
    assert run_all.stamp_of("# a page without a stamp\n") is None
