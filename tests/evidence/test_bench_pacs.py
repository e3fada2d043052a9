"""The PACS retrieve benchmark against a real Orthanc: both sides fetch every instance, the app's
project holds them, the ratio is the two rates' ratio, and the Orthanc is stopped at the end."""

from __future__ import annotations

from pathlib import Path

import pytest

from ept_studio.cli import main
from ept_studio.common.errors import ConfigError
from ept_studio.evidence import bench_pacs
from ept_studio.evidence.orthanc import Orthanc, OrthancUnavailable, start_orthanc


def _started(monkeypatch: pytest.MonkeyPatch) -> list[Orthanc]:
    """The Orthancs the benchmark starts (the real ones), recorded to check they are stopped;
    without Orthanc the test fails naming the setup command."""
    started: list[Orthanc] = []

    def start(folder: Path) -> Orthanc:
        try:
            server = start_orthanc(folder)
        except OrthancUnavailable as err:
            pytest.fail(str(err), pytrace=False)
        started.append(server)
        return server

    monkeypatch.setattr(bench_pacs, "start_orthanc", start)
    return started


def test_both_sides_fetch_every_slice_and_the_ratio_is_theirs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started = _started(monkeypatch)
    result = bench_pacs.run_pacs_benchmark(rounds=2, series=2, slices=3)
    assert (result.series, result.slices, result.rounds) == (2, 3, 2)
    assert result.app.instances == (6, 6)
    assert result.baseline.instances == (6, 6)
    assert result.project_images == (6, 6)
    for side in (result.app, result.baseline):
        assert len(side.seconds) == 2
        assert side.median_seconds == pytest.approx(sum(side.seconds) / 2)
        assert side.series_per_second > 0
        assert side.series_per_second == pytest.approx(2 / side.median_seconds)
        assert side.instances_per_second == pytest.approx(3 * side.series_per_second)
    assert result.ratio == result.app.series_per_second / result.baseline.series_per_second
    table = result.markdown()
    assert "Instances fetched per round: app 6, 6, baseline 6, 6" in table
    assert "images in the app's new project 6, 6" in table
    assert f"app / baseline: {result.ratio:.2f}x" in table
    assert len(started) == 1
    assert started[0].process.poll() is not None  # stopped


def test_the_command_prints_the_table(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    started = _started(monkeypatch)
    code = main(["bench", "pacs-retrieve", "--rounds", "1", "--series", "1", "--slices", "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "1 series x 2 slices (CT_small.dcm" in out
    assert (
        "Instances fetched per round: app 2, baseline 2; images in the app's new project 2" in out
    )
    assert "| dicomweb-client loop |" in out
    assert started[0].process.poll() is not None


def test_nothing_to_fetch_is_refused_before_orthanc_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started = _started(monkeypatch)
    with pytest.raises(ConfigError, match="at least 1"):
        bench_pacs.run_pacs_benchmark(rounds=1, series=0, slices=2)
    assert started == []
