"""An exported model's metadata sizes are bounded before they size any pixels or overlays."""

from __future__ import annotations

import json

import pytest

from ept_studio.common.errors import OnnxModelError
from ept_studio.core.model_io import ModelInfo


def _props(**changes: object) -> dict[str, str]:
    info = ModelInfo(
        class_names=("benign", "malignant"),
        label_mode="single",
        input_size=224,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        heads=6,
        patch_grid=(16, 16),
        backbone="dinov2-vits14-imgfocus",
        backbone_sha256="0" * 64,
        prompt_sha256="0" * 64,
        method={"method": "linear"},
        rendering={},
    )
    props = info.to_metadata_props()
    props.update({key: json.dumps(value) for key, value in changes.items()})
    return props


def test_the_valid_props_used_below_are_read() -> None:
    assert ModelInfo.from_metadata_props(_props(), "model.onnx").patches == 256


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"input_size": 10**6}, "'input_size' 1000000 is above the 4096-pixel limit"),
        ({"patch_grid": [10**6, 10**6]}, "'patch_grid' 1000000 is above the 224-pixel input size"),
        ({"patch_grid": [16]}, "'patch_grid' is not 2 whole numbers"),
    ],
)
def test_sizes_beyond_the_input_are_refused(changes: dict[str, object], reason: str) -> None:
    with pytest.raises(OnnxModelError, match=reason) as caught:
        ModelInfo.from_metadata_props(_props(**changes), "model.onnx")
    assert str(caught.value).startswith("model.onnx: ")
