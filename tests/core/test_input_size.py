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
