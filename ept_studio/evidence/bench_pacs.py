"""PACS retrieve benchmark: series per second from a local Orthanc, the app against plain dicomweb-client.

    python -m ept_studio.evidence.bench_pacs [--rounds 3] [--series 12] [--slices 8]
    ept-studio bench pacs-retrieve [--rounds 3] [--series 12] [--slices 8]

An Orthanc (:mod:`ept_studio.evidence.orthanc`) in a temporary folder is filled with ``series``
CT series of ``slices`` slices each, made from pydicom's real ``CT_small.dcm`` (one study per
series, new Study / Series / SOP Instance UIDs, each slice's pixels shifted so every file differs).
Each round times both sides on the same series, their order alternating from round to round after
one untimed pass of each (warm caches and imports):

- the app: :func:`~ept_studio.services.project.iter_pacs_import` over DICOMweb into a new project,
  with the server settings the app uses (search the studies' instances, retrieve them one
  streamed request per series, keep a copy named by its sha256, hash, decode, thumbnail, one
  SQLite row per image);
- the baseline: a plain loop of ``DICOMwebClient.search_for_series`` then ``retrieve_series`` per
  series, each instance written to a folder with pydicom's ``dcmwrite``.

It reports the median of the rounds: series and instances per second for each side, and the ratio
app / baseline. The app does more per instance, so a ratio below 1 is expected.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
import requests
from pydicom.uid import generate_uid

from ept_studio.common.errors import ConfigError
from ept_studio.evidence.orthanc import PASSWORD, PYDICOM_FILES, USER, Orthanc, start_orthanc
from ept_studio.services.project import (
    PacsRetrieved,
    PacsServer,
    Project,
    image_count,
    iter_pacs_import,
)

SOURCE = "CT_small.dcm"
DEFAULT_ROUNDS = 3
DEFAULT_SERIES = 12
DEFAULT_SLICES = 8
APP_DOES = (
    "EPT Studio's PACS import (DICOMweb) into a new project: instances searched per study, "
    "retrieved one streamed request per series, kept, hashed, decoded, thumbnailed, one SQLite "
    "row each"
)
BASELINE_DOES = (
    "plain dicomweb-client: search_for_series, then retrieve_series per series, each instance "
    "written with pydicom's dcmwrite"
)


@dataclasses.dataclass(frozen=True)
class PacsSeriesRef:
    """One benchmark series on the Orthanc (synthetic UIDs, no patient)."""

    study_uid: str
    series_uid: str


@dataclasses.dataclass(frozen=True)
class RetrieveTiming:
    """One side's rounds: what it does, the instances it fetched and the seconds it took, per round."""

    side: str
    does: str
    series: int
    instances: tuple[int, ...]
    seconds: tuple[float, ...]

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds)

    @property
    def series_per_second(self) -> float:
        return self.series / self.median_seconds

    @property
    def instances_per_second(self) -> float:
        return statistics.median(self.instances) / self.median_seconds


@dataclasses.dataclass(frozen=True)
class PacsRetrieveBenchmark:
    """Both sides over the same series; ``project_images``: the app's new project after each round."""

    series: int
    slices: int
    app: RetrieveTiming
    baseline: RetrieveTiming
    project_images: tuple[int, ...]

    @property
    def rounds(self) -> int:
        return len(self.app.seconds)

    @property
    def ratio(self) -> float:
        """The app's series per second over the baseline's (below 1: the app is slower)."""
        return self.app.series_per_second / self.baseline.series_per_second

    def markdown(self) -> str:
        head = (
            f"{self.series} series x {self.slices} slices ({SOURCE}, one study per series) from a "
            f"local Orthanc on loopback; median of {self.rounds} rounds, the sides alternating."
        )
        rows = [
            head,
            "",
            "| side | what it does | median s | series/s | instances/s |",
            "|---|---|---|---|---|",
            *(_row(side) for side in (self.app, self.baseline)),
            "",
            f"Instances fetched per round: app {_counts(self.app.instances)}, baseline "
            f"{_counts(self.baseline.instances)}; images in the app's new project "
            f"{_counts(self.project_images)}.",
            f"app / baseline: {self.ratio:.2f}x the series per second (the app does more per "
            "instance: below 1 is expected).",
        ]
        return "\n".join(rows)


def _counts(values: Sequence[int]) -> str:
    return ", ".join(str(v) for v in values)


def _row(timing: RetrieveTiming) -> str:
    return (
        f"| {timing.side} | {timing.does} | {timing.median_seconds:.2f} "
        f"| {timing.series_per_second:.1f} | {timing.instances_per_second:.1f} |"
    )


def upload_bench_series(server: Orthanc, series: int, slices: int) -> list[PacsSeriesRef]:
    """``series`` studies of one CT series each, ``slices`` slices a series, stored on ``server``."""
    source = pydicom.dcmread(PYDICOM_FILES / SOURCE)
    pixels = source.pixel_array
    made: list[PacsSeriesRef] = []
    for number in range(1, series + 1):
        ref = PacsSeriesRef(generate_uid(), generate_uid())
        for index in range(1, slices + 1):
            slice_pixels = np.roll(pixels, number * slices + index, axis=0)
            data = _slice_bytes(source, ref, number, index, slice_pixels)
            server.rest("POST", "/instances", data=data)
        made.append(ref)
    return made


def _slice_bytes(
    source: pydicom.Dataset, ref: PacsSeriesRef, number: int, index: int, pixels: np.ndarray
) -> bytes:
    ds = source.copy()
    ds.StudyInstanceUID = ref.study_uid
    ds.SeriesInstanceUID = ref.series_uid
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesNumber = number
    ds.InstanceNumber = index
    x, y, z = (float(v) for v in source.ImagePositionPatient)
    ds.ImagePositionPatient = [x, y, z + 5.0 * (index - 1)]
    ds.SliceLocation = float(source.SliceLocation) + 5.0 * (index - 1)
    ds.PixelData = pixels.astype(source.pixel_array.dtype).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def app_import(project: Project, server: Orthanc, refs: Sequence[PacsSeriesRef]) -> int:
    """The app's import of the series into ``project``, as the app's PACS import does it: the
    instances retrieved."""
    pacs = PacsServer(server.dicomweb_url, "basic", USER, PASSWORD)
    studies = [ref.study_uid for ref in refs]
    series = {ref.series_uid for ref in refs}
    retrieved = 0
    for event in iter_pacs_import(project, pacs, studies, series_uids=series):
        if isinstance(event, PacsRetrieved):
            retrieved = event.done
    return retrieved


def baseline_retrieve(server: Orthanc, folder: Path) -> int:
    """A plain dicomweb-client loop over every series on ``server``: the instances written."""
    from dicomweb_client.api import DICOMwebClient

    session = requests.Session()
    session.auth = (USER, PASSWORD)
    client = DICOMwebClient(server.dicomweb_url, session=session)
    found = client.search_for_series(fields=["StudyInstanceUID", "SeriesInstanceUID"])
    written = 0
    for number, item in enumerate(found, start=1):
        study, series = item["0020000D"]["Value"][0], item["0020000E"]["Value"][0]
        target = folder / f"series-{number:03d}"
        target.mkdir(parents=True)
        for index, dataset in enumerate(client.retrieve_series(study, series), start=1):
            pydicom.dcmwrite(target / f"{index:04d}.dcm", dataset, enforce_file_format=True)
            written += 1
    return written


@dataclasses.dataclass(frozen=True)
class AppRound:
    seconds: float
    retrieved: int
    project_images: int


@dataclasses.dataclass(frozen=True)
class BaselineRound:
    seconds: float
    written: int


def time_app(server: Orthanc, refs: Sequence[PacsSeriesRef], folder: Path) -> AppRound:
    """One app round into a new project under ``folder`` (its creation is not timed)."""
    with Project.create(folder / "project", locations_dir=folder / "locations") as project:
        start = time.perf_counter()
        retrieved = app_import(project, server, refs)
        seconds = time.perf_counter() - start
        return AppRound(seconds, retrieved, image_count(project))


def time_baseline(server: Orthanc, folder: Path) -> BaselineRound:
    start = time.perf_counter()
    written = baseline_retrieve(server, folder)
    return BaselineRound(time.perf_counter() - start, written)


def run_pacs_benchmark(
    rounds: int = DEFAULT_ROUNDS, series: int = DEFAULT_SERIES, slices: int = DEFAULT_SLICES
) -> PacsRetrieveBenchmark:
    """Start an Orthanc, fill it, time both sides ``rounds`` times, stop it."""
    if min(rounds, series, slices) < 1:
        raise ConfigError("rounds, series and slices must each be at least 1")
    with tempfile.TemporaryDirectory(prefix="ept-bench-pacs-") as temporary:
        base = Path(temporary)
        server = start_orthanc(base / "orthanc")
        try:
            refs = upload_bench_series(server, series, slices)
            return _measure(server, refs, slices, rounds, base)
        finally:
            server.stop()


def _measure(
    server: Orthanc, refs: Sequence[PacsSeriesRef], slices: int, rounds: int, base: Path
) -> PacsRetrieveBenchmark:
    time_app(server, refs, base / "warm-app")
    time_baseline(server, base / "warm-baseline")
    apps: list[AppRound] = []
    baselines: list[BaselineRound] = []
    for number in range(rounds):
        if number % 2 == 0:
            apps.append(time_app(server, refs, base / f"app-{number}"))
            baselines.append(time_baseline(server, base / f"baseline-{number}"))
        else:
            baselines.append(time_baseline(server, base / f"baseline-{number}"))
            apps.append(time_app(server, refs, base / f"app-{number}"))
    return PacsRetrieveBenchmark(
        series=len(refs),
        slices=slices,
        app=RetrieveTiming(
            "EPT Studio",
            APP_DOES,
            len(refs),
            tuple(r.retrieved for r in apps),
            tuple(r.seconds for r in apps),
        ),
        baseline=RetrieveTiming(
            "dicomweb-client loop",
            BASELINE_DOES,
            len(refs),
            tuple(r.written for r in baselines),
            tuple(r.seconds for r in baselines),
        ),
        project_images=tuple(r.project_images for r in apps),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ept_studio.evidence.bench_pacs")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="timed rounds (3)")
    parser.add_argument(
        "--series", type=int, default=DEFAULT_SERIES, help="series on the PACS (12)"
    )
    parser.add_argument("--slices", type=int, default=DEFAULT_SLICES, help="slices a series (8)")
    args = parser.parse_args(argv)
    result = run_pacs_benchmark(args.rounds, args.series, args.slices)
    sys.stdout.write(result.markdown() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
