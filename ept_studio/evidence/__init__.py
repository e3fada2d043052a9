"""The evidence harness: the few-shot protocol, accuracy runs and reports, datasets, benchmarks.

It measures the product rather than being part of it: the command line (``ept-studio bench ...``)
and the scripts under ``packaging/`` use it; the desktop app, the services, ``core`` and ``data``
never import it, and the desktop bundle leaves it out.
"""
