"""What every layer may use: errors, file helpers, settings types, calibration, per-user folders,
the log, crash reports and the training events.

Nothing here imports Qt, torch or any layer above (an import-linter contract checks it), so the GUI,
the CLI and the engine can share these without pulling each other in.
"""
