"""An outside check of the CLI on paths that carry a patient's name: ``python packaging/phi_sweep.py``.

Every command (doctor, train on a folder, eval, predict with a prompt file and with ONNX, export,
project new / import / role / train / predict / export) runs as a user runs it, in its own
process with the log file and crash reports on, on inputs whose file and folder names hold a
marker and partly are not UTF-8, writing into output folders that do not exist yet. It holds
that every command ends in exit 0 (or exit 2 with a one-line ``error:`` where it is meant to
fail), never a traceback, and that the marker is in no file the app wrote for itself: logs,
crash reports, project.db, run records, model cards, caches. The user's own output folders may
hold it (a CSV names the files it scored), and so may the location index, which exists to keep
where the sources lie, outside the project folder.

A tiny random ViT stands in for the offline backbone (a manifest of its own in the workspace),
so the sweep takes about a minute on two cores. Exit status 1 when something is found.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

MARK = "PHIMARK Doe"
"""In every input file and folder name; never in a file the app writes for itself."""
NOT_UTF8 = os.fsdecode(b"\xff\xfe")
TINY_SIZE = 32


@dataclasses.dataclass(frozen=True)
class Step:
    """One command line, and the exit status it should end with (2: refused with a message)."""

    name: str
    argv: tuple[str, ...]
    expect: int = 0


@dataclasses.dataclass(frozen=True)
class Outcome:
    step: Step
    code: int
    problems: tuple[str, ...]


def write_tiny_backbone(models: Path) -> None:
    """A manifest whose default backbone is a tiny random ViT (32 px), with its weights file."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=TINY_SIZE, num_classes=0
    )
    models.mkdir(parents=True, exist_ok=True)
    weights = models / "tiny-vit.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    entry = {
        "name": "tiny-vit",
        "description": "a tiny random ViT for the PHI sweep",
        "timm_name": "vit_tiny_patch16_224",
        "source": {"kind": "hf-hub", "hub_id": "none/tiny-vit"},
        "weights_file": weights.name,
        "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "licence": "Apache-2.0",
        "input_size": TINY_SIZE,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "default": True,
    }
    document = {"manifest_version": 1, "backbones": [entry]}
    (models / "manifest.json").write_text(json.dumps(document, indent=2), encoding="utf-8")


def write_sources(root: Path) -> Path:
    """``root/<MARK> study/<class>/<MARK> NN.png`` (one name per class not UTF-8): real pixels."""
    import numpy as np
    import skimage.data
    from PIL import Image

    data = root / f"{MARK} study"
    rng = np.random.default_rng(0)
    sources = {"fundus": skimage.data.retina(), "histology": skimage.data.immunohistochemistry()}
    for name, image in sources.items():
        folder = data / name
        folder.mkdir(parents=True)
        side = min(image.shape[:2]) // 3
        for index in range(5):
            top, left = rng.integers(0, min(image.shape[:2]) - side, size=2)
            crop = Image.fromarray(image[top : top + side, left : left + side]).resize((64, 64))
            odd = NOT_UTF8 if index == 4 else ""
            crop.save(folder / f"{MARK} {odd}{index:02d}.png")
    return data


def steps(work: Path, data: Path) -> list[Step]:
    """Every command, outputs into folders that do not exist yet."""
    out = work / f"out {MARK}"
    prompt = out / "train" / f"{MARK}.safetensors"
    model = out / "export" / f"{MARK}.onnx"
    project = work / f"{MARK} project"
    blocked = work / f"{MARK} is a file"
    tune = ("--method", "ept", "--length", "4", "--epochs", "1", "--batch-size", "4")
    return [
        Step("doctor", ("doctor",)),
        Step("train", ("train", str(data), "--out", str(prompt), "--shots", "2", *tune)),
        Step("eval", ("eval", str(prompt), str(data))),
        Step("predict", ("predict", str(prompt), str(data), "--csv", str(out / "p" / "s.csv"))),
        Step(
            "predict-refused", ("predict", str(prompt), str(data), "--csv", f"{blocked}/s.csv"), 2
        ),
        Step("export", ("export", str(prompt), "--onnx", str(model))),
        Step(
            "predict-onnx",
            (
                "predict",
                str(data),
                "--onnx",
                str(model),
                "--csv",
                str(out / "o" / f"{MARK}.csv"),
                "--overlays",
                str(out / "overlays"),
            ),
        ),
        Step("project-new", ("project", "new", str(project))),
        Step(
            "project-import", ("project", "import", str(project), str(data), "--folders-as-classes")
        ),
        Step("project-role", ("project", "role", str(project), "test", "1", "2", "5", "6")),
        Step("project-train", ("train", "--project", str(project), *tune)),
        Step("project-predict", ("project", "predict", str(project), "--onnx", str(model))),
        Step(
            "project-export",
            ("project", "export", str(project), "1", str(out / "pe" / f"m{NOT_UTF8}.safetensors")),
        ),
        Step("project-list", ("project", "list", str(project))),
    ]


def run_step(step: Step, env: dict[str, str], cwd: Path) -> Outcome:
    done = subprocess.run(
        [sys.executable, "-m", "ept_studio", *step.argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        timeout=300,
        check=False,
    )
    err = done.stderr.decode("utf-8", errors="replace")
    problems = []
    if "Traceback" in err:
        problems.append("a traceback on stderr")
    if done.returncode != step.expect:
        problems.append(f"exit {done.returncode}, expected {step.expect}: {err.strip()[-300:]}")
    elif done.returncode == 2 and not err.strip().splitlines()[-1].startswith("error: "):
        problems.append("exit 2 without a one-line 'error:' message")
    return Outcome(step, done.returncode, tuple(problems))


def leaks(roots: Sequence[Path], allowed: Sequence[Path]) -> list[str]:
    """Files under ``roots`` (none under ``allowed``) whose bytes or name hold the marker."""
    marker = MARK.encode()
    found = []
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            if any(path.is_relative_to(a) for a in allowed):
                continue
            if marker in path.read_bytes() or MARK in str(path.relative_to(root)):
                found.append(str(path.relative_to(root.parent)))
    return found


def sweep(work: Path) -> tuple[list[Outcome], list[str]]:
    """Run every step in ``work``; the outcomes and the files that leak the marker."""
    app, models = work / "app-data", work / "models"
    write_tiny_backbone(models)
    data = write_sources(work)
    env = dict(
        os.environ,
        EPT_STUDIO_DATA=str(app),
        EPT_STUDIO_MODELS=str(models),
        EPT_STUDIO_CACHE=str(work / "cache"),
        HOME=str(work / "home"),
        QT_QPA_PLATFORM="offscreen",
        OMP_WAIT_POLICY="PASSIVE",
        PYTHONIOENCODING="utf-8:strict",  # a desktop's UTF-8 locale: no raw bytes to a terminal
    )
    (work / f"{MARK} is a file").write_text("in the way of a folder", encoding="utf-8")
    outcomes = [run_step(step, env, work) for step in steps(work, data)]
    project = work / f"{MARK} project"
    allowed = [work / f"out {MARK}", app / "locations"]
    return outcomes, leaks([app, project, work / "cache"], allowed)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="phi-sweep-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        outcomes, leaked = sweep(work)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    sys.stdout.write(report(outcomes, leaked))
    return 1 if leaked or any(o.problems for o in outcomes) else 0


def report(outcomes: Sequence[Outcome], leaked: Sequence[str]) -> str:
    """One line per command, one per leaking file, then the counts."""
    lines = []
    for outcome in outcomes:
        status = "FAIL" if outcome.problems else "ok  "
        problems = "; ".join(outcome.problems)
        lines.append(f"{status} {outcome.step.name:<16} exit {outcome.code}  {problems}".rstrip())
    lines += [f"LEAK {path}" for path in leaked]
    bad = sum(1 for o in outcomes if o.problems)
    lines.append(
        f"{len(outcomes)} commands, {bad} with problems, {len(leaked)} files with the marker"
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
