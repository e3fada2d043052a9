"""The desktop app (PySide6): windows and widgets only; it talks to services."""
