"""The open project as the GUI sees it: one QObject that changes the store and says what changed.

Panels never write to the store themselves; they call this session, which commits each change
through the services (every label is saved the moment it is made) and emits ``labels_changed``,
``classes_changed`` or ``images_changed`` so that views refresh.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot

from ept_studio.gui.tasks import WorkerThread
from ept_studio.gui.workers import ImportWorker
from ept_studio.services.project import (
    ClassCount,
    ClassInfo,
    GalleryFilter,
    GalleryItem,
    ImportReport,
    LabelMode,
    Project,
    Role,
    class_counts,
    create_project,
    gallery_items,
    image_count,
    latest_prediction_run,
    open_project,
    remove_from_project,
    unlabelled_count,
)

logger = logging.getLogger(__name__)


class ProjectSession(QObject):
    """Holds the open :class:`Project` (GUI thread) and runs imports in a worker thread."""

    project_changed = Signal()
    images_changed = Signal()
    classes_changed = Signal()
    labels_changed = Signal()
    import_progress = Signal(int, int)
    import_finished = Signal(object)
    import_failed = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.project: Project | None = None
        self._thread: WorkerThread[ImportWorker] | None = None

    # -- opening ------------------------------------------------------------------------------

    def new_project(self, folder: Path, label_mode: LabelMode | str = LabelMode.SINGLE) -> None:
        """A new project; ``multi``: an image may carry several classes."""
        self._replace(create_project(folder, label_mode))

    def open_project(self, folder: Path) -> None:
        self._replace(open_project(folder))

    def close(self) -> None:
        self.cancel_import()
        if self._thread is not None:
            self._thread.quit()  # its worker's "finished -> quit" would wait for this thread
            self._thread.wait(10_000)
        if self.project is not None:
            self.project.close()
            self.project = None

    def _replace(self, project: Project) -> None:
        self.close()
        self.project = project
        self.project_changed.emit()

    @property
    def folder(self) -> Path | None:
        return self.project.folder if self.project is not None else None

    @property
    def multi_label(self) -> bool:
        return self.project is not None and self.project.label_mode is LabelMode.MULTI

    # -- reading ------------------------------------------------------------------------------

    def items(self, selection: GalleryFilter) -> list[GalleryItem]:
        return gallery_items(self.project, selection) if self.project is not None else []

    def classes(self) -> list[ClassInfo]:
        return self.project.labels.classes() if self.project is not None else []

    def counts(self) -> dict[int, ClassCount]:
        return class_counts(self.project) if self.project is not None else {}

    def image_count(self) -> int:
        return image_count(self.project) if self.project is not None else 0

    def unlabelled_count(self) -> int:
        return unlabelled_count(self.project) if self.project is not None else 0

    def prediction_run(self) -> int | None:
        """The inference run the review filters read (latest finished one with predictions)."""
        return latest_prediction_run(self.project) if self.project is not None else None

    def label_of(self, image_id: int) -> list[int]:
        if self.project is None:
            return []
        return [label.class_id for label in self.project.labels.of(image_id)]

    # -- changing -----------------------------------------------------------------------------

    def add_class(self, name: str) -> ClassInfo:
        info = self._open().labels.add_class(name)
        self.classes_changed.emit()
        return info

    def rename_class(self, class_id: int, name: str) -> None:
        self._open().labels.rename_class(class_id, name)
        self.classes_changed.emit()

    def delete_class(self, class_id: int) -> None:
        self._open().labels.delete_class(class_id)
        self.classes_changed.emit()
        self.labels_changed.emit()

    def label(self, image_ids: list[int], class_id: int | None) -> None:
        """Label images (None clears them); committed before this returns."""
        if image_ids and self._open().labels.set_label(image_ids, class_id):
            self.labels_changed.emit()

    def label_by_position(self, image_ids: list[int], position: int) -> None:
        """Key N: the N-th class (from 1); 0 clears. Keys past the last class do nothing.

        In a multi-label project key N toggles the class: it is taken off when every image of
        the selection carries it, else added to those that lack it.
        """
        if position == 0:
            self.label(image_ids, None)
            return
        classes = self.classes()
        if 1 <= position <= len(classes):
            if self.multi_label:
                self.toggle_class(image_ids, classes[position - 1].id)
            else:
                self.label(image_ids, classes[position - 1].id)

    def toggle_class(self, image_ids: list[int], class_id: int) -> None:
        """Add ``class_id`` to the images, or take it off when all of them already carry it."""
        if all(class_id in self.label_of(image_id) for image_id in image_ids):
            self.remove_label(image_ids, class_id)
        else:
            self.label(image_ids, class_id)

    def remove_label(self, image_ids: list[int], class_id: int) -> None:
        """Take one class off the images (one undoable step); other labels stay."""
        if image_ids and self._open().labels.remove_label(image_ids, class_id):
            self.labels_changed.emit()

    def toggle_role(self, image_ids: list[int]) -> Role | None:
        """Move the labelled images to test, or back to train when all are test already.

        One undoable step; unlabelled images have no role. Returns the role set (None: nothing
        to change).
        """
        project = self._open()
        roles = {label.role for i in image_ids for label in project.labels.of(i)}
        if not roles:
            return None
        role = Role.TRAIN if roles == {Role.TEST} else Role.TEST
        if project.labels.set_role(image_ids, role):
            self.labels_changed.emit()
        return role

    def recolour_class(self, class_id: int, colour: str) -> None:
        """A new colour (``#rrggbb``) for the class's bin and thumbnail bands; saved at once."""
        self._open().labels.recolour_class(class_id, colour)
        self.classes_changed.emit()

    def move_class(self, class_id: int, offset: int) -> None:
        """Move a class up (-1) or down (+1) the list; keys 1-9 follow the new order."""
        order = [info.id for info in self.classes()]
        if class_id not in order:
            return
        old = order.index(class_id)
        new = max(0, min(len(order) - 1, old + offset))
        if new == old:
            return
        order.insert(new, order.pop(old))
        self._open().labels.reorder_classes(order)
        self.classes_changed.emit()

    def remove_images(self, image_ids: list[int]) -> int:
        """Take the images out of the project, their labels too (not undoable); returns how many.

        The files on the user's disk stay; copies this app made of PACS images that no image
        left uses are deleted. Refused (:class:`~ept_studio.common.errors.ProjectError`) with
        nothing taken out when an id is not in the project.
        """
        ids = list(dict.fromkeys(image_ids))
        if not ids:
            return 0
        remove_from_project(self._open(), ids)
        self.images_changed.emit()
        self.labels_changed.emit()
        return len(ids)

    def undo(self) -> None:
        if self.project is not None and self.project.labels.undo():
            self.labels_changed.emit()

    def redo(self) -> None:
        if self.project is not None and self.project.labels.redo():
            self.labels_changed.emit()

    def _open(self) -> Project:
        if self.project is None:
            raise RuntimeError("no project is open")
        return self.project

    # -- importing ----------------------------------------------------------------------------

    @property
    def importing(self) -> bool:
        return self._thread is not None and self._thread.isRunning()

    def start_import(self, paths: list[Path], *, folders_as_classes: bool = False) -> bool:
        """Import in a worker thread; False when no project is open or an import is running.

        ``folders_as_classes``: each sub-folder of a given folder is a class (created if new)
        and labels its images.
        """
        if self.project is None or self.importing or not paths:
            return False
        worker = ImportWorker(self.project.folder, paths, folders_as_classes=folders_as_classes)
        return self.start_import_worker(worker)

    def start_import_worker(self, worker: ImportWorker) -> bool:
        """Run an import worker (files, or a PACS retrieve) with the same progress, Cancel and
        refresh; False when no project is open or an import is running."""
        if self.project is None or self.importing:
            return False
        worker.progress.connect(self._on_progress)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        self._thread = WorkerThread(worker, self)
        self._thread.start()
        return True

    def cancel_import(self) -> None:
        if self._thread is not None:
            self._thread.worker.cancel()

    @Slot(int, int)
    def _on_progress(self, done: int, total: int) -> None:
        self.import_progress.emit(done, total)

    @Slot(object)
    def _on_finished(self, report: ImportReport) -> None:
        self._join()
        if report.labelled:  # folders as classes may have created classes
            self.classes_changed.emit()
        self.images_changed.emit()
        self.labels_changed.emit()
        self.import_finished.emit(report)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self._join()
        self.import_failed.emit(message)

    def _join(self) -> None:
        if self._thread is not None:
            self._thread.quit()
            self._thread.wait(10_000)
            self._thread.worker.deleteLater()
            self._thread.deleteLater()
            self._thread = None
