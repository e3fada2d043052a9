"""Predicting with a finished run (torch, then ONNX Runtime after export) and exporting it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from labelled_projects import tiny_trained_project
from support import tiny_backbone

from ept_studio.common.errors import ProjectError
from ept_studio.services.model.metric_names import metric_tooltip, plain_metric_name
from ept_studio.services.model.training_options import TrainingOptions
from ept_studio.services.project import Project, Role, import_paths
from ept_studio.services.project.inference import ProjectPredicted
from ept_studio.services.project.run_actions import (
    ONNX_NAME,
    ExportCancelled,
    OnnxExportResult,
    StageStarted,
    export_run_onnx,
    onnx_file,
    predict_with_run,
    trained_runs,
)
from ept_studio.services.project.tuning import tune_project


@pytest.fixture
def trained(tmp_path: Path, class_folders: Path) -> tuple[Path, int, Path]:
    """A project with one finished EPT run on the tiny backbone: (folder, run id, locations)."""
    locations = tmp_path / "locations"
    folder = tmp_path / "project"
    run_id = tiny_trained_project(folder, class_folders, [4, 5, 10, 11], locations)
    return folder, run_id, locations


def _scores(folder: Path, run_id: int, locations: Path) -> dict[int, list[float]]:
    with Project.open(folder, locations_dir=locations) as project:
        return {
            row.image_id: [row.scores[name] for name in sorted(row.scores)]
            for row in project.predictions(run_id)
        }


def test_predict_then_export_then_predict_through_onnx(
    trained: tuple[Path, int, Path], tmp_path: Path
) -> None:
    folder, run_id, locations = trained
    backbone = tiny_backbone()
    with Project.open(folder, locations_dir=locations) as project:
        [listed] = trained_runs(project)
        assert (listed.run_id, listed.method, listed.has_onnx) == (run_id, "ept", False)
        accuracy = project.run(run_id).metrics["accuracy"]
        assert listed.label == (
            f"Run {run_id}: EPT + fine detail, accuracy on test images {accuracy:.2f}"
        )
        assert "Balanced accuracy (mean of per-class recall): " in listed.tooltip
        assert "(key: balanced_accuracy)" in listed.tooltip
        assert "Calibration error: " in listed.tooltip
        some = [image.id for image in project.images()][:5]
    events = list(predict_with_run(folder, run_id, backbone=backbone, locations_dir=locations))
    assert events[0] == StageStarted("Loading the tuned model")
    torch_run = events[-1]
    assert isinstance(torch_run, ProjectPredicted)
    assert (torch_run.predicted, torch_run.failed) == (12, 0)

    out = tmp_path / "exports" / "chest.onnx"
    exported = list(
        export_run_onnx(folder, run_id, out, backbone=backbone, locations_dir=locations)
    )
    result = exported[-1]
    assert isinstance(result, OnnxExportResult)
    assert result.onnx_path == out
    assert hashlib.sha256(out.read_bytes()).hexdigest() == result.sha256
    assert result.parity.logits_error <= 1e-4
    assert result.parity.images == 2
    with Project.open(folder, locations_dir=locations) as project:
        inside = onnx_file(project, run_id)
        assert inside == project.run_dir(run_id) / ONNX_NAME
        assert [(e.kind, e.file_name) for e in project.exports(run_id)] == [("onnx", "model.onnx")]
        assert trained_runs(project)[0].has_onnx

    events = list(
        predict_with_run(folder, run_id, image_ids=some, backbone=backbone, locations_dir=locations)
    )
    assert events[0] == StageStarted("Opening the exported ONNX model")
    onnx_run = events[-1]
    assert isinstance(onnx_run, ProjectPredicted)
    assert onnx_run.predicted == 5
    with Project.open(folder, locations_dir=locations) as project:
        assert project.run(onnx_run.run_id).device == "CPUExecutionProvider"
    by_torch = _scores(folder, torch_run.run_id, locations)
    by_onnx = _scores(folder, onnx_run.run_id, locations)
    assert sorted(by_onnx) == sorted(some)
    for image_id, scores in by_onnx.items():
        np.testing.assert_allclose(scores, by_torch[image_id], atol=1e-5)


def test_a_changed_prompt_file_is_refused(trained: tuple[Path, int, Path]) -> None:
    folder, run_id, locations = trained
    with Project.open(folder, locations_dir=locations) as project:
        prompt = project.run_dir(run_id) / "prompt.safetensors"
    prompt.write_bytes(prompt.read_bytes()[:-1] + b" ")
    with pytest.raises(ProjectError, match="missing or changed"):
        list(predict_with_run(folder, run_id, backbone=tiny_backbone(), locations_dir=locations))


def test_a_cancelled_export_writes_nothing_where_asked(
    trained: tuple[Path, int, Path], tmp_path: Path
) -> None:
    folder, run_id, locations = trained
    out = tmp_path / "exports" / "model.onnx"
    answers = iter([False, True])  # carry on after loading, stop before the copy
    events = list(
        export_run_onnx(
            folder,
            run_id,
            out,
            backbone=tiny_backbone(),
            cancel=lambda: next(answers),
            locations_dir=locations,
        )
    )
    assert events[-1] == ExportCancelled(run_id)
    assert not out.exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())
    with Project.open(folder, locations_dir=locations) as project:
        assert project.exports(run_id) == []


def test_holding_out_support_picks_the_epoch_and_stops_early(
    tmp_path: Path, class_folders: Path
) -> None:
    """6 training images a class: 1 each held out; patience 1 ends a 40-epoch run early."""
    from ept_studio.common.training_events import EpochFinished

    locations = tmp_path / "locations"
    with Project.create(tmp_path / "project", locations_dir=locations) as project:
        import_paths(project, [class_folders], folders_as_classes=True, thumbnails=False)
        folder = project.folder
    options = TrainingOptions(
        method="linear", recipe="paper", epochs=40, batch_size=4, patience=1, device="cpu"
    )
    events = list(tune_project(folder, options, backbone=tiny_backbone(), locations_dir=locations))
    epochs = [e for e in events if isinstance(e, EpochFinished)]
    assert all(e.val_metrics is not None and "accuracy" in e.val_metrics for e in epochs)
    assert 2 <= len(epochs) < 40
    with Project.open(folder, locations_dir=locations) as project:
        run = project.runs()[-1]
        record = (project.run_dir(run.id) / "run.json").read_text()
    assert '"validation_size": 2' in record
    assert run.config["hold_out"] is True
    assert run.config["recipe"]["early_stopping_patience"] == 1


def test_support_split_holds_out_a_fifth_per_class_only_when_there_are_enough() -> None:
    from ept_studio.services.model.images import rendering_spec
    from ept_studio.services.project import LabelMode
    from ept_studio.services.project.training import TrainingItem, support_split

    def items(per_class: dict[int, int]) -> list[tuple[TrainingItem, None]]:
        spec = rendering_spec({})
        made = []
        for target, count in per_class.items():
            for k in range(count):
                item = TrainingItem(
                    len(made), f"{target}{k}", Path("x"), spec, target, Role.TRAIN, None
                )
                made.append((item, None))
        return made

    support, held = support_split(items({0: 10, 1: 5}), True, 0, LabelMode.SINGLE)
    assert sorted(item.target for item, _ in held) == [0, 0, 1]
    assert len(support) == 12
    assert not {i.image_id for i, _ in held} & {i.image_id for i, _ in support}
    again, _ = support_split(items({0: 10, 1: 5}), True, 0, LabelMode.SINGLE)
    assert [i.image_id for i, _ in again] == [i.image_id for i, _ in support]
    assert support_split(items({0: 10, 1: 4}), True, 0, LabelMode.SINGLE)[1] == []
    assert support_split(items({0: 10, 1: 5}), False, 0, LabelMode.SINGLE)[1] == []


def test_metric_names_read_plainly_and_keep_the_key_in_the_tooltip() -> None:
    assert plain_metric_name("balanced_accuracy") == "Balanced accuracy (mean of per-class recall)"
    assert plain_metric_name("ece") == "Calibration error"
    assert plain_metric_name("macro_auc") == "AUC (mean over classes)"
    assert plain_metric_name("top_k") == "Top k"  # unknown keys are tidied, not hidden
    assert metric_tooltip("ece").endswith("(key: ece)")
    assert metric_tooltip("macro_auc").startswith("For each class, how often")
    assert metric_tooltip("new_metric") == "A metric recorded by the run (key: new_metric)"
