"""The demo project: built offline from pydicom's own DICOM test files, through the import service.

Checks the classes, counts, labels and roles, that every image decodes, that no patient is on both
sides of the split, that only the target folder (and the location index) is written, and the CLI.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from support import tiny_backbone

from ept_studio.cli import main
from ept_studio.common.errors import ProjectError
from ept_studio.data.packaged_dicom import installed_dicom_files
from ept_studio.data.render import RenderingSpec, render_file
from ept_studio.data.store import ImageFilter, Project, Role
from ept_studio.services.project import (
    ProjectTrainingSaved,
    train_on_project,
)
from ept_studio.services.project.demo import MANIFEST, create_demo_project
from ept_studio.services.project.results import run_results
from ept_studio.services.project.training import training_set

TRAIN = {"CT": 2, "MR": 2, "US": 2}
TEST = {"CT": 4, "MR": 3, "US": 5}


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_demo_project_holds_labelled_decodable_images_and_nothing_leaks_out(
    tmp_path: Path,
) -> None:
    sources = dict(installed_dicom_files())
    before = {item.source: _sha(sources[item.source]) for item in MANIFEST}
    (tmp_path / "untouched.txt").write_text("x", encoding="utf-8")
    folder, locations = tmp_path / "demo", tmp_path / "locations"
    summary = create_demo_project(folder, locations_dir=locations)
    assert summary.classes == ("CT", "MR", "US")
    assert (summary.train_counts, summary.test_counts) == (TRAIN, TEST)
    assert (summary.unlabelled, summary.total, summary.skipped) == (3, 21, ())
    assert summary.text_in_pixels == 10  # every ultrasound image: text may be burned in
    assert summary.project_folder == folder / "project"
    # Only the target folder and the location index were written; the packages were not.
    outside = {p for p in _files(tmp_path) if not p.is_relative_to(folder)}
    assert {p.relative_to(tmp_path).as_posix() for p in outside} == {"untouched.txt"} | {
        f"locations/{p.name}" for p in _files(locations)
    }
    assert {_sha(sources[item.source]) for item in MANIFEST} == set(before.values())
    copies = sorted(p for p in _files(summary.images_folder) if p.suffix == ".dcm")
    assert len(copies) == 21
    assert {_sha(p) for p in copies} == set(before.values())  # 21 distinct files, copied as is
    with Project.open(summary.project_folder, locations_dir=locations) as project:
        images = project.images()
        assert len(images) == 21
        assert {i.modality for i in images} == {"CT", "MR", "US"}
        classes = {c.id: c.name for c in project.labels.classes()}
        for label in project.labels.all():
            assert classes[label.class_id] == project.image(label.image_id).modality
        assert len(project.images(ImageFilter(role=Role.TEST))) == 12
        unlabelled = project.images(ImageFilter(unlabelled=True))
        assert {i.modality for i in unlabelled} == {"US"}
        for image in images:
            assert image.path is not None
            assert image.path.is_relative_to(summary.images_folder)
            pixels = render_file(image.path, RenderingSpec())
            assert pixels.ndim == 3
            assert pixels.shape[2] == 3
            assert float(pixels.std()) > 1.0, image.path.name
        assert len(list(project.thumbnails_dir.glob("*.png"))) == 21
        tset = training_set(project)
        assert len(tset.items) == 18
        assert tset.patients_in_both_roles() == 0
    again = create_demo_project(folder, locations_dir=locations, exist_ok=True)
    assert (again.train_counts, again.test_counts, again.unlabelled) == (TRAIN, TEST, 3)
    with pytest.raises(ProjectError, match="already holds a demo project"):
        create_demo_project(folder, locations_dir=locations)


def test_the_demo_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EPT_STUDIO_DATA", str(tmp_path / "data"))
    assert main(["demo", "create", str(tmp_path / "headless"), "--no-thumbnails"]) == 0
    out = capsys.readouterr().out
    assert "CT: 2 train, 4 test" in out
    assert "unlabelled: 3" in out
    assert (tmp_path / "headless" / "project" / "project.db").is_file()
    opened: list[Path | None] = []

    def fake_app(open_folder: Path | None = None) -> int:
        opened.append(open_folder)
        return 0

    monkeypatch.setattr("ept_studio.cli._run_desktop_app", fake_app)
    assert main(["--demo"]) == 0
    assert opened == [tmp_path / "data" / "demo" / "project"]
    assert main(["--demo"]) == 0  # the second time it is opened, not rebuilt
    assert main(["--demo", str(tmp_path / "headless")]) == 0
    assert opened[1:] == [opened[0], tmp_path / "headless" / "project"]
    assert {p.name for p in (tmp_path / "data").iterdir()} == {"demo", "locations"}


def test_the_demo_trains_and_its_results_are_scored(tmp_path: Path) -> None:
    locations = tmp_path / "locations"
    summary = create_demo_project(tmp_path / "demo", locations_dir=locations, thumbnails=False)
    events = list(
        train_on_project(
            summary.project_folder,
            {"method": "ept", "length": 4},
            {"epochs": 1, "batch_size": 6, "device": "cpu"},
            backbone=tiny_backbone(),
            locations_dir=locations,
        )
    )
    saved = events[-1]
    assert isinstance(saved, ProjectTrainingSaved)
    results = run_results(summary.project_folder, saved.run_id, locations_dir=locations)
    assert (results.classes, results.evaluated, results.unlabelled) == (("CT", "MR", "US"), 12, 0)
    assert results.scores is not None
    assert [c.support for c in results.scores.per_class] == [4, 3, 5]
    assert not any("patients appear" in w for w in results.warnings)


@pytest.mark.slow
def test_each_class_trains_on_its_two_most_typical_images_on_the_offline_backbone() -> None:
    import torch
    import torch.nn.functional as F

    from ept_studio.core.backbones import load_backbone
    from ept_studio.core.methods import LinearConfig
    from ept_studio.core.model import TunedModel
    from ept_studio.core.training.prototype import nearest_centroid_predict, support_features
    from ept_studio.services.model.images import load_images

    installed = dict(installed_dicom_files())
    labelled = [item for item in MANIFEST if item.role is not None and item.source in installed]
    images, skipped = load_images([installed[item.source] for item in labelled])
    assert not skipped
    loaded = load_backbone()
    spec = loaded.spec
    model = TunedModel(loaded.model, LinearConfig(), 3)
    features = support_features(
        model, [i.pixels for i in images], input_size=spec.input_size, mean=spec.mean, std=spec.std
    )
    classes = sorted({item.class_name for item in labelled})
    targets = torch.tensor([classes.index(item.class_name) for item in labelled])
    means = torch.stack([features[targets == c].mean(0) for c in range(len(classes))])
    centre = means.mean(0)
    typical = F.normalize(features - centre, dim=-1) @ F.normalize(means - centre, dim=-1).T
    for c, name in enumerate(classes):
        members = [i for i, item in enumerate(labelled) if item.class_name == name]
        top_two = sorted(members, key=lambda i: -float(typical[i, c]))[:2]
        train = [i for i in members if labelled[i].role is Role.TRAIN]
        assert sorted(top_two) == train, name
    train = torch.tensor([item.role is Role.TRAIN for item in labelled])
    predicted = nearest_centroid_predict(features[train], targets[train], features[~train])
    assert int((predicted == targets[~train]).sum()) == 5  # of 12; the smallest files gave 3
