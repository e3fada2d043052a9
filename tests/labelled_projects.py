"""Projects labelled class by class, with patients: for the Train tab's checklist, plan and split.

Each class is a folder of real files imported with folders-as-classes: a CT slice (pydicom's
``CT_small.dcm``) re-saved with the patient ID given, so the import hashes it as it does any DICOM;
a ``None`` patient is a PNG crop of a fundus photograph, which carries no patient.
:func:`write_series` writes a multi-slice series of such CT slices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pydicom
import skimage.data
from PIL import Image
from pydicom.uid import generate_uid
from support import tiny_backbone

from ept_studio.services.model.training_options import TrainingOptions
from ept_studio.services.project import Project, ProjectTrainingSaved, Role, import_paths
from ept_studio.services.project.tuning import tune_project

CT_SMALL = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"

Layout = Mapping[str, Sequence[str | None]]
"""Class name -> the patient of each of its images (None: an image without a patient)."""


def write_layout(root: Path, layout: Layout, seed: int = 0) -> Path:
    """``root/<class>/imgNN.dcm|png``, one file per entry of ``layout``, all different pixels
    (CT slices differ in their first row, so none is another's twin)."""
    rng = np.random.default_rng(seed)
    retina = skimage.data.retina()
    serial = 0
    for name, patients in layout.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for index, patient in enumerate(patients):
            if patient is None:
                top, left = rng.integers(0, retina.shape[0] - 64, size=2)
                crop = retina[top : top + 64, left : left + 64]
                Image.fromarray(crop).save(folder / f"img{index:02d}.png")
            else:
                dataset = pydicom.dcmread(CT_SMALL)
                dataset.PatientID = patient
                dataset.SOPInstanceUID = generate_uid()
                dataset.SeriesInstanceUID = generate_uid()  # each file a series of its own
                serial += 1
                pixels = dataset.pixel_array.copy()
                pixels[0, :serial] += 7  # each file its own pixels
                dataset.PixelData = pixels.tobytes()
                dataset.save_as(folder / f"img{index:02d}.dcm")
    return root


def write_series(
    folder: Path, slices: int, *, patient: str = "P1", first: int = 1, seed: int = 0
) -> list[Path]:
    """``folder/sliceNN.dcm``: one new series of ``slices`` CT slices of ``patient`` (one study),
    InstanceNumber ``first``.. in order but written in reverse file order, each its own pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    paths = []
    for index in reversed(range(slices)):
        dataset = pydicom.dcmread(CT_SMALL)
        dataset.PatientID = patient
        dataset.StudyInstanceUID = study
        dataset.SeriesInstanceUID = series
        dataset.SOPInstanceUID = generate_uid()
        dataset.InstanceNumber = first + index
        pixels = dataset.pixel_array.copy()
        pixels[1, : 1 + index + seed * slices] += 11
        dataset.PixelData = pixels.tobytes()
        path = folder / f"slice{index:02d}.dcm"
        dataset.save_as(path)
        paths.append(path)
    return paths


def labelled_project(
    tmp_path: Path, layout: Layout, test: Sequence[str] = (), label_mode: str = "single"
) -> Project:
    """A new project with ``layout`` imported and labelled; files named in ``test`` (``class/imgNN``)
    get the test role. The caller closes the project."""
    root = write_layout(tmp_path / "data", layout)
    project = Project.create(tmp_path / "project", label_mode, locations_dir=tmp_path / "locations")
    import_paths(project, [root], folders_as_classes=True, thumbnails=False)
    if test:
        ids = [i.id for i in project.images() if _short_name(i.path) in set(test)]
        project.labels.set_role(ids, Role.TEST)
    return project


def _short_name(path: Path | None) -> str:
    return "" if path is None else f"{path.parent.name}/{path.stem}"


def roles_by_patient(project: Project) -> dict[str, set[Role]]:
    """Each patient hash -> the roles its labelled images have."""
    roles = {label.image_id: label.role for label in project.labels.all()}
    found: dict[str, set[Role]] = {}
    for image in project.images():
        if image.patient_hash and image.id in roles:
            found.setdefault(image.patient_hash, set()).add(roles[image.id])
    return found


def role_counts(project: Project) -> dict[str, tuple[int, int]]:
    """Class name -> (train, test) labelled images."""
    return {c.name: (c.train, c.test) for c in project.labels.counts_per_class()}


def tiny_trained_project(
    folder: Path, class_folders: Path, test_ids: slice | list[int], locations: Path | None = None
) -> int:
    """A project in ``folder`` of ``class_folders`` imported as classes, the images at positions
    ``test_ids`` in the test role, and one finished EPT run on the tiny backbone: its run id."""
    with Project.create(folder, locations_dir=locations) as project:
        import_paths(project, [class_folders], folders_as_classes=True, thumbnails=False)
        ids = [image.id for image in project.images()]
        chosen = ids[test_ids] if isinstance(test_ids, slice) else [ids[k] for k in test_ids]
        project.labels.set_role(chosen, Role.TEST)
    options = TrainingOptions(method="ept", length=4, epochs=1, batch_size=8, device="cpu")
    events = list(tune_project(folder, options, backbone=tiny_backbone(), locations_dir=locations))
    saved = events[-1]
    assert isinstance(saved, ProjectTrainingSaved), saved
    return saved.run_id
