"""What the Ray tests send to their workers (importable there: the tests put this folder on the
workers' PYTHONPATH): the tiny backbone, and a loader that kills its own worker once."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from ept_studio.core.backbones import LoadedBackbone, random_backbone

tiny_backbone = functools.partial(
    random_backbone,
    "vit_tiny_patch16_224",
    seed=0,
    img_size=32,
    patch_size=8,
    depth=2,
    embed_dim=64,
    num_heads=4,
)
"""The tiny random ViT of tests/support.py, as a picklable zero-argument loader."""


def dying_backbone(calls: Path, die_at: int, driver_pid: int) -> LoadedBackbone:
    """The tiny backbone, except that the ``die_at``-th call in a worker ends that worker's
    process at once (as a lost node would); ``calls`` counts the calls (one file each)."""
    if os.getpid() != driver_pid:
        number = 1
        while True:
            try:
                os.close(os.open(calls / f"call-{number}", os.O_CREAT | os.O_EXCL))
                break
            except FileExistsError:
                number += 1
        if number == die_at:
            os._exit(1)
    return tiny_backbone()
