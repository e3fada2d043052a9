"""The engine commands that the README's first set-up command ends in."""

from __future__ import annotations

from pathlib import Path

import pytest

from ept_studio.cli import main
from ept_studio.core.backbones import load_manifest


def test_doctor_loads_the_offline_backbone(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    spec = next(s for s in load_manifest().values() if s.default)
    assert spec.weights_sha256 is not None
    assert spec.weights_sha256[:16] in out
    assert "257 x 384" in out
    assert "CPUExecutionProvider" in out
    assert "ready" in out


def test_models_list_marks_what_is_on_this_machine(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EPT_STUDIO_CACHE", str(tmp_path / "empty-cache"))
    assert main(["models", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    default = next(line for line in lines if "(default)" in line)
    assert default.startswith("here")
    assert any(line.startswith("missing") and "vit-b16-in21k" in line for line in lines)


def test_train_and_bench_accuracy_take_a_recipe_preset() -> None:
    from ept_studio.cli import build_parser
    from ept_studio.cli.training import recipe_from_args

    parser = build_parser()
    train = parser.parse_args(["train", "data", "--recipe", "default", "--epochs", "3"])
    assert recipe_from_args(train) == {"preset": "default", "epochs": 3}
    assert recipe_from_args(parser.parse_args(["train", "data"])) == {"preset": "paper"}
    full = parser.parse_args(["train", "data", "--method", "full", "--full-lr", "1e-5"])
    assert recipe_from_args(full) == {"preset": "paper", "full_lr": 1e-5}
    bench = parser.parse_args(
        ["bench", "accuracy", "--dataset", "textiles", "--methods", "prototype,ept"]
    )
    assert (bench.methods, bench.recipe) == (("prototype", "ept"), "paper")
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "data", "--recipe", "fast"])


def test_bench_accuracy_refuses_a_tie_break_without_a_held_out_set(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "results"
    argv = ["bench", "accuracy", "--dataset", "textiles", "--tie-break", "loss", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--tie-break needs --hold-out" in err
    assert not out.exists()


@pytest.mark.parametrize("shots", ["0", "-2", "two"])
def test_train_refuses_fewer_than_one_shot_when_parsing(
    shots: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from ept_studio.cli import build_parser

    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["train", "data", "--out", "p.safetensors", "--shots", shots])
    assert exited.value.code == 2
    assert "a whole number of at least 1" in capsys.readouterr().err


def test_train_refuses_a_class_left_without_evaluation_images_with_exit_2(
    class_folders: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "p.safetensors"
    code = main(["train", str(class_folders), "--out", str(out), "--shots", "6"])
    assert code == 2
    err = capsys.readouterr().err
    assert "error: class 'fundus' has 6 usable images" in err
    assert "1 to 5" in err
    assert not out.exists()


def test_train_names_the_copies_it_left_out_before_training(
    class_folders: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The data summary comes before the backbone loads (here a name that does not exist)."""
    fundus = class_folders / "fundus"
    (fundus / "img04.png").write_bytes((fundus / "img01.png").read_bytes())
    out = tmp_path / "p.safetensors"
    args = ["train", str(class_folders), "--out", str(out), "--backbone", "no-such-backbone"]
    assert main([*args, "--shots", "2"]) == 2
    err = capsys.readouterr().err
    assert f"left out {fundus / 'img04.png'}: the same image as {fundus / 'img01.png'}" in err
    assert "class fundus: 2 training, 3 evaluation images" in err
    assert "no-such-backbone" in err
    assert not out.exists()


def test_train_refuses_evaluating_on_no_image_per_class(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ept_studio.cli import build_parser

    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["train", "data", "--out", "p.safetensors", "--max-query", "0"])
    assert exited.value.code == 2
    assert "--max-query: evaluating on at most 0 images" in capsys.readouterr().err


def test_without_the_evidence_harness_bench_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The desktop bundle leaves ept_studio.evidence out: its ``bench`` is an error, not a crash."""
    from ept_studio.cli import engine
    from ept_studio.cli.evidence import BENCH_UNAVAILABLE

    monkeypatch.setattr(engine, "evidence_installed", lambda: False)
    for words in (["bench"], ["bench", "speed", "--rounds", "2"], ["bench", "accuracy"]):
        assert main(words) == 2
        captured = capsys.readouterr()
        assert f"error: {BENCH_UNAVAILABLE}" in captured.out + captured.err
    assert main(["models", "list"]) == 0


def test_the_evidence_harness_is_found_in_a_python_install() -> None:
    from ept_studio.cli.evidence import evidence_installed

    assert evidence_installed()


def test_doctor_names_the_bf16_decision_and_why(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The check runs once (faked here) and is cached in the user data folder."""
    from ept_studio.core import bf16

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Test CPU\nflags\t\t: avx2 amx_bf16\n", encoding="utf-8")
    calls: list[int] = []

    def fake_check() -> tuple[float, float]:
        calls.append(1)
        return 1.0, 0.5

    monkeypatch.setattr(bf16, "CPUINFO", cpuinfo)
    monkeypatch.setattr(bf16, "measure_cpu_bf16", fake_check)
    monkeypatch.setenv("EPT_STUDIO_DATA", str(tmp_path / "user-data"))
    assert main(["doctor"]) == 0
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert out.count("bfloat16 (auto) on: this CPU has AMX and ran the check 2.0x faster") == 2
    assert calls == [1]
    assert (tmp_path / "user-data" / "cache" / bf16.CHECK_FILE).is_file()
