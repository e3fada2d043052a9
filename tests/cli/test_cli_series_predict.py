"""``project predict --per-series``: a real ONNX model scores a project of one 4-slice CT series
and two loose PNG images; the per-series table and CSV come from the stored slice scores, and
carry no UID, file name or path."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from series_runs import series_project, slice_ids
from support import tiny_metadata, tiny_tuned_model

from ept_studio import RESEARCH_USE_NOTICE
from ept_studio.cli import main
from ept_studio.core.onnx_export import export_onnx, model_info
from ept_studio.data.render import render_file
from ept_studio.data.store import Project
from ept_studio.services.project.reports import readme_path

CLASSES = ("ct", "other")


@pytest.fixture
def onnx_model(tmp_path: Path) -> Path:
    model = tiny_tuned_model(2, seed=1, head_seed=3)
    path = tmp_path / "models" / "tiny.onnx"
    path.parent.mkdir()
    sample = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"
    export_onnx(
        model,
        path,
        model_info(model, tiny_metadata(model, CLASSES), "cd" * 32),
        [render_file(sample)],
    )
    return path


def _predict(tmp_path: Path, onnx: Path, *extra: str) -> int:
    folder = tmp_path / "project"
    argv = ["project", "predict", str(folder), "--onnx", str(onnx), "--device", "cpu", *extra]
    return main(argv)


def test_per_series_csv_from_the_stored_slice_scores(
    tmp_path: Path,
    onnx_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("EPT_STUDIO_DATA", str(tmp_path))
    series_project(tmp_path).close()
    table = tmp_path / "out" / "series.csv"
    assert (
        _predict(tmp_path, onnx_model, "--per-series", "--aggregate", "max", "--csv", str(table))
        == 0
    )
    with Project.open(tmp_path / "project") as project:
        run_id = project.runs()[-1].id
        stored = {row.image_id: row.scores for row in project.predictions(run_id)}
        slices = slice_ids(project)
        uid = str(pydicom.dcmread(project.image(slices[0]).path).SeriesInstanceUID)
    rows = list(csv.DictReader(io.StringIO(table.read_text("utf-8"))))
    assert list(rows[0]) == [
        "series", "slices", "aggregation", "trained_on", "predicted_class",
        "score_ct", "score_other", "decisive_image_id",
    ]  # fmt: skip
    assert [(r["series"], r["slices"], r["aggregation"]) for r in rows] == [
        ("1", "4", "max"),
        ("2", "1", "max"),
        ("3", "1", "max"),
    ]
    peaks = np.array([[stored[i][c] for c in CLASSES] for i in slices]).max(axis=0)
    expected = peaks / peaks.sum()
    assert float(rows[0]["score_ct"]) == pytest.approx(expected[0], abs=1e-6)
    assert float(rows[0]["score_other"]) == pytest.approx(expected[1], abs=1e-6)
    predicted = CLASSES[int(np.argmax(expected))]
    assert rows[0]["predicted_class"] == predicted
    decisive = max(slices, key=lambda i: stored[i][predicted])
    assert rows[0]["decisive_image_id"] == str(decisive)
    assert {r["trained_on"] for r in rows} == {"unknown"}  # a model from outside the project
    readme = readme_path(table).read_text("utf-8")
    assert readme.startswith(RESEARCH_USE_NOTICE)
    assert "3 series, 6 images scored" in readme
    out = capsys.readouterr().out
    assert "per series (max of the slices' scores):" in out
    for text in (table.read_text("utf-8"), readme, out):
        assert uid not in text
        assert str(tmp_path) not in text
        assert "slice00" not in text


def test_per_series_table_mean_by_default(
    tmp_path: Path,
    onnx_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("EPT_STUDIO_DATA", str(tmp_path))
    series_project(tmp_path).close()
    assert _predict(tmp_path, onnx_model, "--per-series") == 0
    with Project.open(tmp_path / "project") as project:
        run_id = project.runs()[-1].id
        stored = {row.image_id: row.scores for row in project.predictions(run_id)}
        slices = slice_ids(project)
    mean = np.array([[stored[i][c] for c in CLASSES] for i in slices]).mean(axis=0)
    predicted = CLASSES[int(np.argmax(mean))]
    lines = capsys.readouterr().out.splitlines()
    start = lines.index("per series (mean of the slices' scores):")
    first = lines[start + 2].split()
    assert first[:4] == ["1", "4", predicted, f"{mean.max() * 100:.0f}"]
    assert [line.split()[1] for line in lines[start + 2 : start + 5]] == ["4", "1", "1"]


def test_csv_without_per_series_is_refused_before_scoring(
    tmp_path: Path, onnx_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _predict(tmp_path, onnx_model, "--csv", str(tmp_path / "x.csv")) != 0
    assert "add --per-series" in capsys.readouterr().err
