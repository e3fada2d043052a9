"""A demo project a new user can take through the whole flow in minutes, built offline.

The images are real, de-identified DICOM test files that ship inside the installed ``pydicom`` and
``pydicom-data`` packages (MIT). They are *copied* (never modified in place, nothing is written
into site-packages) into a folder next to the project, then imported through the normal import
service, so the demo exercises the same decoding, hashing and labelling as a user's own images::

    <folder>/
      project/              the EPT Studio project (project.db, runs/, cache/)
      demo-images/
        README.txt          where each copy comes from, and the licence
        train/<class>/...   labelled, train role (2 per class: a 2-shot task)
        test/<class>/...    labelled, test role (the rest of each class, for evaluation)
        unlabelled/...      imported without a label, to try labelling and inference on

The images sit beside the project, not inside it, because the import never reads the project's own
folder (it holds caches and must stay free of anything from the sources).

The task is the imaging modality: CT, MR or ultrasound (US). The files were chosen from pydicom
3.0.2 / pydicom-data 1.0.0 so that no picture appears twice (pydicom ships many images in several
encodings) and so that no patient ID is on both the train and the test side: 2 train and 3-5 test
images per class, and 3 ultrasound images left unlabelled (21 images in all). The 2 training
images of a class are its most typical: the two nearest (centred cosine on the offline backbone's
frozen features) to the mean of all its labelled images. With the first choice (the smallest
files) the nearest-centroid classifier and EPT scored 3 of 12 test images, below chance; the
median over the 660 patient-disjoint choices of 2 a class is 6 of 12, and this one gives 5.
Projection X-ray is left out: only 2 distinct images ship. It is a pipeline demonstration, not a
benchmark: the test set is tiny and modality shows in trivial cues (ultrasound is mostly colour),
and the results view says so. Files missing from an older or newer package version are left out
and listed in :attr:`DemoSummary.skipped`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import platformdirs

from ept_studio import RESEARCH_USE_NOTICE
from ept_studio.common.errors import DatasetError, ProjectError
from ept_studio.data.packaged_dicom import installed_dicom_files
from ept_studio.data.store import DB_NAME, LOCATIONS_ENV, ImageFilter, Project, Role
from ept_studio.services.project.importing import ImportReport, import_paths
from ept_studio.services.project.project_meta import is_demo_project, mark_demo_project

PROJECT_DIR = "project"
IMAGES_DIR = "demo-images"
CLASSES = ("CT", "MR", "US")
UNLABELLED = "unlabelled"
_TEXT_MODALITIES = frozenset({"US", "SC", "XC", "OT", "DOC"})


@dataclasses.dataclass(frozen=True)
class DemoImage:
    """One demo file: where it ships (package-relative), its class and its role (None: unlabelled)."""

    source: str
    class_name: str
    role: Role | None


_T, _Q = Role.TRAIN, Role.TEST
MANIFEST: tuple[DemoImage, ...] = (
    DemoImage("pydicom/test_files/CT_small.dcm", "CT", _Q),
    DemoImage("data_store/data/explicit_VR-UN.dcm", "CT", _Q),
    DemoImage("pydicom/test_files/J2K_pixelrep_mismatch.dcm", "CT", _T),
    DemoImage("data_store/data/693_J2KR.dcm", "CT", _T),
    DemoImage("data_store/data/bad_sequence.dcm", "CT", _Q),
    DemoImage("data_store/data/eCT_Supplemental.dcm", "CT", _Q),
    DemoImage("pydicom/test_files/MR_small.dcm", "MR", _Q),
    DemoImage("data_store/data/emri_small.dcm", "MR", _Q),
    DemoImage("data_store/data/MR2_J2KI.dcm", "MR", _Q),
    DemoImage("pydicom/test_files/examples_overlay.dcm", "MR", _T),
    DemoImage("data_store/data/MR-SIEMENS-DICOM-WithOverlays.dcm", "MR", _T),
    DemoImage("pydicom/test_files/examples_ybr_color.dcm", "US", _Q),
    DemoImage("data_store/data/gdcm-US-ALOKA-16.dcm", "US", _Q),
    DemoImage("pydicom/test_files/examples_palette.dcm", "US", _T),
    DemoImage("data_store/data/OBXXXX1A.dcm", "US", _T),
    DemoImage("data_store/data/JPGLosslessP14SV1_1s_1f_8b.dcm", "US", _Q),
    DemoImage("data_store/data/color-pl.dcm", "US", _Q),
    DemoImage("pydicom/test_files/examples_rgb_color.dcm", "US", _Q),
    DemoImage("pydicom/test_files/examples_jpeg2k.dcm", "US", None),
    DemoImage("data_store/data/color3d_jpeg_baseline.dcm", "US", None),
    DemoImage("pydicom/test_files/ExplVR_BigEnd.dcm", "US", None),
)
"""The demo's files, in import order. Patients never cross train / test (see the module doc)."""


@dataclasses.dataclass(frozen=True)
class DemoSummary:
    """What the demo holds: where, classes, labelled images per class and role, what is missing."""

    folder: Path
    project_folder: Path
    images_folder: Path
    classes: tuple[str, ...]
    train_counts: dict[str, int]
    test_counts: dict[str, int]
    unlabelled: int
    skipped: tuple[str, ...]
    """Manifest files that are not installed here or could not be imported, with the reason."""
    text_in_pixels: int
    """Images that may show burned-in text (ultrasound): a reminder that pixels can carry PHI."""

    @property
    def total(self) -> int:
        return sum(self.train_counts.values()) + sum(self.test_counts.values()) + self.unlabelled


@dataclasses.dataclass(frozen=True)
class DemoInfo:
    """What the open demo holds now (the user may have changed its labels): for its notes."""

    classes: tuple[str, ...]
    train_counts: dict[str, int]
    test_images: int

    @property
    def train_per_class(self) -> int | None:
        """The training images of each class when every class has as many (None otherwise)."""
        counts = set(self.train_counts.values())
        return counts.pop() if len(counts) == 1 else None

    @property
    def points_per_test_image(self) -> float | None:
        """How many accuracy points one test image is worth (None without test images)."""
        return 100 / self.test_images if self.test_images else None


def demo_info(project: Project) -> DemoInfo | None:
    """The demo's classes and counts, or None when ``project`` is not the demo."""
    if not is_demo_project(project):
        return None
    counts = project.labels.counts_per_class()
    return DemoInfo(
        classes=tuple(c.name for c in counts),
        train_counts={c.name: c.train for c in counts},
        test_images=sum(c.test for c in counts),
    )


def default_demo_folder() -> Path:
    """Where ``ept-studio --demo`` puts the demo: ``$EPT_STUDIO_DATA/demo`` or the user data dir."""
    override = os.environ.get(LOCATIONS_ENV)
    base = Path(override) if override else platformdirs.user_data_path("ept-studio")
    return base / "demo"


def create_demo_project(
    folder: Path,
    *,
    locations_dir: Path | None = None,
    exist_ok: bool = False,
    thumbnails: bool = True,
) -> DemoSummary:
    """Build the demo in ``folder`` (see the module docstring) and return what it holds.

    With ``exist_ok`` a demo already in ``folder`` is opened and summarised, not rebuilt. Only
    ``folder`` is written, plus the project's location index in ``locations_dir`` (by default
    the user's data folder, as for every project).
    """
    folder = Path(folder).absolute()
    project_folder = folder / PROJECT_DIR
    if (project_folder / DB_NAME).exists():
        if not exist_ok:
            raise ProjectError(f"{folder} already holds a demo project; open {project_folder}")
        with Project.open(project_folder, locations_dir=locations_dir) as project:
            return _summary(folder, project, ())
    available, skipped = _available()
    images = _copy(available, folder / IMAGES_DIR)
    with Project.create(project_folder, "single", locations_dir=locations_dir) as project:
        reports = _import(project, images, thumbnails)
        mark_demo_project(project)
        skipped += [f"{path.name}: {reason}" for r in reports for path, reason in r.skipped]
        return _summary(folder, project, tuple(skipped))


def _available() -> tuple[list[tuple[DemoImage, Path]], list[str]]:
    """The manifest files installed here; fails before writing anything if a class lacks a role."""
    installed = dict(installed_dicom_files())
    available = [(item, installed[item.source]) for item in MANIFEST if item.source in installed]
    skipped = [f"{item.source}: not installed" for item in MANIFEST if item.source not in installed]
    for name in CLASSES:
        roles = {item.role for item, _ in available if item.class_name == name}
        if not {Role.TRAIN, Role.TEST} <= roles:
            raise DatasetError(
                f"the demo needs pydicom's sample files: too few {name} images are installed "
                "(install pydicom and pydicom-data)"
            )
    return available, skipped


def _copy(available: list[tuple[DemoImage, Path]], images: Path) -> Path:
    """Copy each file to ``images/<role>/<class>/<class>-NN.dcm`` and write the README."""
    numbers = dict.fromkeys(CLASSES, 0)
    lines = [
        "EPT Studio demo images: copies of de-identified DICOM test files that ship with the",
        "pydicom and pydicom-data packages (MIT licence). Labels: the Modality tag.",
        RESEARCH_USE_NOTICE,
        "",
    ]
    try:
        for item, source in available:
            numbers[item.class_name] += 1
            name = f"{item.class_name.lower()}-{numbers[item.class_name]:02d}.dcm"
            where = (
                Path(UNLABELLED) if item.role is None else Path(item.role.value) / item.class_name
            )
            target = images / where / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            lines.append(f"{(where / name).as_posix()}  <-  {item.source}")
        (images / "README.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    except OSError as err:
        raise ProjectError(f"{images}: the demo images cannot be written ({err})") from err
    return images


def _import(project: Project, images: Path, thumbnails: bool) -> list[ImportReport]:
    """Train and test folders as classes (test images then moved to the test role), then the rest."""
    train, test = (
        import_paths(project, [images / role.value], folders_as_classes=True, thumbnails=thumbnails)
        for role in (Role.TRAIN, Role.TEST)
    )
    project.labels.set_role([image_id for _, image_id in test.added], Role.TEST)
    reports = [train, test]
    if (images / UNLABELLED).is_dir():
        reports.append(import_paths(project, [images / UNLABELLED], thumbnails=thumbnails))
    return reports


def _summary(folder: Path, project: Project, skipped: tuple[str, ...]) -> DemoSummary:
    counts = project.labels.counts_per_class()
    images = project.images()
    return DemoSummary(
        folder=folder,
        project_folder=project.folder,
        images_folder=folder / IMAGES_DIR,
        classes=tuple(c.name for c in project.labels.classes()),
        train_counts={c.name: c.train for c in counts},
        test_counts={c.name: c.test for c in counts},
        unlabelled=len(project.images(ImageFilter(unlabelled=True))),
        skipped=skipped,
        text_in_pixels=sum(
            1 for i in images if i.burned_in_annotation or i.modality in _TEXT_MODALITIES
        ),
    )
