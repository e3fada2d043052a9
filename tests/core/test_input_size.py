"""The offline backbone built for another input size: the spec carries the size, the position
embedding is resampled to the new patch grid, and a size that cuts a patch is refused."""

from __future__ import annotations

import pytest
import torch

from ept_studio.common.errors import BackboneError
from ept_studio.core.backbones import load_backbone


def test_a_larger_input_has_more_patches_and_the_spec_says_its_size() -> None:
    torch.set_num_threads(1)
    base, larger = load_backbone(), load_backbone(img_size=252)
    assert (base.spec.input_size, larger.spec.input_size) == (224, 252)
    assert larger.weights_sha256 == base.weights_sha256
    grid = larger.model.patch_embed.grid_size
    assert tuple(grid) == (18, 18)
    assert larger.model.pos_embed.shape[1] == 18 * 18 + 1
    with torch.no_grad():
        image = torch.rand(1, 3, 252, 252, generator=torch.Generator().manual_seed(0))
        tokens = larger.model.forward_features(image)
        small = torch.nn.functional.interpolate(image, size=224, mode="bilinear")
        base_cls = base.model.forward_features(small)[:, 0]
    assert tokens.shape == (1, 18 * 18 + 1, 384)
    cosine = torch.nn.functional.cosine_similarity(tokens[:, 0], base_cls).item()
    assert 0.5 < cosine < 0.9999  # the same image, seen in more detail: close, not equal


def test_an_input_size_that_cuts_a_patch_is_refused_with_a_size_that_fits() -> None:
    with pytest.raises(BackboneError, match=r"multiple of 14 \(e.g. 238\), not 250"):
        load_backbone(img_size=250)


def test_the_detail_backbone_is_the_weights_file_built_for_twice_the_size() -> None:
    from support import tiny_backbone

    from ept_studio.core.backbones import backbone_at_size

    torch.set_num_threads(1)
    base = load_backbone()
    detail = backbone_at_size(base, 448)
    direct = load_backbone(img_size=448)  # what bench accuracy --detail 448 measured
    assert detail.spec.input_size == 448
    assert detail.weights_sha256 == base.weights_sha256
    assert torch.equal(detail.model.pos_embed, direct.model.pos_embed)
    assert base.spec.input_size == 224  # the loaded one is left as it was
    # a backbone without a weights file (a random test one) is resized in place of a copy
    tiny = tiny_backbone()
    resized = backbone_at_size(tiny, 64)
    assert tuple(resized.model.patch_embed.grid_size) == (8, 8)
    assert tuple(tiny.model.patch_embed.grid_size) == (4, 4)
    with pytest.raises(BackboneError, match="multiple of 8, not 60"):
        backbone_at_size(tiny, 60)
