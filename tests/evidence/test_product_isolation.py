"""The desktop app and the services run without the evidence harness (the bundle leaves it out).

import-linter checks the static imports; this checks what really loads, in a fresh interpreter,
so a lazy import inside a function or a package ``__init__`` cannot bring the harness back.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PACKAGES = ("ept_studio.gui", "ept_studio.services", "ept_studio.core", "ept_studio.data")
PROBE = """
import importlib, pkgutil, sys
walk = {walk}
for name in {packages}:
    package = importlib.import_module(name)
    if walk:
        for module in pkgutil.walk_packages(package.__path__, name + "."):
            importlib.import_module(module.name)
loaded = sorted(m for m in sys.modules if m.startswith("ept_studio.evidence"))
print(len(loaded), *loaded)
"""


def _evidence_loaded_by(packages: tuple[str, ...], walk: bool) -> list[str]:
    code = PROBE.format(walk=walk, packages=repr(packages))
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_importing_the_gui_and_the_services_loads_no_evidence_module() -> None:
    assert _evidence_loaded_by(("ept_studio.gui", "ept_studio.services"), walk=False) == ["0"]


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_of_the_product_loads_the_evidence_harness(package: str) -> None:
    assert _evidence_loaded_by((package,), walk=True) == ["0"]
