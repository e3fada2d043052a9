"""A project's life as a folder: name it, create it, open it, export its prompt file and its key.

The store itself is :class:`ept_studio.data.store.Project` (classes, labels, undo / redo, runs);
importing is :mod:`ept_studio.services.project.importing`, training
:mod:`ept_studio.services.project.training`; :mod:`ept_studio.services.project` gathers them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ept_studio.common.errors import ProjectError
from ept_studio.common.files import file_sha256
from ept_studio.data.project_key import (
    ProjectKey,
    ProjectKeyError,
    ProjectKeyMissingError,
    missing_key_message,
    read_key_file,
    write_key_file,
)
from ept_studio.data.store import (
    DB_NAME,
    LabelMode,
    Project,
    refuse_occupied_folder,
)

PROJECTS_FOLDER_NAME = "EPT Studio projects"
_FORBIDDEN_IN_NAMES = frozenset('<>:"/\\|?*')
"""Characters no folder name may hold on Windows (and ``/`` nowhere): refused on every system,
so that a project can be copied between machines."""
MAX_NAME_LENGTH = 100


def create_project(
    folder: Path, label_mode: LabelMode | str = "single", *, locations_dir: Path | None = None
) -> Project:
    """A new project in ``folder`` (created; an existing folder must be empty).

    Close it (or use it in a ``with`` block) when done. A folder holding other files, such as the
    user's images, is refused with the reason: the project's database and caches would mix with
    them.
    """
    return Project.create(folder, label_mode, locations_dir=locations_dir)


def default_projects_parent() -> Path:
    """Where new projects go unless the user picks another place: a folder in their home."""
    return Path.home() / PROJECTS_FOLDER_NAME


def new_project_folder(parent: Path, name: str) -> Path:
    """The folder a project called ``name`` gets inside ``parent``; refused with the reason when
    the name cannot be a folder name or that folder already holds files."""
    name = name.strip()
    if not name:
        raise ProjectError("Give the project a name")
    bad = sorted({c for c in name if c in _FORBIDDEN_IN_NAMES or ord(c) < 32})
    if bad:
        shown = " ".join(c if ord(c) >= 32 else "a control character" for c in bad)
        raise ProjectError(f"A project name cannot hold {shown}; use letters, digits, - or _")
    if name in {".", ".."} or name.endswith("."):
        raise ProjectError("A project name cannot end with a dot")
    if len(name) > MAX_NAME_LENGTH:
        raise ProjectError(f"Shorten the project name to at most {MAX_NAME_LENGTH} characters")
    if not str(parent).strip():
        raise ProjectError("Choose where the project folder goes")
    folder = Path(parent).expanduser().absolute() / name
    refuse_occupied_folder(folder)
    return folder


def is_project_folder(folder: Path) -> bool:
    """Whether ``folder`` holds an EPT Studio project (its database), without opening it."""
    return (Path(folder) / DB_NAME).is_file()


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


def export_project_key(project: Project, destination: Path) -> Path:
    """Write the project's patient key to ``destination``, to carry it to another machine.

    The file is the secret that turns a guessed PatientID into the hash stored in the project, so
    it never goes into the project folder (which is meant to be shared): keep it apart, pass it on
    only to whoever may add this project's patients, and delete it once imported.
    """
    if project.key is None:
        raise ProjectKeyMissingError(missing_key_message(project.project_id))
    destination = Path(destination).absolute()
    if destination.resolve().is_relative_to(project.folder.resolve()):
        raise ProjectKeyError(
            f"{destination}: save the patient key outside the project folder; whoever holds "
            "both could confirm a guessed patient ID"
        )
    write_key_file(destination, project.key)
    return destination


def import_project_key(project: Project, source: Path) -> ProjectKey:
    """Keep the project's patient key from ``source`` (an exported key file) on this machine.

    From then on a new image of a patient already in the project gets the same patient hash, so
    the train / test split keeps that patient on one side.
    """
    key = read_key_file(Path(source), project.project_id)
    project.adopt_key(key)
    return key
