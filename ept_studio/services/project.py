"""Projects for the desktop app and the CLI: create, open, import, label, train and export.

The store itself is :class:`ept_studio.data.store.Project` (classes, labels, undo / redo, runs);
importing is :mod:`ept_studio.services.project_import`, training
:mod:`ept_studio.services.project_training`. This module gathers them and adds the export.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ept_studio.data.store import (
    ClassInfo,
    ImageFilter,
    ImageRecord,
    ImageStatus,
    LabelMode,
    Project,
    Role,
)
from ept_studio.errors import ProjectError
from ept_studio.files import file_sha256
from ept_studio.services.project_import import (
    ImportFinished,
    ImportProgress,
    ImportReport,
    import_paths,
    iter_import,
    missing_or_changed,
)
from ept_studio.services.project_training import (
    ProjectDataReady,
    ProjectTrainingSaved,
    TrainingItem,
    TrainingSet,
    evaluate_samples,
    fit,
    train_on_project,
    training_set,
)

__all__ = [
    "ClassInfo",
    "ImageFilter",
    "ImageRecord",
    "ImageStatus",
    "ImportFinished",
    "ImportProgress",
    "ImportReport",
    "LabelMode",
    "Project",
    "ProjectDataReady",
    "ProjectTrainingSaved",
    "Role",
    "TrainingItem",
    "TrainingSet",
    "create_project",
    "evaluate_samples",
    "export_prompt_file",
    "fit",
    "import_paths",
    "iter_import",
    "missing_or_changed",
    "open_project",
    "train_on_project",
    "training_set",
]


def create_project(
    folder: Path, label_mode: LabelMode | str = "single", *, locations_dir: Path | None = None
) -> Project:
    """A new project in ``folder``; close it (or use it in a ``with`` block) when done."""
    return Project.create(folder, label_mode, locations_dir=locations_dir)


def open_project(folder: Path, *, locations_dir: Path | None = None) -> Project:
    """An existing project, migrated to this version's format if it is older."""
    return Project.open(folder, locations_dir=locations_dir)


def export_prompt_file(
    folder: Path, run_id: int, destination: Path, *, locations_dir: Path | None = None
) -> Path:
    """Copy a finished run's prompt file to ``destination`` (checked by sha256) and record it."""
    with Project.open(folder, locations_dir=locations_dir) as project:
        run = project.run(run_id)
        if run.status != "finished":
            raise ProjectError(f"run {run_id} has not finished ({run.status}): nothing to export")
        source = project.run_dir(run_id) / str(run.artifacts["prompt_file"])
        expected = str(run.artifacts["prompt_sha256"])
        try:
            if file_sha256(source) != expected:
                raise ProjectError(
                    f"{source} no longer matches the run's prompt file (sha256 differs); "
                    "train again to recreate it"
                )
            destination.parent.mkdir(parents=True, exist_ok=True)
            partial = destination.with_name(destination.name + ".partial")
            shutil.copyfile(source, partial)
            partial.replace(destination)
        except OSError as err:
            raise ProjectError(f"{destination}: the prompt file cannot be written ({err})") from err
        project.record_export(run_id, "prompt", destination.name, expected)
    return destination
