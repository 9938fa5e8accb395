"""Prose that holds anywhere: a measured figure in a notebook's markdown is printed by the same run or cited with the
machine and date it came from, and what the prose says about the code (tabs, targets, the shipped search, the run
time in each intro) is what the code has. Fast: the notebooks' jupytext twins are parsed, no kernel runs.

The rule, precisely. The prose is every markdown cell of notebooks/*.py with its inline code spans removed; a
paragraph is a block between blank lines, a sentence ends at `.`, `!` or `?` followed by a space and a capital, a
parenthesis, `*` or a backtick. A **figure** is

- a number followed by `x` or `×` (not by another number: `480 x 288` is a size), `ms`, `%`, `s`, `min`,
  `minute(s)`, `second(s)` or `hour(s)`: a speed-up, a latency, a share, a time; or
- a number with two or more decimals (`0.90`, `0.847`): a score or a ratio.

A figure is accepted when

1. its paragraph cites where it came from: a date (`2026-12-04`) and a machine (one of the words machine, EPYC,
   Xeon, CPU, core, cores, as in "2-core AMD EPYC"); or
2. its sentence points at this run's output: `prints`, `printed`, or a cell, table, chart, line or output `above`
   or `below`; or
3. it is a setting or a definition listed in `SETTINGS` with the notebook it is in, and (where code defines it) a
   check that the code still says so.
"""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))
CHAPTERS = [p for p in NOTEBOOKS if p.stem[:2].isdigit()]

_NUMBER = r"(?<![\w.])\d+(?:\.\d+)?"
FIGURE = re.compile(
    rf"{_NUMBER}\s?(?:x|×)(?!\s*\d)(?!\w)"
    rf"|{_NUMBER}\s?(?:ms|%|s|min|minutes?|seconds?|hours?)(?!\w)"
    r"|(?<![\w.])\d+\.\d{2,}(?!\w|\.\d)"
)
DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")
MACHINE = re.compile(r"\b(?:machine|EPYC|Xeon|CPU|cores?)\b")
PRINTED = re.compile(r"\b(?:prints?|printed)\b|\b(?:cell|table|chart|line|output)s? (?:above|below)\b")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(*`])")


def _latency_tolerance() -> bool:
    from workbench.core.measure.latency import LatencyConfig

    return LatencyConfig().tolerance == 0.1


def _student_prune_ratio() -> bool:
    import workbench as wb

    return [s["prune"]["ratio"] for s in wb.student_card()["recipe"]["steps"] if "prune" in s] == [0.3]


def _cause_ratio() -> bool:
    from workbench.core.doctor.speed.timing import CAUSE_RATIO

    return CAUSE_RATIO == 1.5


def _search_tolerance() -> bool:
    return "within 0.01 of the FP32 parent" in (ROOT / "workbench/recipes/sweeps/search-student.yaml").read_text()


# (notebook, figure): what it is, and a check that the code still says so (None: a definition, not in the code)
SETTINGS = {
    ("00_quickstart", "95%"): ("mAP50-95's definition: IoU thresholds from 50% up to 95%", None),
    ("00_quickstart", "10%"): ("the latency harness's tolerance: timing windows agree within 10%", _latency_tolerance),
    ("02_export_and_compare", "10%"): ("the latency harness's tolerance", _latency_tolerance),
    ("04_quantize", "10%"): ("the latency harness's tolerance, read as the noise of one run", _latency_tolerance),
    ("03_prune", "30%"): ("the prune ratio of the shipped student", _student_prune_ratio),
    ("05_distill", "30%"): ("the prune ratio of the shipped student", _student_prune_ratio),
    ("08_slow_inference", "1.5x"): ("the speed doctor's threshold for naming a cause", _cause_ratio),
    ("11_sweeps", "0.01"): ("the shipped search's accuracy constraint", _search_tolerance),
}


def without_code(text: str) -> str:
    return re.sub(r"`[^`]*`", "`code`", text)


def prose(path: Path) -> list[str]:
    """The notebook's markdown cells, inline code removed."""
    return [without_code(c.source) for c in jupytext.read(path).cells if c.cell_type == "markdown"]


def unsupported_figures(stem: str, cells: list[str]) -> list[str]:
    """Each figure the rule does not accept, with its sentence."""
    found = []
    for cell in cells:
        for paragraph in re.split(r"\n\s*\n", cell):
            cited = bool(DATE.search(paragraph) and MACHINE.search(paragraph))
            for sentence in SENTENCE_END.split(paragraph):
                for match in FIGURE.finditer(sentence):
                    figure = re.sub(r"\s+", " ", match.group())
                    if cited or PRINTED.search(sentence) or (stem, figure) in SETTINGS:
                        continue
                    found.append(f"{stem}: {figure!r} in: {' '.join(sentence.split())}")
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_figure_in_the_prose_is_printed_cited_or_a_setting(path):
    found = unsupported_figures(path.stem, prose(path))
    assert not found, "cite the machine and date, point at the printed output, or list it in SETTINGS:\n" + "\n".join(
        found
    )


def test_the_rule_catches_stale_figures_and_accepts_cited_or_printed_ones():
    stale = [
        "In the README's `make bench` run (a 2-core Xeon with AMX) the export ran 1.6x (320 px) to 2.1x (640 px).",
        "NNCF's INT8 was as fast as Ultralytics' INT8 at 320 px and 1.2x slower at 640 px.",
        "Timed in alternating rounds; one row after the other gave 0.90, on a machine whose speed moved by 15-25%.",
        "**How long:** about 20 s with the defaults below (measured on the 2-core development machine).",
        "Eager inference measured 2.5 x slower here.",
    ]
    assert [len(unsupported_figures("x", [without_code(text)])) for text in stale] == [2, 1, 2, 1, 1]
    accepted = [
        "In `make bench` (a 2-core Intel Xeon with AMX, 2026-12-02) it ran 1.4x faster and scored 0.843.",
        "The cell above prints the ratio: on the machine of this run, 1.6x or 0.9x.",
        "Images of 480 x 288 px, version 8.4.190, `p50 = 12 ms` in code, 30-second steps, chapters 00-07.",
    ]
    assert [unsupported_figures("x", [without_code(text)]) for text in accepted] == [[], [], []]
    assert unsupported_figures("x", ["A 2-core Xeon ran it in 12 ms.\n\nOn 2026-12-02."]) != [], "one paragraph"


def test_every_setting_is_still_in_its_notebook_and_in_the_code():
    for (stem, figure), (what, check) in SETTINGS.items():
        text = " ".join(prose(ROOT / "notebooks" / f"{stem}.py"))
        assert figure in {re.sub(r"\s+", " ", m.group()) for m in FIGURE.finditer(text)}, f"{stem}: {figure} ({what})"
        assert check is None or check(), f"{stem}: the prose says {figure} for {what}; the code no longer does"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_each_chapter_intro_says_how_long_it_takes_and_where_that_was_measured(path):
    intro = prose(path)[0]
    paragraph = next((p for p in re.split(r"\n\s*\n", intro) if p.startswith("**How long:**")), None)
    assert paragraph is not None, f"{path.stem}: the intro has no **How long:** paragraph"
    times = [m.group() for m in FIGURE.finditer(paragraph) if not m.group().endswith(("x", "×", "%"))]
    assert times, f"{path.stem}: its **How long:** gives no time: {paragraph}"
    assert DATE.search(paragraph) and MACHINE.search(paragraph), f"{path.stem}: no machine and date: {paragraph}"


def test_the_app_intro_names_every_tab(tmp_path):
    from workbench.core.services.session import Session
    from workbench.core.store.workspace import Workspace
    from workbench.widgets import Workbench

    titles = Workbench(session=Session(Workspace(tmp_path / "ws")), background=False).tabs.titles
    intro = prose(ROOT / "notebooks" / "app.py")[0]
    named = re.findall(r"\*\*([^*]+)\*\*", intro)
    assert named == list(titles), f"the app intro names {named}; the app's tabs are {list(titles)}"
    words = {12: "twelve", 13: "thirteen", 11: "eleven", 10: "ten"}
    assert f"{words.get(len(titles), len(titles))} tabs" in intro.lower()


def test_catalog_targets_named_in_the_notebooks_exist():
    catalog = {t["id"] for t in yaml.safe_load((ROOT / "workbench/core/advise/targets.yaml").read_text())["targets"]}
    named = set()
    for path in NOTEBOOKS:
        text = path.read_text()
        named |= set(re.findall(r"--target[ =]([A-Za-z0-9][\w.-]*)", text))
        named |= set(re.findall(r"\btarget[\"']?\s*[:=]\s*[\"']?([a-z][\w-]*-[\w-]+)", text))
    assert named, "the pattern finds the targets chapter 11 names"
    assert named <= catalog | {"this-machine"}, f"not in the catalog: {sorted(named - catalog)}"


def test_chapter_11_describes_the_shipped_search_as_its_spec_has_it():
    spec = yaml.safe_load((ROOT / "workbench/recipes/sweeps/search-student.yaml").read_text())
    epochs = next(s["finetune"]["epochs"] for s in spec["steps"] if "finetune" in s)
    ratios = len(spec["search"]["prune.ratio"])
    text = " ".join(prose(ROOT / "notebooks" / "11_sweeps.py"))
    section = text[text.index("The search at full size") :]
    said_epochs = {int(n) for n in re.findall(r"(\d+) epochs", section)}
    assert said_epochs <= {epochs}, f"chapter 11 says {said_epochs} epochs; the spec fine-tunes {epochs}"
    counts = {"two": 2, "three": 3, "four": 4, "five": 5}
    said_ratios = {counts.get(w, int(w) if w.isdigit() else -1) for w in re.findall(r"(\w+) ratios", section)}
    assert said_ratios <= {ratios}, f"chapter 11 says {said_ratios} ratios; the spec has {ratios}"


def test_no_chapter_says_the_server_lacks_the_admin_endpoints_it_has():
    routes = (ROOT / "workbench/core/serve/service/app.py").read_text()
    assert '"/v1/admin/keys"' in routes
    for path in NOTEBOOKS:
        text = " ".join(" ".join(prose(path)).split()).lower()
        assert "no admin endpoint" not in text, f"{path.stem} says there is no admin endpoint; see /v1/admin/"
