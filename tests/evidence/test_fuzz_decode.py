"""Fuzzing: mutated DICOM and PNG / JPEG / TIFF / BMP bytes render or raise ImageDecodeError,
each within 2 s. hypothesis draws the mutations (a short CI run, derandomised so that it is
repeatable); ``python -m ept_studio.evidence.fuzz_decode --inputs 10000`` is the long run."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ept_studio.evidence import fuzz_decode
from ept_studio.evidence.fuzz_decode import MUTATION_KINDS, Mutation, all_seeds, mutate, try_input

SEEDS = all_seeds()
SECONDS_EACH = 2.0

mutations = st.lists(
    st.tuples(
        st.sampled_from(MUTATION_KINDS),
        st.one_of(st.integers(0, 2047), st.integers(0, 1 << 20)),  # mostly in the headers
        st.integers(0, (1 << 16) - 1),
    ),
    min_size=1,
    max_size=4,
)


def test_the_seeds_cover_dicom_and_pillow_formats(tmp_path: Path) -> None:
    assert len(SEEDS) == 24
    kinds = {name.rsplit(".", 1)[-1] for name in SEEDS}
    assert {"dcm", "png", "jpg", "tif", "bmp"} <= kinds
    for name, data in SEEDS.items():
        outcome = try_input(tmp_path / "input", data)
        assert outcome.kind == "rendered", f"seed {name} does not render unmutated"


@settings(
    max_examples=100,
    deadline=int(SECONDS_EACH * 1000),
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=st.sampled_from(sorted(SEEDS)), changes=mutations)
@pytest.mark.filterwarnings("ignore")  # Pillow warns about the corrupt blocks it skips
def test_mutated_files_render_or_raise_the_typed_error(
    tmp_path: Path, name: str, changes: list[Mutation]
) -> None:
    outcome = try_input(tmp_path / "input", mutate(SEEDS[name], changes))
    assert outcome.kind in ("rendered", "refused"), outcome.detail
    assert outcome.seconds < SECONDS_EACH


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", sorted(SEEDS))
def test_every_seed_cut_anywhere(tmp_path: Path, name: str) -> None:
    data = SEEDS[name]
    outcomes = []
    for fraction in (0.0, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99):
        cut = mutate(data, [("truncate", int(len(data) * fraction), 0)]) if fraction else b""
        outcome = try_input(tmp_path / "input", cut)
        assert outcome.kind in ("rendered", "refused"), outcome.detail
        assert outcome.seconds < SECONDS_EACH
        outcomes.append(outcome.kind)
    assert outcomes[0] == "refused"  # empty
    assert outcomes.count("refused") >= 4


def test_mutations_do_what_they_say() -> None:
    data = bytes(range(10))
    assert mutate(data, [("flip", 3, 0)])[3] == 2
    assert mutate(data, [("set", 13, 0x1FF)])[3] == 0xFF  # positions wrap, values are bytes
    assert mutate(data, [("insert", 0, 2)]) == b"\x02\x02\x02" + data
    assert mutate(data, [("delete", 2, 1)]) == data[:2] + data[4:]
    assert mutate(data, [("truncate", 4, 0)]) == data[:4]
    assert mutate(b"", [("flip", 0, 0)]) == b""
    header = mutate(SEEDS["CT_small.dcm"], [("header", 5, 7)])  # Rows = 4096
    assert header != SEEDS["CT_small.dcm"]


def test_random_mutations_are_repeatable() -> None:
    first = fuzz_decode.random_mutations(random.Random(5), 1000)
    assert first == fuzz_decode.random_mutations(random.Random(5), 1000)
    assert 1 <= len(first) <= 4


def test_the_long_run_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert fuzz_decode.main(["--inputs", "40", "--seed", "3"]) == 0
    output = capsys.readouterr().out
    assert output.startswith("40 inputs from 24 seed files (random seed 3)")
    assert " 0 crashed" in output.splitlines()[0]
    assert "slowest input:" in output


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize(
    ("name", "changes"),
    [
        # found by the long run: an element with a broken VR, read only for the error message
        (
            "MR_small_jp2klossless.dcm",
            [
                ("header", 170, 6209),
                ("header", 1190, 63698),
                ("delete", 459, 52213),
                ("delete", 1172, 2233),
            ],
        ),
        # pylibjpeg-rle panics (a BaseException) on this RLE data
        ("MR_small_RLE.dcm", [("flip", 1832, 11994)]),
    ],
)
def test_inputs_the_long_run_found(tmp_path: Path, name: str, changes: list[Mutation]) -> None:
    outcome = try_input(tmp_path / "input", mutate(SEEDS[name], changes))
    assert outcome.kind == "refused", outcome.detail
    assert outcome.detail.startswith(("the DICOM header is damaged", "the pixel data cannot be"))
