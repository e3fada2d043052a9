"""A run exported as a smaller ONNX model (int8) from the project: kept only when its check against
the fp32 export passes, read back by the same service as ``predict --onnx``; refused with the check's
figures (and nothing written where asked) when it falls short."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from labelled_projects import tiny_trained_project
from support import tiny_backbone

from ept_studio.services.model import StageStarted, open_onnx_model
from ept_studio.services.model.export import reference_check_files
from ept_studio.services.model.onnx_inference import image_decoder
from ept_studio.services.project import Project, SmallerModelRefused
from ept_studio.services.project.run_actions import (
    OnnxExportResult,
    export_run_onnx,
    onnx_file,
)


@pytest.fixture
def trained(tmp_path: Path, class_folders: Path) -> tuple[Path, int, Path]:
    """A project with one finished EPT run on the tiny backbone: (folder, run id, locations)."""
    locations = tmp_path / "locations"
    folder = tmp_path / "project"
    run_id = tiny_trained_project(folder, class_folders, [4, 5, 10, 11], locations)
    return folder, run_id, locations


def test_int8_export_passes_its_check_and_predicts_like_the_fp32_model(
    trained: tuple[Path, int, Path], tmp_path: Path
) -> None:
    folder, run_id, locations = trained
    out = tmp_path / "exports" / "model-int8.onnx"
    events = list(
        export_run_onnx(
            folder, run_id, out, precision="int8", backbone=tiny_backbone(), locations_dir=locations
        )
    )
    assert StageStarted("Making the int8 model and checking it against fp32") in events
    result = events[-1]
    assert isinstance(result, OnnxExportResult)
    assert (result.onnx_path, result.precision) == (out, "int8")
    assert hashlib.sha256(out.read_bytes()).hexdigest() == result.sha256
    check = result.precision_check
    assert check is not None
    assert (check.images, check.provider) == (2, "CPUExecutionProvider")
    assert check.top1_agreement == 1.0
    assert 0.95 <= check.attention_correlation < 1.0
    assert result.notes == ()
    with Project.open(folder, locations_dir=locations) as project:
        inside = onnx_file(project, run_id)
        assert [(e.kind, e.file_name) for e in project.exports(run_id)] == [
            ("onnx-int8", "onnx-int8.onnx")
        ]
    assert inside is not None
    assert result.size_bytes == out.stat().st_size < inside.stat().st_size

    int8, fp32 = open_onnx_model(out), open_onnx_model(inside)
    assert int8.info.precision is not None
    assert int8.info.precision.precision == "int8"
    assert fp32.info.precision is None
    decode = image_decoder(dict(fp32.info.rendering))
    images = [decode(path) for path in reference_check_files()]
    reduced, reference = int8.predict(images), fp32.predict(images)
    assert np.array_equal(reduced.logits.argmax(axis=1), reference.logits.argmax(axis=1))
    assert np.abs(reduced.logits - reference.logits).max() > 0.0  # a different model


def test_a_refused_int8_model_gives_its_figures_and_writes_nothing_where_asked(
    trained: tuple[Path, int, Path], tmp_path: Path
) -> None:
    folder, run_id, locations = trained
    out = tmp_path / "exports" / "model-int8.onnx"
    events = list(
        export_run_onnx(
            folder,
            run_id,
            out,
            precision="int8",
            min_correlation=1.0,  # only an identical map passes: int8 never does
            backbone=tiny_backbone(),
            locations_dir=locations,
        )
    )
    refused = events[-1]
    assert isinstance(refused, SmallerModelRefused)
    assert (refused.run_id, refused.precision) == (run_id, "int8")
    assert refused.check_source == "pydicom's CT and MR sample images"
    record = refused.record
    assert (record.images, record.min_agreement, record.min_correlation) == (2, 0.99, 1.0)
    assert 0.95 <= record.attention_correlation < 1.0
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    with Project.open(folder, locations_dir=locations) as project:
        assert project.exports(run_id) == []
        assert onnx_file(project, run_id) is not None  # the fp32 model stays in the run folder
        leftovers = [p.name for p in project.run_dir(run_id).iterdir() if p.name.startswith(".")]
    assert leftovers == []
