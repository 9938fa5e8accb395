"""The HTML report is one self-contained file that opens offline."""

import re

from workbench.core.report.figures import per_class_figure
from workbench.core.report.html import Section, figure_html, write_report
from workbench.core.report.tables import table_html


def test_report_inlines_plotly_and_references_nothing_outside(tmp_path):
    rows = [
        {"class": "circle", "instances": 3, "map50": 0.9, "map50_95": 0.7},
        {"class": "star", "instances": 5, "map50": 0.8, "map50_95": 0.5},
    ]
    fig = per_class_figure(rows)
    assert [t.name for t in fig.data] == ["mAP50", "mAP50-95"] and list(fig.data[1].y) == [0.7, 0.5]
    path = write_report(
        tmp_path / "r.html",
        "Title <&>",
        [Section("Per class", figure_html(fig), "how to read"), Section("Table", table_html(rows))],
    )
    page = path.read_text()
    assert "Title &lt;&amp;&gt;" in page and "0.7000" in page and "how to read" in page
    assert len(page) > 1_000_000  # plotly.js itself is inside
    from plotly.offline import get_plotlyjs

    own = page.replace(get_plotlyjs(), "")  # plotly.js mentions its web site in strings; the page itself must not
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=|(src|href)=[\"']?(https?:)?//", own)
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_empty_table_says_so():
    assert "nothing recorded" in table_html([])
