"""series_slices: the slices of the shown image's series in slice order, whatever the file order."""

from __future__ import annotations

from pathlib import Path

from series_runs import loose_ids, series_project, slice_ids

from ept_studio.services.project import series_slices


def test_series_slices_are_in_instance_order_from_any_slice(tmp_path: Path) -> None:
    with series_project(tmp_path) as project:
        ordered = slice_ids(project)
        assert len(ordered) == 4
        numbers = [project.image(image_id).instance_number for image_id in ordered]
        assert numbers == [1, 2, 3, 4]
        for image_id in ordered:
            assert series_slices(project, image_id) == tuple(ordered)
        photo = loose_ids(project)[0]
        assert series_slices(project, photo) == (photo,)
        assert series_slices(project, 999) == ()
