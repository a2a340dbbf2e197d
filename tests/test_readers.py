"""Every FITS/HDF5 variant round-trips to the expected pixels; every bad input gets its reason."""
import os
from types import SimpleNamespace

import numpy as np
import pytest

import corpus
from cnnpipe.readers import Block, Problem, plan_units, read_unit, resolve_inputs


def _read(path, n_shards=1):
    """Records of one file, blocks split into one Frame-like record per frame (key, frame, image)."""
    recs = []
    for unit in plan_units(resolve_inputs([str(path)]), n_shards, None):
        for rec in read_unit(unit, chunk_frames=2):
            if isinstance(rec, Block):
                assert rec.images.ndim == 3 and len(rec.labels) == len(rec.images) <= 2
                recs += [SimpleNamespace(key=rec.key, frame=i, image=img) for i, img in rec.frames()]
            else:
                recs.append(rec)
    return recs


@pytest.mark.parametrize("name", [
    "single.fits", "bigendian.fit", "mef.fits", "scaled_int16.fts", "cube.fits.gz", "tile.fits.fz",
    "stack.h5", "nchw.hdf5"])
def test_good_file_round_trips(corpus_dir, tmp_path, name):
    expected = corpus.good(tmp_path)[name]
    recs = _read(corpus_dir / "good" / name)
    assert not any(isinstance(r, Problem) for r in recs), [getattr(r, "reason", "") for r in recs]
    assert len(recs) == len(expected)
    for rec, exp in zip(recs, expected):
        assert rec.image.dtype == np.float32 and rec.image.dtype.isnative
        np.testing.assert_allclose(rec.image, exp, rtol=1e-6, equal_nan=True)


def test_keys_and_indices(corpus_dir):
    mef = _read(corpus_dir / "good" / "mef.fits")
    assert [(r.key, r.frame) for r in mef] == [("1", 0), ("3", 0)]  # the table HDU 2 is skipped
    cube = _read(corpus_dir / "good" / "cube.fits.gz")
    assert [(r.key, r.frame) for r in cube] == [("0", 0), ("0", 1), ("0", 2)]
    stack = _read(corpus_dir / "good" / "stack.h5", n_shards=2)  # split into two frame ranges
    assert [(r.key, r.frame) for r in stack] == [("/images", i) for i in range(5)]


def test_blank_and_nonfinite_become_nan(corpus_dir):
    (scaled,) = _read(corpus_dir / "good" / "scaled_int16.fts")
    assert np.isnan(scaled.image[0, 0]) and np.isnan(scaled.image).sum() == 1
    assert scaled.image[0, 1] == pytest.approx(-199 * 0.5 + 1000.0)
    (be,) = _read(corpus_dir / "good" / "bigendian.fit")
    assert np.isnan(be.image[3, 4]) and np.isnan(be.image[5, 6]) and np.isnan(be.image).sum() == 2


@pytest.mark.parametrize("name", ["zero.fits", "truncated.fits", "header_only.fits", "table_only.fits",
                                  "one_d.fits", "five_d.fits", "huge_naxis.fits", "garbage.fits", "rank2.h5",
                                  "strings.h5", "not_hdf5.h5"])
def test_bad_file_is_a_problem_with_reason(corpus_dir, tmp_path, name):
    reason = corpus.bad(tmp_path)[name]
    recs = _read(corpus_dir / "bad" / name)
    problems = [r for r in recs if isinstance(r, Problem)]
    assert problems and reason.lower() in problems[0].reason.lower(), problems
    assert "\n" not in problems[0].reason


def test_resolve_inputs_kinds(corpus_dir, tmp_path):
    folder = resolve_inputs([str(corpus_dir / "good")])
    assert len(folder) == 8 and all(problem == "" for _, problem in folder)
    globbed = resolve_inputs([str(corpus_dir / "good" / "*.h5")])
    assert [os.path.basename(p) for p, _ in globbed] == ["stack.h5"]
    assert resolve_inputs(["/no/such/file.fits"]) == [("/no/such/file.fits", "path does not exist")]
    assert resolve_inputs([str(tmp_path / "*.fits")])[0][1] == "pattern matches no files"
    (tmp_path / "empty").mkdir()
    assert "no FITS or HDF5" in resolve_inputs([str(tmp_path / "empty")])[0][1]
    assert "unknown file type" in resolve_inputs([str(corpus_dir / "bad" / "notes.txt")])[0][1]
