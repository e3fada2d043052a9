"""Series: listed the same by DICOMweb and DIMSE, and only the series picked are imported."""

from __future__ import annotations

import pytest
from orthanc_support import PASSWORD, USER, Orthanc
from phi_support import MARK, UID_ROOT

from ept_studio.services.project import (
    DimseServer,
    ImportFinished,
    PacsError,
    PacsServer,
    Project,
    image_count,
    iter_import_from_pacs,
    pacs_cache_dir,
    search_pacs,
    search_pacs_series,
)


def _servers(orthanc: Orthanc) -> list[PacsServer | DimseServer]:
    return [
        PacsServer(orthanc.dicomweb_url, "basic", USER, PASSWORD, timeout_s=10),
        DimseServer("EPTTEST", "127.0.0.1", orthanc.dicom_port, timeout_s=10),
    ]


def _series_held(orthanc: Orthanc, study_uid: str) -> dict[str, tuple[str, int]]:
    """What Orthanc itself says: each series's modality and instance count."""
    study = orthanc.rest("GET", f"/studies/{orthanc.study_id(study_uid)}").json()
    held = {}
    for series_id in study["Series"]:
        series = orthanc.rest("GET", f"/series/{series_id}").json()
        tags = series["MainDicomTags"]
        held[tags["SeriesInstanceUID"]] = (tags.get("Modality", ""), len(series["Instances"]))
    return held


def test_both_protocols_list_a_studys_series_as_orthanc_holds_them(orthanc: Orthanc) -> None:
    web, dimse = _servers(orthanc)
    study = search_pacs(web, patient=MARK, patient_id=f"{MARK}-0")[0]
    held = _series_held(orthanc, study.study_uid)
    assert len(held) == 4
    for server in (web, dimse):
        series = search_pacs_series(server, study.study_uid)
        assert {s.series_uid: (s.modality, s.instances) for s in series} == held
        assert all(s.study_uid == study.study_uid for s in series)
        assert [s.series_uid for s in series] == sorted(s.series_uid for s in series)
        assert UID_ROOT not in repr(series)


@pytest.mark.parametrize("protocol", [0, 1], ids=["dicomweb", "dimse"])
def test_only_the_series_picked_are_imported(
    orthanc: Orthanc, project: Project, protocol: int
) -> None:
    server = _servers(orthanc)[protocol]
    study = search_pacs(server, patient=MARK, patient_id=f"{MARK}-1")[0]
    series = search_pacs_series(server, study.study_uid)
    picked = {series[0].series_uid, series[2].series_uid}
    events = list(iter_import_from_pacs(project, server, [study.study_uid], series_uids=picked))
    finished = events[-1]
    assert isinstance(finished, ImportFinished)
    assert len(finished.report.added) == 2
    assert image_count(project) == 2
    gone = {series[1].series_uid, f"{UID_ROOT}.9.9"}
    with pytest.raises(PacsError, match=r"a series asked for is not on the PACS .*deleted"):
        list(iter_import_from_pacs(project, server, [study.study_uid], series_uids=gone))
    assert image_count(project) == 2
    assert len(list(pacs_cache_dir(project).iterdir())) == 2
