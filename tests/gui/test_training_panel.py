"""The Train tab on a real project: train in the worker, watch progress, cancel, stay responsive."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from gui_support import label_project
from PySide6.QtCore import QPoint, Qt, QTimer
from PySide6.QtWidgets import QWidget
from pytestqt.qtbot import QtBot

from ept_studio.common.training_events import EpochFinished, RunStarted, StepFinished
from ept_studio.gui import jobs as jobs_module
from ept_studio.gui.jobs import TRAINING
from ept_studio.gui.main_window import MainWindow
from ept_studio.gui.training_panel import LOSS, format_eta
from ept_studio.services.project import ProjectTrainingSaved, open_project
from ept_studio.services.project.tuning import TuningCancelled, tune_project

pytestmark = pytest.mark.gui

T = TypeVar("T")


@pytest.fixture
def labelled(window: MainWindow, tmp_path: Path, qtbot: QtBot) -> MainWindow:
    """A project with two classes of 4 train + 2 test images, and the tiny backbone."""
    return label_project(window, tmp_path, qtbot, train=4, test=2)


def collect(window: MainWindow, kind: type[T]) -> list[T]:
    """The task events of type ``kind`` the window's jobs send from now on."""
    items: list[T] = []
    window.jobs.task_event.connect(
        lambda _name, item: items.append(item) if isinstance(item, kind) else None
    )
    return items


def finished_training(qtbot: QtBot, window: MainWindow, timeout: int = 60_000) -> object:
    with qtbot.waitSignal(window.jobs.finished, timeout=timeout) as blocker:
        pass
    name, last = blocker.args
    assert name == TRAINING
    return last


def test_train_shows_progress_curves_and_saves_the_run(labelled: MainWindow, qtbot: QtBot) -> None:
    panel = labelled.training
    panel.set_method("ept")
    panel.length.setValue(4)
    panel.epochs.setValue(2)
    panel.batch_size.setValue(4)
    steps = collect(labelled, StepFinished)
    with qtbot.waitSignal(labelled.jobs.finished, timeout=60_000) as blocker:
        assert panel.start()
        assert not panel.train_button.isEnabled()
        assert panel.cancel_button.isEnabled()
    saved = blocker.args[1]
    assert isinstance(saved, ProjectTrainingSaved)
    assert len(steps) == 4  # 8 training images, batch 4, 2 epochs
    assert panel.progress.maximum() == 1
    assert panel.progress.value() == 1
    assert [x for x, _ in panel.curves.points(LOSS)] == [1.0, 2.0, 3.0, 4.0]
    assert [y for _, y in panel.curves.points(LOSS)] == pytest.approx([s.loss for s in steps])
    assert panel.last_saved is saved
    # the figures say what they were measured on: how many test images, and the fine-detail check
    assert saved.test_size > 0
    assert saved.detail_size is not None
    assert (
        f"Run {saved.run_id} saved. On {saved.test_size} test images, scored with the fine-detail "
        "check: Accuracy "
    ) in panel.state.text()
    assert panel.train_button.isEnabled()
    assert not panel.cancel_button.isEnabled()
    # the next plan is timed on this run: 4 steps in the run record's training seconds
    assert panel.plan_label.toolTip().startswith("Based on 1 earlier run of this project")
    with open_project(labelled.session.folder or Path()) as project:
        run = project.run(saved.run_id)
        assert run.status == "finished"
        assert run.config["method"]["length"] == 4
        assert run.config["recipe"]["epochs"] == 2
        assert run.config["detail_size"] == saved.detail_size
        assert saved.prompt_file.is_file()


def test_held_out_loss_and_accuracy_are_drawn_once_an_epoch(
    window: MainWindow, tmp_path: Path, qtbot: QtBot
) -> None:
    label_project(window, tmp_path, qtbot, train=5, test=0)
    panel = window.training
    panel.set_method("linear")
    panel.epochs.setValue(3)
    assert panel.hold_out.isChecked()
    epochs = collect(window, EpochFinished)
    with qtbot.waitSignal(window.jobs.finished, timeout=60_000) as blocker:
        assert panel.start()
    assert isinstance(blocker.args[1], ProjectTrainingSaved)
    assert len(epochs) == 3
    assert all(e.val_metrics is not None for e in epochs)
    # 4 of each class's 5 train, 1 held out: 8 images, batch 4, 2 steps an epoch
    assert [x for x, _ in panel.curves.points(LOSS)] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    for key in ("loss", "accuracy"):
        drawn = panel.curves.points(f"held-out {key}")
        assert [x for x, _ in drawn] == [2.0, 4.0, 6.0]
        assert [y for _, y in drawn] == pytest.approx([e.val_metrics[key] for e in epochs])


def test_cancel_stops_within_a_step_then_train_again(labelled: MainWindow, qtbot: QtBot) -> None:
    panel = labelled.training
    panel.set_method("linear")
    panel.epochs.setValue(200)
    panel.batch_size.setValue(2)
    seen: list[int] = []

    stopping: list[tuple[bool, bool, str]] = []

    def on_event(_name: str, item: object) -> None:
        if isinstance(item, StepFinished):
            seen.append(item.step)
            if item.step == 2:
                panel.cancel()
                buttons = (panel.cancel_button.isEnabled(), panel.train_button.isEnabled())
                stopping.append((*buttons, panel.state.text()))

    labelled.jobs.task_event.connect(on_event)
    with open_project(labelled.session.folder or Path()) as project:
        labels_before = sorted((lb.image_id, lb.class_id) for lb in project.labels.all())
    with qtbot.waitSignal(labelled.jobs.finished, timeout=60_000) as blocker:
        assert panel.start()
    cancelled = blocker.args[1]
    assert isinstance(cancelled, TuningCancelled)
    assert stopping == [(False, False, "Stopping after the current step…")]
    # asked at step 2: it stopped early, however many steps a busy machine ran before the cancel
    # reached the worker (counting them would assert on the machine's speed)
    assert panel.plan is not None
    assert 2 <= cancelled.steps_done < panel.plan.steps
    assert "Cancelled after" in panel.state.text()
    with open_project(labelled.session.folder or Path()) as project:
        assert [r.status for r in project.runs()] == ["cancelled"]
        assert sorted((lb.image_id, lb.class_id) for lb in project.labels.all()) == labels_before
    labelled.jobs.task_event.disconnect(on_event)
    panel.epochs.setValue(1)
    with qtbot.waitSignal(labelled.jobs.finished, timeout=60_000) as blocker:
        assert panel.start()
    assert isinstance(blocker.args[1], ProjectTrainingSaved)
    with open_project(labelled.session.folder or Path()) as project:
        assert [r.status for r in project.runs()] == ["cancelled", "finished"]


def test_the_window_stays_responsive_while_training(
    labelled: MainWindow, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Training holds at its second step until a GUI timer has ticked: a GUI thread blocked by
    training would never tick, and the run would stop there. No clock is read, so the test holds
    on a machine of any speed."""
    ticked_mid_run = threading.Event()
    held_at: list[int] = []

    def held_at_second_step(*args: object, **kwargs: object) -> Iterator[object]:
        for item in tune_project(*args, **kwargs):  # type: ignore[arg-type]
            yield item
            if isinstance(item, StepFinished) and item.step == 2:
                held_at.append(item.step)
                if not ticked_mid_run.wait(timeout=60):
                    raise AssertionError("the GUI thread did not run while training was held")

    monkeypatch.setattr(jobs_module, "tune_project", held_at_second_step)
    panel = labelled.training
    panel.set_method("ept")
    panel.length.setValue(8)
    panel.epochs.setValue(6)
    panel.batch_size.setValue(2)
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticked_mid_run.set() if held_at else None)
    steps = collect(labelled, StepFinished)
    timer.start()
    with qtbot.waitSignal(labelled.jobs.finished, timeout=120_000) as blocker:
        assert panel.start()
    timer.stop()
    assert isinstance(blocker.args[1], ProjectTrainingSaved)
    assert held_at == [2]
    assert ticked_mid_run.is_set()
    assert [step.step for step in steps] == list(range(1, 25))


def test_a_project_that_cannot_train_says_why_before_the_press(
    labelled: MainWindow, qtbot: QtBot
) -> None:
    panel = labelled.training
    assert panel.train_button.isEnabled()
    project = labelled.session.project
    assert project is not None
    with qtbot.waitSignal(panel.readiness_changed) as blocker:
        labelled.session.toggle_role([i.id for i in project.images()])  # every image to test
    assert blocker.args == [False]
    reason = "No labelled image has the train role: label some images first."
    assert not panel.train_button.isEnabled()
    assert reason in panel.train_button.toolTip()
    assert panel.plan_label.text() == f"Cannot train yet: {reason}"
    assert f"✗ {reason}" in panel.checklist.texts()
    assert not panel.start()
    assert reason in panel.state.text()
    assert not labelled.jobs.busy
    with qtbot.waitSignal(panel.readiness_changed) as blocker:
        labelled.session.undo()
    assert blocker.args == [True]
    assert panel.train_button.isEnabled()


def test_a_run_that_fails_after_the_press_is_reported_and_the_app_survives(
    labelled: MainWindow, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files broken after they were imported: only rendering finds out, in the worker."""
    from PySide6.QtWidgets import QMessageBox

    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *args: shown.append(str(args[2])))
    project = labelled.session.project
    assert project is not None
    for image in project.images():
        assert image.path is not None
        image.path.write_bytes(b"not a PNG any more")
    with qtbot.waitSignal(labelled.jobs.failed, timeout=30_000) as blocker:
        assert labelled.training.start()
    assert blocker.args[0] == TRAINING
    assert "no labelled image has the train role" in blocker.args[1]
    assert shown == [blocker.args[1]]
    assert "Training failed" in labelled.training.state.text()
    assert "⚠ 12 labelled images are left out: the file cannot be read as an image." in (
        labelled.training.checklist.texts()
    )
    assert not labelled.training.train_button.isEnabled()  # now known: nothing left to train on


def test_bad_settings_are_named_before_anything_starts(labelled: MainWindow) -> None:
    panel = labelled.training
    panel.blocks.setText("first three")
    assert not panel.train_button.isEnabled()
    assert panel.plan_label.text().startswith("Cannot train yet: Advanced: blocks must be all,")
    assert any(t.startswith("✗ Advanced: blocks must be all") for t in panel.checklist.texts())
    assert not panel.start()
    assert "blocks must be all, shallow" in panel.state.text()
    assert not labelled.jobs.busy
    panel.blocks.setText("0-1")
    assert panel.train_button.isEnabled()


def test_eta_reads_like_a_person_wrote_it() -> None:
    assert format_eta(0.4) == "less than a second left"
    assert format_eta(42) == "about 42 s left"
    assert format_eta(65) == "about 1 min 05 s left"
    assert format_eta(3 * 3600 + 120) == "about 3 h 02 min left"


def test_closing_while_training_asks_then_cancels_and_keeps_the_labels(
    labelled: MainWindow, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PySide6.QtWidgets import QMessageBox

    answers = [QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes]
    asked: list[str] = []

    def question(*args: object, **_kwargs: object) -> QMessageBox.StandardButton:
        asked.append(str(args[2]))
        return answers.pop(0)

    monkeypatch.setattr(QMessageBox, "question", question)
    folder = labelled.session.folder
    assert folder is not None
    with open_project(folder) as project:
        labels_before = sorted((lb.image_id, lb.class_id, lb.role) for lb in project.labels.all())
    panel = labelled.training
    panel.set_method("linear")
    panel.epochs.setValue(500)
    panel.batch_size.setValue(1)
    with qtbot.waitSignal(labelled.jobs.task_event, timeout=30_000):
        assert panel.start()
    labelled.close()  # "No": the window stays, training goes on
    assert labelled.isVisible()
    assert labelled.jobs.busy
    labelled.close()  # "Yes": cancelled, waited for, closed
    assert not labelled.isVisible()
    assert not labelled.jobs.busy
    assert asked[0].startswith("Training is still running")
    with open_project(folder) as project:
        assert [run.status for run in project.runs()] == ["cancelled"]
        after = sorted((lb.image_id, lb.class_id, lb.role) for lb in project.labels.all())
    assert after == labels_before


def test_the_few_shot_default_recipe_takes_at_least_50_steps(
    labelled: MainWindow, qtbot: QtBot
) -> None:
    panel = labelled.training
    panel.set_recipe("default")
    panel.set_method("linear")
    started = collect(labelled, RunStarted)
    with qtbot.waitSignal(labelled.jobs.finished, timeout=120_000) as blocker:
        assert panel.start()
    assert isinstance(blocker.args[1], ProjectTrainingSaved)
    assert started[0].total_steps >= 50
    with open_project(labelled.session.folder or Path()) as project:
        recipe = project.runs()[-1].config["recipe"]
    assert (recipe["optimizer"], recipe["head_init"], recipe["min_steps"]) == (
        "adamw",
        "prototype",
        50,
    )


def test_the_plan_says_what_the_recipe_changes_before_the_press(labelled: MainWindow) -> None:
    panel = labelled.training
    panel.set_recipe("default")
    panel.device.setCurrentIndex(panel.device.findData("cpu"))
    panel.advanced.trained_share.setValue(100)  # its note has a test of its own
    panel.advanced.detail.setChecked(False)  # so has this one's
    panel.epochs.setValue(2)
    assert panel.plan is not None
    assert (panel.plan.steps, panel.plan.epochs) == (50, 25)  # 8 training images, batch 4
    assert panel.plan_label.text().startswith("50 steps on CPU, about ")
    assert panel.plan_label.toolTip().startswith("A rough estimate: about 4 s a step")
    assert panel.notes_label.text().splitlines() == [
        "• You asked for 2 passes; the recipe needs at least 50 steps, so it will run 25 passes "
        "(50 steps).",
        "• Hold-out for picking the best pass is off: every class needs 5 training images "
        "(fundus has 4, histology has 4).",
        "• Scores will not be calibrated, so there will be no prediction sets: no held-out "
        "images, and at least 10 are needed. Tick 'Calibrate on half of the test images' or add "
        "training images.",
    ]
    panel.hold_out.setChecked(False)
    assert len(panel.notes_label.text().splitlines()) == 2
    panel.advanced.calibrate_on_test.setChecked(True)
    assert (
        panel.notes_label.text()
        .splitlines()[-1]
        .startswith("• Scores will not be calibrated, so there will be no prediction sets: only ")
    )
    assert panel.notes_label.text().endswith(
        "test images (half of each class's), and at least 10 are needed. Add test images or "
        "untick 'Calibrate on half of the test images'."
    )


def test_the_checklist_follows_the_labels_and_split_for_me_makes_a_test_set(
    window: MainWindow, tmp_path: Path, qtbot: QtBot
) -> None:
    label_project(window, tmp_path, qtbot, train=5, test=0)
    panel = window.training
    warning = "⚠ No test images: you will get no accuracy. Press 'Split for me'."
    assert warning in panel.checklist.texts()
    assert panel.counts_label.text() == "Test: 0 images (0 %) · Train: 10"
    assert panel.train_button.isEnabled()  # a warning does not block
    panel.split_action.trigger()
    assert panel.counts_label.text() == "Test: 2 images (20 %) · Train: 8"
    assert warning not in panel.checklist.texts()
    assert "✓ 2 test images to measure accuracy on." in panel.checklist.texts()
    assert panel.state.text().startswith("Moved 2 images to the test set")
    window.session.undo()
    assert panel.counts_label.text() == "Test: 0 images (0 %) · Train: 10"


def test_a_tiny_class_warns_as_soon_as_it_is_labelled(
    window: MainWindow, tmp_path: Path, qtbot: QtBot
) -> None:
    label_project(window, tmp_path, qtbot, train=5, test=0)
    project = window.session.project
    assert project is not None
    histology = [i.id for i in project.images() if "/histology/" in str(i.path)]
    window.session.label(histology[2:], None)  # 2 histology images left
    texts = window.training.checklist.texts()
    assert any(t.startswith("⚠ Very few training images (histology has 2)") for t in texts)
    window.session.label(histology[1:], None)  # 1 left: also 5 x fewer than fundus
    texts = window.training.checklist.texts()
    assert any(t.startswith("⚠ Unbalanced: fundus has 5 training images") for t in texts)


def test_the_tab_is_narrow_and_its_settings_speak_plainly(window: MainWindow) -> None:
    panel = window.training
    assert panel.minimumSizeHint().width() <= 380
    assert panel.method.currentText() == "EPT (recommended)"
    assert "Embedded Prompt Tuning" in panel.method.toolTip()
    assert not panel.advanced.body.isVisibleTo(panel)
    panel.advanced.toggle.setChecked(True)
    assert panel.advanced.body.isVisibleTo(panel)
    assert panel.minimumSizeHint().width() <= 380
    assert [panel.recipe.itemText(i) for i in range(panel.recipe.count())] == [
        "Few-shot default",
        "Paper's recipe",
    ]
    assert panel.recipe.itemData(0, Qt.ItemDataRole.ToolTipRole).startswith("AdamW 3e-4")
    tooltips = {
        "prompt length L": panel.length,
        "prompted blocks": panel.blocks,
        "seed": panel.seed,
        "epochs": panel.epochs,
        "learning rate": panel.learning_rate,
        "batch size": panel.batch_size,
    }
    for term, widget in tooltips.items():
        assert widget.toolTip().startswith(term)
    assert not panel.train_button.isEnabled()
    assert panel.plan_label.text() == "Cannot train yet: Create or open a project first."


def test_opening_advanced_on_a_short_window_scrolls_it_into_view(
    labelled: MainWindow, qtbot: QtBot
) -> None:
    labelled.resize(1280, 480)
    labelled.side.setCurrentWidget(labelled.training)
    panel = labelled.training
    viewport = panel.scroll_area.viewport()

    def in_view(widget: QWidget) -> bool:
        top = widget.mapTo(viewport, QPoint(0, 0)).y()
        return top >= 0 and top + widget.height() <= viewport.height()

    qtbot.waitUntil(lambda: panel.scroll_area.verticalScrollBar().maximum() > 0, timeout=5_000)
    panel.advanced.toggle.setChecked(True)

    def heading_at_top() -> bool:  # the heading, then as many of its settings as fit
        return 0 <= panel.advanced.toggle.mapTo(viewport, QPoint(0, 0)).y() < viewport.height() // 8

    qtbot.waitUntil(heading_at_top, timeout=5_000)
    assert in_view(panel.advanced.recipe)
    assert in_view(panel.advanced.trained_share)


def test_the_detail_box_is_on_said_in_the_plan_and_reaches_the_options(
    labelled: MainWindow,
) -> None:
    panel = labelled.training
    box = panel.advanced.detail
    assert box.isChecked()
    assert panel.options().detail
    assert "multi-resolution ensemble" in box.toolTip()
    assert "twice the size (448 px" in panel.notes_label.text()

    box.setChecked(False)
    assert not panel.options().detail
    assert "twice the size" not in panel.notes_label.text()
    box.setChecked(True)
    assert panel.options().detail
