"""``python -m ept_studio``: the same as the ``ept-studio`` command."""

from ept_studio.cli import main

raise SystemExit(main())
