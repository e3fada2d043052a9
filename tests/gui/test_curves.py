"""The live training plot: its legend sits above the lines, never over them."""

from __future__ import annotations

import pytest
from pytestqt.qtbot import QtBot

from ept_studio.gui.curves import LEGEND_ROW, CurvePlot

pytestmark = pytest.mark.gui


def test_the_legend_is_laid_out_above_the_plot_in_as_many_rows_as_it_needs(qtbot: QtBot) -> None:
    plot = CurvePlot("step")
    qtbot.addWidget(plot)
    plot.resize(320, 200)
    bare = plot.plot_frame()
    assert plot.legend_rows() == []
    plot.add_point("training loss", 1, 1.4)  # the first loss is the highest: top left
    plot.add_point("training loss", 2, 0.2)
    one = plot.plot_frame()
    assert one.top() == bare.top() + LEGEND_ROW
    for name in ("held-out loss", "held-out accuracy", "held-out AUC"):
        plot.add_point(name, 2, 0.5)
    rows = plot.legend_rows()
    assert [name for row in rows for _, name, _ in row] == plot.series_names()
    assert len(rows) >= 2  # four names do not fit on one line of a 320 px plot
    assert plot.plot_frame().top() == bare.top() + LEGEND_ROW * len(rows)
    for row in rows:
        right = max(x for _, _, x in row)
        assert right < 320
    plot.grab()  # paints without error with the legend above
