"""The plan the Train tab shows before the press: the run's own step count, said in plain words,
with a time estimate from this project's earlier runs, and no torch imported to make it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from labelled_projects import labelled_project

from ept_studio.core.hold_out import held_out_sizes
from ept_studio.core.run_length import PRESET_LENGTHS
from ept_studio.core.training import RECIPES, recipe_from_settings
from ept_studio.services.model.run_record import (
    Evaluation,
    RecordedBackbone,
    RecordedData,
    RecordedFile,
    RecordedImage,
    TrainingRecord,
    TrainingSummary,
    write_run_record,
)
from ept_studio.services.model.training_options import TrainingOptions
from ept_studio.services.project import Project, Role
from ept_studio.services.project.training_plan import device_label, plan_training, rough_duration

SIZES = {"six": (3, 3), "twelve": (7, 5), "twenty-one": (11, 10)}
"""Training images per class of the projects the step counts are checked on."""


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Project]]:
    opened = {}
    for name, (first, second) in SIZES.items():
        layout: dict[str, list[str | None]] = {
            "fundus": [None] * first,
            "histology": [None] * second,
        }
        opened[name] = labelled_project(tmp_path_factory.mktemp(name), layout)
    yield opened
    for project in opened.values():
        project.close()


def test_the_presets_lengths_are_the_recipes_own() -> None:
    for name, recipe in RECIPES.items():
        assert recipe.run_length == PRESET_LENGTHS[name]


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize(
    "options",
    [
        TrainingOptions(detail=False),
        TrainingOptions(detail=False, epochs=2),
        TrainingOptions(detail=False, epochs=30, batch_size=3),
        TrainingOptions(detail=False, recipe="paper"),
        TrainingOptions(detail=False, recipe="paper", epochs=2, batch_size=8, hold_out=False),
        TrainingOptions(detail=False, batch_size=1, hold_out=False),
    ],
)
def test_the_plan_has_the_steps_the_run_will_take(
    projects: dict[str, Project], size: str, options: TrainingOptions
) -> None:
    plan = plan_training(projects[size], options, gpu_names=[])
    recipe = recipe_from_settings(options.recipe_overrides())
    held = held_out_sizes(list(SIZES[size]), options.hold_out, single_label=True)
    support = sum(SIZES[size]) - sum(held)
    assert plan.held_out == tuple(held)
    assert plan.support_images == support
    assert plan.steps == recipe.total_steps(support)
    assert plan.epochs == recipe.epochs_for(support)
    assert plan.batch_size == recipe.batch_size


CALIBRATION_TICK = "Tick 'Calibrate on half of the test images' or add training images."
NO_HELD_OUT_CALIBRATION = (
    "Scores will not be calibrated, so there will be no prediction sets: no held-out images, and "
    f"at least 10 are needed. {CALIBRATION_TICK}"
)


def test_the_plan_says_what_the_recipe_changes(projects: dict[str, Project]) -> None:
    plan = plan_training(
        projects["six"], TrainingOptions(detail=False, epochs=2, trained_share=None), gpu_names=[]
    )
    assert (plan.steps, plan.epochs, plan.epochs_requested) == (50, 25, 2)
    assert plan.notes == (
        "You asked for 2 passes; the recipe needs at least 50 steps, so it will run 25 passes "
        "(50 steps).",
        "Hold-out for picking the best pass is off: every class needs 5 training images "
        "(fundus has 3, histology has 3).",
        NO_HELD_OUT_CALIBRATION,
    )
    untouched = plan_training(
        projects["six"], TrainingOptions(detail=False, recipe="paper"), gpu_names=[]
    )
    assert (untouched.steps, untouched.epochs, untouched.notes) == (
        40,
        20,
        (
            "Hold-out for picking the best pass is off: every class needs 5 training images "
            "(fundus has 3, histology has 3).",
            NO_HELD_OUT_CALIBRATION,
        ),
    )


def test_the_recipes_own_passes_are_named_when_the_user_set_none(
    projects: dict[str, Project],
) -> None:
    plan = plan_training(
        projects["twelve"],
        TrainingOptions(detail=False, patience=3, trained_share=None),
        gpu_names=[],
    )
    assert plan.notes == (
        "The recipe's 10 passes would be 30 steps; the recipe needs at least 50 steps, so it "
        "will run 17 passes (51 steps).",
        "2 training images are kept aside to pick the best pass; training stops early after 3 "
        "passes without improvement.",
        "Scores will not be calibrated, so there will be no prediction sets: only 2 held-out "
        f"images, and at least 10 are needed. {CALIBRATION_TICK}",
    )


def test_without_earlier_runs_the_estimate_is_the_rough_figure(
    projects: dict[str, Project],
) -> None:
    plan = plan_training(
        projects["twelve"],
        TrainingOptions(detail=False),
        backbone_name="dinov2-vits14-imgfocus",
        gpu_names=[],
    )
    assert plan.estimate_s == pytest.approx(51 * 1.2)
    assert plan.headline() == "51 steps on CPU, about 1 min"
    assert plan.estimate_basis.startswith("A rough estimate: about 1.2 s a step for this backbone")


def test_an_earlier_finished_run_on_this_device_sets_the_estimate(tmp_path: Path) -> None:
    layout: dict[str, list[str | None]] = {"fundus": [None] * 3, "histology": [None] * 3}
    with labelled_project(tmp_path, layout) as project:
        _finished_run(project, "CPU (2 threads)", elapsed_s=30.0, epochs_run=5, train=8)
        _finished_run(project, "NVIDIA H200 (139 GiB)", elapsed_s=1.0, epochs_run=5, train=8)
        plan = plan_training(
            project, TrainingOptions(detail=False, recipe="paper"), backbone_name="vit-s"
        )
        on_gpu = plan_training(
            project,
            TrainingOptions(detail=False, recipe="paper"),
            backbone_name="vit-s",
            gpu_names=["H200"],
        )
    assert (plan.device, plan.steps) == ("CPU", 40)
    assert plan.estimate_s == pytest.approx(40 * 3.0)  # 30 s for 5 epochs of 2 steps
    assert plan.estimate_basis.startswith("Based on 1 earlier run of this project")
    assert plan.headline() == "40 steps on CPU, about 2 min"
    assert (on_gpu.device, on_gpu.estimate_s) == ("GPU (H200)", pytest.approx(40 * 0.1))


def _finished_run(
    project: Project, device: str, *, elapsed_s: float, epochs_run: int, train: int
) -> None:
    run_id = project.record_run(
        config={"method": {"method": "ept", "embedding": "pure_cat"}},
        seed=0,
        versions={},
        backbone="vit-s",
        backbone_sha256="0" * 64,
    )
    image = RecordedImage("0" * 64, 0)
    record = TrainingRecord(
        source="project",
        created="",
        notice="",
        versions={},
        machine={},
        seed=0,
        method={"method": "ept"},
        recipe={"batch_size": 4},
        trainable_parameters=1,
        backbone=RecordedBackbone("vit-s", "0" * 64),
        data=RecordedData(("a", "b"), "single", (image,) * train, ()),
        training=TrainingSummary(device, epochs_run, epochs_run, None, False, elapsed_s),
        evaluation=Evaluation({}, None, 0),
        prompt_file=RecordedFile("prompt.safetensors", "0" * 64),
        run_id=run_id,
    )
    write_run_record(project.run_dir(run_id) / "run.json", record)
    project.finish_run(run_id, "finished", device=device)


def test_the_device_is_named_without_torch() -> None:
    assert device_label("auto", ["NVIDIA H200"]) == ("GPU (NVIDIA H200)", "cuda")
    assert device_label("cpu", ["NVIDIA H200"]) == ("CPU", "cpu")
    assert device_label("mps", []) == ("Apple GPU", "mps")
    if sys.platform != "darwin":
        assert device_label("auto", []) == ("CPU", "cpu")


def test_durations_read_as_forecasts() -> None:
    assert [rough_duration(s) for s in (3, 42, 61, 480, 3900)] == [
        "about 5 s",
        "about 40 s",
        "about 1 min",
        "about 8 min",
        "about 1 h 05 min",
    ]


def test_planning_and_drawing_the_train_tab_import_no_torch(
    projects: dict[str, Project], tmp_path: Path
) -> None:
    folder = projects["twelve"].folder
    code = f"""
import sys
from pathlib import Path
from ept_studio.services.project import Project, Role
from ept_studio.services.project.readiness import check_readiness
from ept_studio.services.project.test_split import suggest_test_split
from ept_studio.services.model.training_options import TrainingOptions
from ept_studio.services.project.training_plan import plan_training
import ept_studio.gui.training_panel

with Project.open(Path({str(folder)!r}), locations_dir=Path({str(folder.parent / "locations")!r})) as project:
    plan = plan_training(project, TrainingOptions(detail=False, epochs=2))
    ready = check_readiness(project).ready
    split = suggest_test_split(project)
print(plan.steps, ready, split.test_images, "torch" in sys.modules)
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.split() == ["51", "True", "2", "False"]


def test_stopping_early_without_held_out_images_is_said_to_be_off(
    projects: dict[str, Project],
) -> None:
    """Patience needs held-out images to judge by: when there are none, the plan says so."""
    too_few = plan_training(
        projects["six"], TrainingOptions(detail=False, patience=3, trained_share=None), gpu_names=[]
    )
    assert too_few.notes[-1] == (
        "Stopping early after 3 passes without improvement is off too: it is judged on the "
        "held-out images."
    )
    unticked = plan_training(
        projects["twenty-one"],
        TrainingOptions(detail=False, patience=3, hold_out=False, trained_share=None),
        gpu_names=[],
    )
    assert unticked.notes[-1] == (
        "Stopping early after 3 passes without improvement is off: it needs 'Keep a fifth "
        "aside' ticked."
    )
    assert all(
        "Stopping early" not in note
        for note in plan_training(
            projects["twenty-one"], TrainingOptions(detail=False, hold_out=False), gpu_names=[]
        ).notes
    )


def test_the_plan_says_before_the_run_when_scores_will_not_be_calibrated(
    projects: dict[str, Project],
) -> None:
    held = plan_training(projects["twenty-one"], TrainingOptions(detail=False), gpu_names=[])
    assert sum(held.held_out) == 4
    assert (
        "Scores will not be calibrated, so there will be no prediction sets: only 4 held-out "
        f"images, and at least 10 are needed. {CALIBRATION_TICK}"
    ) in held.notes
    none = plan_training(
        projects["twenty-one"], TrainingOptions(detail=False, hold_out=False), gpu_names=[]
    )
    assert (
        "Scores will not be calibrated, so there will be no prediction sets: no held-out "
        f"images, and at least 10 are needed. {CALIBRATION_TICK}"
    ) in none.notes


def test_the_plan_names_the_test_images_that_will_calibrate(tmp_path: Path) -> None:
    layout: dict[str, list[str | None]] = {"fundus": [None] * 12, "histology": [None] * 13}
    with labelled_project(tmp_path / "p", layout) as project:
        ids = [image.id for image in project.images()]
        project.labels.set_role(ids[:10] + ids[12:23], Role.TEST)
        plan = plan_training(
            project, TrainingOptions(detail=False, calibrate_on_test=True), gpu_names=[]
        )
        assert (
            "10 test images (half of each class's) will calibrate the scores and make 90 % "
            "prediction sets; they are not scored as test images."
        ) in plan.notes
        fewer = plan_training(
            project,
            TrainingOptions(detail=False, calibrate_on_test=True, coverage=0.95),
            gpu_names=[],
        )
        assert (
            "10 test images (half of each class's) will calibrate the scores and make 95 % "
            "prediction sets; they are not scored as test images. With fewer than 19 calibration "
            "images the 95 % cannot be promised."
        ) in fewer.notes


def test_the_plan_says_whether_a_cpu_with_bf16_will_use_it(
    projects: dict[str, Project], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read from the flags and the cached check; the plan itself never runs the check."""
    from ept_studio.core import bf16
    from ept_studio.core.device import bf16_decision

    def no_check() -> tuple[float, float]:
        raise AssertionError("the plan must not time the bfloat16 check")

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Test CPU\nflags\t\t: avx2 avx512_bf16\n", encoding="utf-8")
    monkeypatch.setattr(bf16, "CPUINFO", cpuinfo)
    monkeypatch.setattr(bf16, "measure_cpu_bf16", no_check)
    monkeypatch.setenv("EPT_STUDIO_DATA", str(tmp_path / "user-data"))
    options = TrainingOptions(detail=False, recipe="paper")
    before = plan_training(projects["six"], options, gpu_names=[]).notes[-1]
    assert before == (
        "bfloat16 is decided when training starts: this CPU has AVX512-BF16, and a check of a "
        "few seconds, run once on this machine, times it against float32."
    )
    import torch

    assert bf16_decision("auto", torch.device("cpu"), measure=lambda: (1.0, 0.4)).on
    after = plan_training(projects["six"], options, gpu_names=[]).notes[-1]
    assert after == "bfloat16 on: this CPU has AVX512-BF16 and ran the check 2.5x faster."


def test_the_plan_is_silent_about_bf16_on_a_cpu_without_it(projects: dict[str, Project]) -> None:
    notes = plan_training(
        projects["six"], TrainingOptions(detail=False, recipe="paper"), gpu_names=[]
    ).notes
    assert not any("bfloat16" in note for note in notes)
    gpu = plan_training(
        projects["six"], TrainingOptions(detail=False, recipe="paper"), gpu_names=["H200"]
    )
    assert gpu.notes[-1] == (
        "bfloat16 is decided when training starts: on if the NVIDIA GPU supports it."
    )


def test_the_plan_says_how_much_of_the_training_the_model_keeps(
    projects: dict[str, Project],
) -> None:
    half = plan_training(projects["twenty-one"], TrainingOptions(detail=False), gpu_names=[])
    assert half.notes[-1] == (
        "The model keeps 50% of what training learns, on top of the class-centre classifier it "
        "starts from, so it cannot drift far from that ('Keep of what training learned')."
    )
    none = plan_training(
        projects["twenty-one"], TrainingOptions(detail=False, trained_share=0.0), gpu_names=[]
    )
    assert "keeps none of what training learns" in none.notes[-1]
    for options in (
        TrainingOptions(detail=False, trained_share=1.0),
        TrainingOptions(detail=False, recipe="paper"),
    ):
        notes = plan_training(projects["twenty-one"], options, gpu_names=[]).notes
        assert not [note for note in notes if "of what training learns" in note]


def test_with_fewer_than_five_images_a_class_the_model_keeps_all_of_its_training(
    projects: dict[str, Project],
) -> None:
    few = plan_training(
        projects["six"], TrainingOptions(detail=False), gpu_names=[]
    )  # 3 images a class
    assert few.notes[-1] == (
        "The model keeps all of what training learns: 'Keep of what training learned' starts "
        "at 5 training images a class, because the class centre of fewer is a weak anchor."
    )


DETAIL_NOTE = (
    "After training, each image is also looked at at twice the size (448 px with the offline "
    "backbone), against the class centres of the training images there, and the two opinions "
    "are averaged: fine texture counts. Scoring an image then takes about 5 times as long "
    "('Also check fine detail')."
)


def test_the_plan_says_what_the_fine_detail_check_adds(projects: dict[str, Project]) -> None:
    on = plan_training(projects["six"], TrainingOptions(), gpu_names=[])
    assert on.notes[-1] == DETAIL_NOTE
    off = plan_training(projects["six"], TrainingOptions(detail=False), gpu_names=[])
    assert off.notes == on.notes[:-1]


def test_the_fine_detail_check_is_said_to_be_off_for_multi_label_projects() -> None:
    from ept_studio.data.store import LabelMode
    from ept_studio.services.project.training_plan import _detail_notes

    assert _detail_notes(TrainingOptions(), LabelMode.MULTI) == [
        "The fine-detail check is off for this project: it averages one-label-per-image "
        "scores, and images here may carry several labels."
    ]
    assert _detail_notes(TrainingOptions(detail=False), LabelMode.MULTI) == []
