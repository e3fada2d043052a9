"""The run record says whether the steps ran under bfloat16; older records say nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ept_studio.services.model.run_record import read_run_record
from ept_studio.services.model.training import TrainingSaved, TrainRequest, train_on_folder


def _folder_run(class_folders: Path, out: Path, bf16: str) -> Path:
    request = TrainRequest(
        class_folders,
        out,
        method={"method": "linear"},
        recipe={"epochs": 1, "batch_size": 4, "lr": 0.05, "bf16": bf16},
        shots=2,
        max_query_per_class=1,
    )
    saved = list(train_on_folder(request))[-1]
    assert isinstance(saved, TrainingSaved)
    return saved.run_record


@pytest.mark.slow
def test_the_record_says_whether_bf16_was_on(class_folders: Path, tmp_path: Path) -> None:
    on = read_run_record(_folder_run(class_folders, tmp_path / "on.safetensors", "on"))
    assert on.training.bf16 is True
    auto = _folder_run(class_folders, tmp_path / "auto.safetensors", "auto")
    assert read_run_record(auto).training.bf16 is False, "this suite's CPU has no AVX512-BF16"

    document = json.loads(auto.read_text(encoding="utf-8"))
    del document["training"]["bf16"]
    auto.write_text(json.dumps(document), encoding="utf-8")
    assert read_run_record(auto).training.bf16 is None
