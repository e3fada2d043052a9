"""Per-series predictions from a stored inference run (chosen scores, see ``series_runs``): the
mean and the renormalised max over slices, the decisive slice, loose images as one-slice series,
and whether the scores were calibrated."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from series_runs import inference_run, loose_ids, series_project, slice_ids

import ept_studio.services.project as project_services
from ept_studio.common.errors import ConfigError
from ept_studio.data.store import Project
from ept_studio.services.project.series_predictions import series_predictions


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    opened = series_project(tmp_path)
    yield opened
    opened.close()


def test_mean_of_the_slice_probabilities(project: Project) -> None:
    run_id = inference_run(project, calibrated=True)
    first = series_predictions(project, run_id)[0]
    assert first.image_ids == tuple(slice_ids(project))
    assert first.slice_count == 4
    assert first.series_number == 1
    assert first.representative_id == slice_ids(project)[1]  # the middle slice (first of two)
    assert first.aggregation == "mean"
    assert first.predicted_class == "Bone"
    assert first.probabilities == pytest.approx({"Brain": 0.45, "Bone": 0.55})
    assert list(first.probabilities) == ["Brain", "Bone"]
    assert first.decisive_image_id == slice_ids(project)[0]


def test_max_renormalised_and_its_decisive_slice(project: Project) -> None:
    run_id = inference_run(project, calibrated=True)
    first = series_predictions(project, run_id, "max")[0]
    assert first.aggregation == "max"
    assert first.predicted_class == "Brain"
    assert first.probabilities == pytest.approx({"Brain": 0.9 / 1.7, "Bone": 0.8 / 1.7})
    assert first.probability == pytest.approx(0.52941, abs=1e-5)
    assert first.decisive_image_id == slice_ids(project)[2]


def test_loose_images_are_series_of_one_slice(project: Project) -> None:
    run_id = inference_run(project, calibrated=True)
    predictions = series_predictions(project, run_id, "max")
    assert [p.slice_count for p in predictions] == [4, 1, 1]
    assert [p.series_number for p in predictions] == [1, 2, 3]
    assert [p.representative_id for p in predictions[1:]] == loose_ids(project)
    photo0, photo1 = predictions[1:]
    assert photo0.image_ids == (loose_ids(project)[0],)
    assert photo0.decisive_image_id == loose_ids(project)[0]
    # one slice: max renormalised is the slice's own scores
    assert [photo0.predicted_class, photo1.predicted_class] == ["Brain", "Bone"]
    assert [photo0.probability, photo1.probability] == pytest.approx([0.7, 0.75])


def test_calibrated_flag_follows_the_model_run(project: Project) -> None:
    calibrated = inference_run(project, calibrated=True)
    uncalibrated = inference_run(project, calibrated=False)
    assert {p.calibrated for p in series_predictions(project, calibrated)} == {True}
    assert {p.calibrated for p in series_predictions(project, uncalibrated)} == {False}


def test_unscored_slices_are_left_out(project: Project) -> None:
    run_id = inference_run(project, calibrated=True)
    project.remove_images([slice_ids(project)[2]])
    first = series_predictions(project, run_id, "max")[0]
    assert first.slice_count == 3
    assert first.probabilities == pytest.approx({"Brain": 0.4 / 1.2, "Bone": 0.8 / 1.2})
    assert first.decisive_image_id == slice_ids(project)[0]


def test_an_unknown_aggregation_is_refused(project: Project) -> None:
    run_id = inference_run(project, calibrated=True)
    with pytest.raises(ConfigError, match="mean, max"):
        series_predictions(project, run_id, "median")


def test_the_facade_exports_the_service(project: Project) -> None:
    run_id = inference_run(project, calibrated=False)
    assert project_services.series_predictions(project, run_id) == series_predictions(
        project, run_id
    )


def test_the_representative_is_the_gallery_tile_s_slice(project: Project) -> None:
    run_id = inference_run(project, calibrated=True)
    tiles = project_services.series_summary(project, project_services.project_series(project))
    predictions = series_predictions(project, run_id)
    assert [p.representative_id for p in predictions] == [t.representative_id for t in tiles]


def test_a_run_of_some_slices_names_the_series_by_its_gallery_tile(project: Project) -> None:
    last_two = slice_ids(project)[2:]
    run_id = inference_run(project, calibrated=True, scored=last_two)
    (first,) = series_predictions(project, run_id)
    assert first.image_ids == tuple(last_two)
    assert first.representative_id == slice_ids(project)[1]  # not among the slices scored
