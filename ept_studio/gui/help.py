"""The Help menu: how the app works, its keyboard shortcuts, the research-use notice, About.

The shortcut list is read from the window's menus when it is shown, so it never disagrees with the
keys that work. Library versions are read from the installed packages' metadata: showing About
must not import torch.
"""

from __future__ import annotations

import html
import importlib.metadata
import platform
from collections.abc import Callable, Iterable

import PySide6
from PySide6.QtCore import Qt, Slot, qVersion
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QMainWindow,
    QMenu,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from ept_studio import RESEARCH_USE_NOTICE, __version__
from ept_studio.gui.viewer import VIEWER_KEYS
from ept_studio.gui.welcome import FLOW_STEPS

ENGINE_LIBRARIES = {
    "torch": ("torch",),
    "timm": ("timm",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml"),
}
"""Each library the engine runs on, and the names of the packages that install it."""
LABEL_KEYS = (
    ("1 – 9", "Label the selected images with class N (multi-label: add or take off class N)"),
    ("0", "Clear the labels of the selected images"),
    ("Double-click", "Open an image in the Viewer"),
)
"""Keys the gallery handles itself (they are not menu actions)."""

HOW_IT_WORKS = [
    "EPT Studio teaches a large vision model, kept frozen, to tell your kinds of images apart. "
    "Only a small set of added numbers learns (the <i>prompts</i>), so a handful of labelled "
    "images per class is enough to start.",
    *(f"<b>{n}. {title}</b>: {detail}." for n, (title, detail) in enumerate(FLOW_STEPS, 1)),
    "Images stay where they are: the project keeps only references, labels and runs. Every label "
    "is saved the moment you make it.",
    "Keep some labelled images for testing: <i>Split for me</i> on the Train tab puts a fifth of "
    "each class aside, a patient's images all on one side (or choose them yourself with key T). "
    "They are kept out of training, and the Results tab shows how the model does on them: "
    "per-class figures, a confusion matrix and the spread of the scores. With few test images "
    "those figures are rough; no figure ever counts an image the model learned from.",
    "The checklist beside Train says what is missing before a run can start, and what the run "
    "will do (steps, passes, time) before it starts.",
    "When the results look right, predict the other images and export the model (ONNX) or the "
    "prompt file from the Results tab.",
]


def plain(text: str) -> str:
    """An action's text as read in a list: no ``&`` accelerators, no trailing ellipsis."""
    return text.replace("&&", "\0").replace("&", "").replace("\0", "&").rstrip("…").strip()


def menu_shortcuts(menus: Iterable[QMenu]) -> list[tuple[str, str]]:
    """(keys, what they do) for every action with a shortcut in ``menus`` and their sub-menus."""
    rows: list[tuple[str, str]] = []
    for menu in menus:
        for action in menu.actions():
            submenu = action.menu()
            if isinstance(submenu, QMenu):
                rows.extend(menu_shortcuts([submenu]))
            elif action.shortcuts():
                keys = ", ".join(
                    s.toString(QKeySequence.SequenceFormat.NativeText) for s in action.shortcuts()
                )
                rows.append((keys, plain(action.text())))
    return rows


def library_versions() -> dict[str, str]:
    """The engine libraries' versions from their installed metadata (none of them is imported)."""
    return {name: _installed(packages) for name, packages in ENGINE_LIBRARIES.items()}


def _installed(packages: tuple[str, ...]) -> str:
    for package in packages:
        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
        return version if package == packages[0] else f"{version} ({package})"
    return "not installed"


def about_html() -> str:
    rows = {
        "EPT Studio": __version__,
        "Python": platform.python_version(),
        "Qt": qVersion(),
        "PySide6": PySide6.__version__,
        **library_versions(),
    }
    table = "".join(f"<tr><td>{name}</td><td>{version}</td></tr>" for name, version in rows.items())
    return (
        f"<h2>EPT Studio {__version__}</h2>"
        "<p>Few-shot medical image classification with Embedded Prompt Tuning of a frozen vision "
        "transformer. Nothing leaves this machine.</p>"
        f"<table cellspacing='4'>{table}</table>"
        f"<p><b>{html.escape(RESEARCH_USE_NOTICE)}</b></p>"
    )


def shortcuts_html(menus: Iterable[QMenu]) -> str:
    rows = [*LABEL_KEYS, *VIEWER_KEYS, *menu_shortcuts(menus)]
    cells = "".join(
        f"<tr><td><b>{html.escape(keys)}</b></td><td>{html.escape(text)}</td></tr>"
        for keys, text in rows
    )
    return f"<table cellspacing='6'>{cells}</table>"


class HelpDialog(QDialog):
    """A window of help text; not modal, so the app can be used beside it."""

    def __init__(self, title: str, body: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"EPT Studio: {title}")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.text = QTextBrowser()
        self.text.setOpenExternalLinks(False)
        self.text.setHtml(body)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(buttons)
        self.resize(560, 420)


class HelpMenu(QMenu):
    """How it works, Keyboard shortcuts, Research-use notice, About EPT Studio."""

    def __init__(self, window: QMainWindow) -> None:
        super().__init__("&Help", window)
        self.window_ = window
        self.how_action = self._action("&How it works", self.show_how_it_works, "F1")
        self.shortcuts_action = self._action("&Keyboard shortcuts", self.show_shortcuts)
        self.notice_action = self._action("&Research-use notice", self.show_notice)
        self.addSeparator()
        self.about_action = self._action("&About EPT Studio", self.show_about)
        self.about_action.setMenuRole(QAction.MenuRole.AboutRole)

    def _action(self, text: str, slot: Callable[[], object], keys: str = "") -> QAction:
        action = QAction(text, self)
        if keys:
            action.setShortcut(QKeySequence(keys))
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _show(self, title: str, body: str) -> HelpDialog:
        dialog = HelpDialog(title, body, self.window_)
        dialog.show()
        return dialog

    @Slot()
    def show_how_it_works(self) -> HelpDialog:
        return self._show("how it works", "".join(f"<p>{p}</p>" for p in HOW_IT_WORKS))

    @Slot()
    def show_shortcuts(self) -> HelpDialog:
        menus = [a.menu() for a in self.window_.menuBar().actions()]
        shown = [menu for menu in menus if isinstance(menu, QMenu)]
        return self._show("keyboard shortcuts", shortcuts_html(shown))

    @Slot()
    def show_notice(self) -> HelpDialog:
        return self._show("research use only", f"<p>{html.escape(RESEARCH_USE_NOTICE)}</p>")

    @Slot()
    def show_about(self) -> HelpDialog:
        return self._show("about", about_html())
