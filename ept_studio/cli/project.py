"""The project commands: ``ept-studio project new|import|remove|classes|label|role|undo|redo|list|
check|runs|export|export-key|import-key`` (``search-pacs|import-pacs``: :mod:`ept_studio.cli.pacs`;
``ept-studio train --project``: :mod:`ept_studio.cli.training`).

Images are named by their id in the project (``project list`` shows ids, status and files).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ept_studio import RESEARCH_USE_NOTICE
from ept_studio.cli.console import Console
from ept_studio.cli.pacs import add_pacs_commands
from ept_studio.common.errors import ConfigError
from ept_studio.common.files import check_output_file, display_path

EXPORTED_MODEL_NAME = "model.onnx"


def add_commands(commands: Any) -> None:
    """Register ``project`` and its sub-commands."""
    project = commands.add_parser("project", help="create, fill and label a project")
    sub = project.add_subparsers(dest="project_command", required=True)
    new = sub.add_parser("new", help="create a project folder")
    new.add_argument("folder", type=Path)
    new.add_argument("--multi-label", action="store_true", help="several classes per image")
    new.set_defaults(handler=run_new)
    add = sub.add_parser("import", help="add image files and folders (recursively)")
    add.add_argument("folder", type=Path, help="the project folder")
    add.add_argument("paths", type=Path, nargs="+", help="files or folders to add")
    add.add_argument(
        "--folders-as-classes",
        action="store_true",
        help="each sub-folder of a given folder is a class: label its images with it",
    )
    add.add_argument("--no-thumbnails", action="store_true", help="do not cache thumbnails")
    add.set_defaults(handler=run_import)
    remove = sub.add_parser(
        "remove",
        help="take images (by id) out of the project; the files on your disk stay where they are",
    )
    remove.add_argument("folder", type=Path, help="the project folder")
    remove.add_argument("ids", type=int, nargs="+", help="image ids (see `project list`)")
    remove.set_defaults(handler=run_remove)
    classes = sub.add_parser("classes", help="list the classes, or add one")
    classes.add_argument("folder", type=Path)
    classes.add_argument("--add", metavar="NAME", help="add a class with this name")
    classes.add_argument("--shortcut", help="keyboard shortcut of the added class")
    classes.set_defaults(handler=run_classes)
    label = sub.add_parser("label", help="label images (by id) with a class, or clear them")
    label.add_argument("folder", type=Path)
    label.add_argument("ids", type=int, nargs="+")
    target = label.add_mutually_exclusive_group(required=True)
    target.add_argument("--class", dest="class_name", help="the class name")
    target.add_argument("--clear", action="store_true", help="remove every label")
    label.add_argument("--role", choices=("train", "test"))
    label.set_defaults(handler=run_label)
    role = sub.add_parser("role", help="move labelled images to the train or test role")
    role.add_argument("folder", type=Path)
    role.add_argument("role", choices=("train", "test"))
    role.add_argument("ids", type=int, nargs="+")
    role.set_defaults(handler=run_role)
    for name, helptext in (("undo", "undo the last label change"), ("redo", "redo it")):
        step = sub.add_parser(name, help=helptext)
        step.add_argument("folder", type=Path)
        step.set_defaults(handler=run_undo if name == "undo" else run_redo)
    _add_reading_commands(sub)
    add_pacs_commands(sub, _show_report)


def _add_reading_commands(sub: Any) -> None:
    listing = sub.add_parser("list", help="the images with their labels and status")
    listing.add_argument("folder", type=Path)
    listing.add_argument("--status", choices=("ok", "missing", "changed", "unreadable"))
    listing.set_defaults(handler=run_list)
    check = sub.add_parser("check", help="find missing and changed source files")
    check.add_argument("folder", type=Path)
    check.set_defaults(handler=run_check)
    runs = sub.add_parser("runs", help="the training runs of the project")
    runs.add_argument("folder", type=Path)
    runs.set_defaults(handler=run_runs)
    export = sub.add_parser("export", help="copy a run's prompt file out of the project")
    export.add_argument("folder", type=Path)
    export.add_argument("run", type=int, help="run id (see `project runs`)")
    export.add_argument("out", type=Path, help="the prompt file to write (.safetensors)")
    export.set_defaults(handler=run_export)
    predict = sub.add_parser(
        "predict", help="score every image of the project with an exported ONNX model"
    )
    predict.add_argument("folder", type=Path)
    predict.add_argument("--onnx", type=Path, required=True, help="the exported model")
    predict.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    predict.add_argument("--batch-size", type=int, default=8)
    predict.add_argument(
        "--per-series",
        action="store_true",
        help="also give one prediction per DICOM series, from its slices' scores",
    )
    predict.add_argument(
        "--aggregate",
        choices=("mean", "max"),
        default="mean",
        help="with --per-series: mean of the slices' scores (default), or max for 'is the "
        "finding present anywhere' questions",
    )
    predict.add_argument(
        "--csv",
        type=Path,
        help="with --per-series: write the per-series rows to this CSV file (a README beside it)",
    )
    predict.set_defaults(handler=run_predict)
    _add_key_commands(sub)


def _add_key_commands(sub: Any) -> None:
    export_key = sub.add_parser(
        "export-key",
        help="write the project's patient key to a file, to carry it to another machine",
    )
    export_key.add_argument("folder", type=Path)
    export_key.add_argument("file", type=Path, help="the key file to write (outside the project)")
    export_key.set_defaults(handler=run_export_key)
    import_key = sub.add_parser(
        "import-key",
        help="keep the project's patient key (an exported key file) on this machine",
    )
    import_key.add_argument("folder", type=Path)
    import_key.add_argument("file", type=Path, help="the key file made by export-key")
    import_key.set_defaults(handler=run_import_key)


def run_new(args: argparse.Namespace, console: Console) -> None:
    from ept_studio.services.project import Project

    mode = "multi" if args.multi_label else "single"
    with Project.create(args.folder, mode):
        pass
    console.line(f"created a {mode}-label project in {args.folder}")
    console.note(
        "its patient key stays on this machine, not in the project folder: to add DICOM images "
        "on another machine, carry it with `ept-studio project export-key` / `import-key`"
    )
    console.note(RESEARCH_USE_NOTICE)


def run_import(args: argparse.Namespace, console: Console) -> None:
    from ept_studio.services.project import (
        ImportFinished,
        Project,
        iter_import,
        missing_key_message,
    )

    with Project.open(args.folder) as project:
        events = iter_import(
            project,
            args.paths,
            folders_as_classes=args.folders_as_classes,
            thumbnails=not args.no_thumbnails,
        )
        without_key = None if project.has_key else missing_key_message(project.project_id)
        for event in events:
            if isinstance(event, ImportFinished):
                _show_report(event.report, console, without_key)
            else:
                console.progress(event.done, event.total, "files")


def _show_report(report: Any, console: Console, without_key: str | None = None) -> None:
    """The import's outcome; files refused for want of the patient key are told once, as one."""
    unmatched = [path for path, reason in report.skipped if reason == without_key]
    for path, reason in report.skipped:
        if reason != without_key:
            console.note(f"skipped {display_path(path)}: {reason}")
    if unmatched:
        images = "1 DICOM image" if len(unmatched) == 1 else f"{len(unmatched)} DICOM images"
        console.note(f"{images} not imported: {without_key}")
    for path, image_id in report.changed:
        shown = display_path(path)
        console.note(f"changed since it was added (image {image_id} flagged): {shown}")
    for name, count in sorted(report.labelled.items()):
        console.line(f"labelled {count} images {name!r}")
    if report.text_in_pixels:
        console.note(
            f"{len(report.text_in_pixels)} images may show text burned into their pixels "
            "(burned-in annotation, ultrasound or screen capture): check them for patient details"
        )
    console.line(
        f"added {len(report.added)}, duplicates {len(report.duplicates)}, relinked "
        f"{len(report.relinked)}, changed {len(report.changed)}, skipped {len(report.skipped)}"
    )


def run_remove(args: argparse.Namespace, console: Console) -> None:
    """``project remove FOLDER ID ...``: the images and their labels go; the user's files stay."""
    from ept_studio.services.project import Project, remove_from_project

    with Project.open(args.folder) as project:
        deleted = remove_from_project(project, args.ids)
    count = len(set(args.ids))
    console.line(f"{count} {_images(count)} taken out of the project, with their labels")
    copies = "copy" if len(deleted) == 1 else "copies"
    console.line(
        f"{len(deleted)} PACS {copies} deleted (made by the PACS import in the project's own "
        "folder, and used by no image left)"
    )
    console.line("the files you imported from your disk are not deleted: they stay where they are")


def _images(count: int) -> str:
    return "image" if count == 1 else "images"


def run_classes(args: argparse.Namespace, console: Console) -> None:
    from ept_studio.services.project import Project

    with Project.open(args.folder) as project:
        if args.add:
            project.labels.add_class(args.add, shortcut=args.shortcut)
        counts = {c.class_id: c for c in project.labels.counts_per_class()}
        for cls in project.labels.classes():
            count = counts[cls.id]
            key = f" [{cls.shortcut}]" if cls.shortcut else ""
            console.line(
                f"{cls.position:>3} {cls.name}{key}  {count.train} train, {count.test} test"
            )


def run_label(args: argparse.Namespace, console: Console) -> None:
    from ept_studio.common.errors import ProjectError
    from ept_studio.services.project import Project

    with Project.open(args.folder) as project:
        class_id = None
        if not args.clear:
            found = project.labels.class_by_name(args.class_name)
            if found is None:
                names = ", ".join(c.name for c in project.labels.classes()) or "none yet"
                raise ProjectError(
                    f"there is no class {args.class_name!r} (classes: {names}); add it with "
                    "`ept-studio project classes FOLDER --add NAME`"
                )
            class_id = found.id
        changed = project.labels.set_label(args.ids, class_id, role=args.role)
    console.line(f"{len(changed)} images changed")


def run_role(args: argparse.Namespace, console: Console) -> None:
    from ept_studio.services.project import Project

    with Project.open(args.folder) as project:
        changed = project.labels.set_role(args.ids, args.role)
    console.line(f"{len(changed)} images moved to {args.role}")


def run_undo(args: argparse.Namespace, console: Console) -> None:
    from ept_studio.services.project import Project

    with Project.open(args.folder) as project:
        touched = project.labels.undo()
    console.line(f"undone: {len(touched)} images" if touched else "nothing to undo")


def run_redo(args: argparse.Namespace, console: Console) -> None:
    from ept_studio.services.project import Project

    with Project.open(args.folder) as project:
        touched = project.labels.redo()
    console.line(f"redone: {len(touched)} images" if touched else "nothing to redo")


def run_list(args: argparse.Namespace, console: Console) -> None:
    from ept_studio.services.project import ImageFilter, ImageStatus, Project

    with Project.open(args.folder) as project:
        names = {c.id: c.name for c in project.labels.classes()}
        labels: dict[int, list[str]] = {}
        for label in project.labels.all():
            labels.setdefault(label.image_id, []).append(
                f"{names[label.class_id]}:{label.role.value}"
            )
        status = ImageStatus(args.status) if args.status else None
        for image in project.images(ImageFilter(status=status)):
            size = f"{image.columns}x{image.rows}" + (
                f"x{image.frames}" if image.frames > 1 else ""
            )
            kind = image.modality or image.kind
            shown = ",".join(labels.get(image.id, [])) or "-"
            where = str(image.path) if image.path else "(not found on this machine)"
            console.line(
                f"{image.id:>6} {image.status.value:<10} {kind:<6} {size:<12} {shown}  {where}"
            )


def run_check(args: argparse.Namespace, console: Console) -> None:
    from ept_studio.services.project import Project, missing_or_changed

    with Project.open(args.folder) as project:
        counts = missing_or_changed(project)
    console.line(", ".join(f"{count} {status}" for status, count in counts.items()))


def run_runs(args: argparse.Namespace, console: Console) -> None:
    from ept_studio.services.project import Project

    with Project.open(args.folder) as project:
        for run in project.runs():
            method = run.config.get("method", {}).get("method", "?")
            metrics = " ".join(f"{k}={v:.3f}" for k, v in sorted(run.metrics.items()))
            console.line(f"{run.id:>4} {run.created} {run.status:<9} {method:<6} {metrics}")


def run_export(args: argparse.Namespace, console: Console) -> None:
    from ept_studio.services.project import export_prompt_file

    check_output_file(args.out, "prompt file")
    out = export_prompt_file(args.folder, args.run, args.out)
    console.line(f"prompt file       {display_path(out)}")
    console.note(RESEARCH_USE_NOTICE)


def run_export_key(args: argparse.Namespace, console: Console) -> None:
    from ept_studio.services.project import Project, export_project_key

    with Project.open(args.folder) as project:
        written = export_project_key(project, args.file)
    console.line(f"patient key       {written}")
    console.note(
        "keep this file apart from the project: with both, a guessed patient ID can be checked. "
        "Import it on the other machine with `ept-studio project import-key`, then delete it"
    )


def run_import_key(args: argparse.Namespace, console: Console) -> None:
    from ept_studio.services.project import Project, import_project_key

    with Project.open(args.folder) as project:
        import_project_key(project, args.file)
    console.line(
        "patient key imported: new images of a patient already in the project now join that "
        "patient (same side of the train / test split). You may delete the key file"
    )


def run_predict(args: argparse.Namespace, console: Console) -> None:
    """``project predict FOLDER --onnx MODEL``: an inference run stored in the project."""
    from ept_studio.services.model import BatchPredicted, InferenceStarted, open_onnx_model
    from ept_studio.services.project import ProjectPredicted, predict_project

    if args.csv is not None:
        if not args.per_series:
            raise ConfigError("--csv writes the per-series rows: add --per-series")
        check_output_file(args.csv, "per-series predictions")
    runner = open_onnx_model(args.onnx, device=args.device)
    # The run is recorded under a neutral model name: the file name typed can carry PHI, and the
    # model's own checksum in the run record already says which model it was.
    events = predict_project(
        args.folder, runner, model_name=EXPORTED_MODEL_NAME, batch_size=args.batch_size
    )
    for event in events:
        if isinstance(event, InferenceStarted):
            for note in event.notes:
                console.note(note)
        elif isinstance(event, BatchPredicted):
            console.progress(event.done, event.total, "images")
            for failed in event.failed:
                console.note(f"skipped {display_path(failed.path)}: {failed.reason}")
        elif isinstance(event, ProjectPredicted):
            console.line(
                f"run {event.run_id}: {event.predicted} images scored, {event.failed} skipped "
                f"({runner.provider})"
            )
            if args.per_series:
                _show_series(args, event.run_id, console)
    console.note(RESEARCH_USE_NOTICE)


def _show_series(args: argparse.Namespace, run_id: int, console: Console) -> None:
    """The run's per-series predictions: a table on the console, the CSV when asked."""
    import ept_studio.services.project as project_services
    from ept_studio.services.project import Project, export_series_csv

    with Project.open(args.folder) as project:
        if args.csv is not None:
            rows = export_series_csv(project, run_id, args.csv, aggregation=args.aggregate)
            console.note(f"wrote {len(rows)} series to {display_path(args.csv)}")
        else:
            # An attribute, not ``from ... import``: import-linter would read the function as its
            # module behind the facade.
            rows = project_services.series_predictions(project, run_id, args.aggregate)
    console.line(f"per series ({args.aggregate} of the slices' scores):")
    console.line(f"{'series':>6}  {'slices':>6}  {'prediction':<24}  decisive image")
    for row in rows:
        shown = f"{row.predicted_class} {row.probability * 100:.0f} %"
        console.line(
            f"{row.series_number:>6}  {row.slice_count:>6}  {shown:<24}  {row.decisive_image_id}"
        )
