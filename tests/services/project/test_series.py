"""Images grouped into series: by the hashed SeriesInstanceUID, slices in InstanceNumber order."""

from __future__ import annotations

from pathlib import Path

import pytest
from labelled_projects import write_layout, write_series

from ept_studio.services.project import Project, import_paths
from ept_studio.services.project.series import (
    SINGLE_IMAGE_PREFIX,
    group_series,
    project_series,
    series_by_key,
)


def test_slices_of_one_series_group_in_instance_order_and_loose_images_stand_alone(
    tmp_path: Path,
) -> None:
    write_series(tmp_path / "data" / "chest", 5, patient="P1")
    write_series(tmp_path / "data" / "head", 3, patient="P2", seed=1)
    write_layout(tmp_path / "data", {"loose": ["P3", None]})
    with Project.create(tmp_path / "p", locations_dir=tmp_path / "loc") as project:
        import_paths(project, [tmp_path / "data"], thumbnails=False)
        series = project_series(project)
        sizes = sorted(s.slice_count for s in series)
        assert sizes == [1, 1, 3, 5]
        chest = next(s for s in series if s.slice_count == 5)
        assert [image.instance_number for image in chest.images] == [1, 2, 3, 4, 5]
        assert chest.representative.instance_number == 3
        assert chest.modality == "CT"
        assert not chest.is_single_image
        assert len({image.patient_hash for image in chest.images}) == 1
        png = next(s for s in series if s.images[0].kind == "image")
        assert png.is_single_image
        assert png.key == f"{SINGLE_IMAGE_PREFIX}{png.images[0].id}"
        assert series_by_key(project, [chest.key])[0].image_ids == chest.image_ids
        with pytest.raises(KeyError, match="1 series not in this project"):
            series_by_key(project, ["no-such-series"])
        # Two middles: the first is shown.
        head = next(s for s in series if s.slice_count == 3)
        two = group_series(head.images[:2])
        assert two[0].representative.instance_number == 1
