"""The bf16 check issue 8 needs a GPU (or an AVX512-BF16 / AMX CPU) for, prepared as one script.

The device machine reaches no network and takes at most 64 MiB of working tree, so the 88 MB
offline backbone travels as a half-precision copy (44 MB) that is widened back to fp32 there:
the fp32 and the bf16 runs load the same widened weights, so they compare like with like.

Here (CPU, once):   bash packaging/device/prepare.sh        (writes .device/: the copy, wheels)
There (one call):   bash packaging/device/run.sh            (carry .device; results in $OUT)

``run`` times linear and EPT steps under fp32 and bf16 autocast in the same rounds (``bench
speed``'s engine); exports a quick tuned model as fp32, int8 and fp16 ONNX with their checks, runs
``bench latency`` (its int8 and fp16 rows) and ``bench tune-time`` (fp32 and bf16 side by side)
(:mod:`precision_steps`); then runs the accuracy protocol on lfw-faces (scikit-image, present
there) at each K with ``bf16`` off and on, on the same draws, and writes one results document per
K and setting, for ``ept-studio bench sweep-report --versus "default + bf16=off" "default +
bf16=on"``. The time guard: a precision step starts only if about its usual time
(:data:`precision_steps.STEP_SECONDS`) is left before ``--hard-s``, and no accuracy run starts
after ``--budget-s``; what is skipped is said in the log and the report.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HALF_COPY = ROOT / ".device" / "backbone-fp16.safetensors"
HALF_COPY_FORMAT = "ept-studio-half-copy/1"
BF16_SETTINGS = ("off", "on")


def write_half_copy(source: Path, target: Path) -> dict[str, str]:
    """Every floating tensor of ``source`` as float16 in ``target``, with the source's sha256."""
    import torch
    from safetensors.torch import load_file, save_file

    from ept_studio.core.backbones import file_sha256

    tensors = load_file(source, device="cpu")
    half = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    assert all(torch.isfinite(v).all() for v in half.values()), "a weight overflows float16"
    largest = max(float((v.float() - half[k].float()).abs().max()) for k, v in tensors.items())
    metadata = {"format": HALF_COPY_FORMAT, "source_sha256": file_sha256(source)}
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in half.items()}, target, metadata=metadata)
    return {**metadata, "max_abs_rounding": f"{largest:.3g}"}


def load_half_copy(path: Path, backbone: str | None = None) -> Any:
    """The manifest backbone ``backbone`` (None: the default) built from its half copy, widened
    to fp32; refuses a copy made from other weights than the manifest's."""
    from safetensors import safe_open

    from ept_studio.core.backbones import LoadedBackbone, file_sha256, get_spec, load_manifest
    from ept_studio.core.backbones.loader import (
        build_model,
        default_spec,
        freeze,
        load_weights_into,
        read_weights,
    )

    manifest = load_manifest()
    spec = get_spec(backbone or default_spec(manifest).name, manifest)
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if metadata.get("format") != HALF_COPY_FORMAT:
        raise SystemExit(f"{path} is not a half copy written by prepare.sh")
    if spec.weights_sha256 and metadata.get("source_sha256") != spec.weights_sha256:
        raise SystemExit(f"{path} was made from other weights than {spec.name}'s")
    tensors = {k: v.float() if v.is_floating_point() else v for k, v in read_weights(path).items()}
    model = build_model(spec.timm_name, img_size=spec.input_size)
    load_weights_into(model, tensors, origin=str(path))
    return LoadedBackbone(freeze(model), spec, file_sha256(path), path)


def say(text: str) -> None:
    """One line (or block) of the log, at once (the device call returns only the output)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def speed_table(loaded: Any, device: str, rounds: int) -> str:
    """Median step seconds of the floor, linear and EPT in fp32 and under bf16 autocast."""
    import torch

    from ept_studio.evidence.speed import (
        bf16_variants,
        default_variants,
        format_speed_table,
        run_speed_bench,
    )

    floor, linear, ept = default_variants()[:3]
    rows = run_speed_bench(
        loaded.model,
        [floor, linear, ept, *bf16_variants()],
        rounds=rounds,
        batch_size=4,
        device=torch.device(device),
    )
    memory = "peak CUDA MiB" if device.startswith("cuda") else "saved activations MiB"
    return format_speed_table(f"{loaded.spec.name}, batch 4, {device}", rows, memory)


def accuracy_documents(
    loaded: Any,
    out: Path,
    shots: list[int],
    draws: int,
    device: str,
    deadline: float,
    methods: tuple[str, ...] = ("prototype", "linear", "ept"),
) -> list[Path]:
    """One results document per K and bf16 setting, K by K; stops starting runs at ``deadline``."""
    from ept_studio.evidence.accuracy import AccuracyRequest, AccuracySaved, run_accuracy

    written = []
    for k in shots:
        for setting in BF16_SETTINGS:
            if time.monotonic() > deadline:
                say(f"skipped K={k} bf16={setting}: out of time")
                continue
            request = AccuracyRequest(
                out=Path("/tmp/ept-bf16") / f"k{k}-{setting}",
                dataset="lfw-faces",
                shots=(k,),
                draws=draws,
                seeds=1,
                methods=methods,
                recipe={"preset": "default", "bf16": setting, "device": device},
                queries_per_class=20,
                command=f"packaging/device/bf16_check.py run (K={k}, bf16 {setting})",
            )
            for event in run_accuracy(request, backbone=loaded):
                if isinstance(event, AccuracySaved):
                    target = out / f"bf16-{setting}-k{k}.json"
                    shutil.copyfile(event.results_json, target)
                    written.append(target)
                    say(f"K={k} bf16={setting}: {event.wall_seconds:.0f} s")
    return written


def versus(documents: list[Path]) -> str:
    from ept_studio.evidence.sweep_report import load_sweep, recipe_gains, versus_markdown

    cells = load_sweep(documents)
    reference, other = "default + bf16=off", "default + bf16=on"
    return versus_markdown(cells, recipe_gains(cells, reference, other), reference, other)


def _sibling(name: str) -> Any:
    """The module ``name``.py beside this script (it is run as a file, not from a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _names(text: str) -> frozenset[str]:
    names = frozenset(n.strip() for n in text.split(",") if n.strip())
    unknown = names - {"exports", "latency", "tune-time"}
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown steps {sorted(unknown)}")
    return names


def precision_sections(loaded: Any, args: argparse.Namespace, start: float) -> list[str]:
    """The exports, latency and tune-time steps, each only if its usual time is left before the
    hard limit; a step that fails is reported and the next one runs."""
    import traceback

    precision_steps = _sibling("precision_steps")
    steps = {
        "exports": lambda: precision_steps.export_section(loaded, args.device),
        "latency": lambda: precision_steps.latency_section(loaded, args.latency_rounds),
        "tune-time": lambda: precision_steps.tune_time_section(
            loaded, args.device, tuple(args.tune_presets.split(","))
        ),
    }
    sections = []
    for name, step in steps.items():
        left = start + args.hard_s - time.monotonic()
        if name in args.skip:
            sections.append(f"### {name}\n\nskipped, as asked (--skip).")
        elif left < precision_steps.STEP_SECONDS[name]:
            sections.append(
                f"### {name}\n\nskipped: out of time ({left:.0f} s left before the "
                f"{args.hard_s:.0f} s limit; it takes about "
                f"{precision_steps.STEP_SECONDS[name]:.0f} s)."
            )
        else:
            began = time.monotonic()
            try:
                section = step()
            except Exception as err:  # a failed step is a result; the next step still runs
                trace = traceback.format_exc(limit=-3)
                section = f"### {name}\n\nfailed: {err!r}\n\n```\n{trace}```"
            sections.append(f"{section}\n\n({name}: {time.monotonic() - began:.0f} s)")
        say(sections[-1])
    return sections


def run(args: argparse.Namespace) -> int:
    import torch

    start = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    device = args.device
    facts = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu",
        "bf16_supported": bool(device.startswith("cuda") and torch.cuda.is_bf16_supported()),
    }
    sections = [json.dumps(facts)]
    say(sections[0])
    loaded = load_half_copy(args.copy)
    if args.rounds:
        sections.append(speed_table(loaded, device, args.rounds))
        say(sections[-1])
    report = args.out / "report.md"  # $OUT takes 8 files: the report, the log, 6 documents
    report.write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    sections += precision_sections(loaded, args, start)
    report.write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    deadline = start + args.budget_s
    methods = tuple(args.methods.split(","))
    documents = accuracy_documents(
        loaded, args.out, args.shots, args.draws, device, deadline, methods
    )
    if documents:
        sections.append(versus(documents))
        say(sections[-1])
        report.write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    half = commands.add_parser("half-copy", help="write the 44 MB half copy (here, on the CPU)")
    half.add_argument(
        "--source", type=Path, default=ROOT / "models" / "dinov2-vits14-imgfocus.safetensors"
    )
    half.add_argument("--out", type=Path, default=HALF_COPY)
    check = commands.add_parser("run", help="time and measure fp32 against bf16 (there)")
    check.add_argument("--copy", type=Path, default=HALF_COPY)
    check.add_argument("--out", type=Path, required=True)
    check.add_argument("--device", default="cuda")
    check.add_argument("--shots", type=int, nargs="+", default=[5, 1, 10])
    check.add_argument("--draws", type=int, default=5)
    check.add_argument("--rounds", type=int, default=20, help="0: no speed table")
    check.add_argument("--methods", default="prototype,linear,ept", help="a dry run: prototype")
    check.add_argument("--budget-s", type=float, default=360.0, help="start no run after this")
    check.add_argument(
        "--hard-s",
        type=float,
        default=540.0,
        help="start no precision step that would end after this (the call's limit is 600 s)",
    )
    check.add_argument(
        "--skip",
        type=_names,
        default=frozenset(),
        help="precision steps to leave out: exports,latency,tune-time",
    )
    check.add_argument("--latency-rounds", type=int, default=20, help="bench latency's rounds")
    check.add_argument("--tune-presets", default="default", help="bench tune-time's presets")
    args = parser.parse_args(argv)
    if args.command == "half-copy":
        say(json.dumps(write_half_copy(args.source, args.out)))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
