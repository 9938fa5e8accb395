"""Property-based tests of the loaders: ANY input gives a result or a clear WorkbenchError, never another exception.

One section per loader; each property runs at least 200 examples (`PROPERTY`). A clear error names the file (and
the line where there is one), says what is wrong and carries a fix. Sections:

1. YOLO label lines and label files (`workbench.core.data.labels`, the label check of `check_dataset`)
2. data YAMLs (`workbench.core.data.checks.check_dataset`)
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.core.data.checks import DatasetSummary, _check_labels, check_dataset, list_images
from workbench.core.data.generate import ShapesConfig, generate_shapes
from workbench.core.data.labels import labelled_image, normalised_boxes, parse_line
from workbench.core.errors import DatasetError, WorkbenchError

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
"""The settings of every property here: at least 200 examples, no per-example deadline (file I/O varies)."""

pytestmark = pytest.mark.timeout(120)  # a hang is a failure, not a stuck suite


# ----------------------------------------------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------------------------------------------


def _assert_clear(error: WorkbenchError, *names: str) -> None:
    """The error is a DatasetError that names every one of `names`, says how to fix it and stays readable."""
    assert isinstance(error, DatasetError), type(error)
    text = str(error)
    for name in names:
        assert name in text, f"{name!r} not named in:\n{text}"
    assert error.problem.strip() and error.fix.strip(), text
    assert len(text) < 10_000, f"an error message of {len(text)} characters"


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    """The root of a tiny generated dataset (4 train / 4 val images), two folders deep so that '..' stays inside.

    It also holds list files: `train.txt` (good), `missing.txt` (images that do not exist), `binary.txt` (not text).
    """
    base = tmp_path_factory.mktemp("shapes") / "a" / "b"
    root = generate_shapes(base, ShapesConfig(seed=3, train=4, val=4, imgsz=64)).root
    (root / "train.txt").write_text("".join(f"images/train/train_{i:05d}.jpg\n" for i in range(4)))
    (root / "missing.txt").write_text("images/train/nope.jpg\n./images/val/gone.png\n")
    (root / "binary.txt").write_bytes(b"images/val/\xff\xfe.jpg\n\x00\x01\n")
    return root


# ----------------------------------------------------------------------------------------------------------------
# 1. YOLO label lines and label files
# ----------------------------------------------------------------------------------------------------------------

_ODD_TOKENS = [
    *("nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e999", "-1e999", "1e-999", "1e308", "-1", "-0", "+1"),
    *("0", "1", "3", "4", "0.5", ".5", "5.", "1.0", "1.5", "1e0", "2e-1", "1,5", "0,5", "0x10", "1_0", "١", "０"),
    *("9" * 25, "9" * 400, "9" * 5000, "\x00", "\ufeff0", "\ufffd", "--1", "1e", "e1", "True", "None", "½", "0.5.5"),
]
_SEPARATORS = [" ", "  ", "\t", " \t ", "\xa0", "\u3000", ",", ", ", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\r"]

_token = st.one_of(
    st.sampled_from(_ODD_TOKENS),
    st.floats().map(repr),
    st.floats(-2, 2).map(lambda v: f"{v:.6f}"),
    st.integers().map(str),
    st.text(max_size=6),
)
_label_line = st.one_of(
    st.text(),  # anything at all
    st.builds(lambda tokens, sep: sep.join(tokens), st.lists(_token, max_size=12), st.sampled_from(_SEPARATORS)),
    st.builds(lambda token, n: (token + " ") * n, _token, st.integers(1_000, 20_000)),  # very long lines
    st.builds(lambda n: str(n) + " 0.5 0.5 0.1 0.1", st.integers()),  # huge and negative class ids
)


@st.composite
def _box(draw, inside: bool = True) -> list[float]:
    """cx, cy, w, h in 0..1 with the box inside the image (or anywhere in 0..1 when not `inside`)."""
    unit = st.floats(0, 1, allow_nan=False)
    if not inside:
        return [draw(unit) for _ in range(4)]
    w, h = draw(st.floats(1e-6, 1)), draw(st.floats(1e-6, 1))
    return [draw(st.floats(w / 2, 1 - w / 2)), draw(st.floats(h / 2, 1 - h / 2)), w, h]


_polygon = st.integers(3, 12).flatmap(lambda n: st.lists(st.floats(0, 1), min_size=2 * n, max_size=2 * n))
_number_format = st.sampled_from([repr, "{:.6f}".format, "{:.17g}".format, "{:g}".format, "{:e}".format])


@PROPERTY
@given(line=_label_line)
def test_any_label_line_parses_or_fails_clearly(line):
    try:
        parsed = parse_line(line, where="labels/x.txt:7")
    except DatasetError as error:
        _assert_clear(error, "labels/x.txt:7")
        return
    if parsed is None:
        assert not line.split()
        return
    cls, values = parsed
    assert type(cls) is int
    assert len(values) == 4 or (len(values) >= 6 and len(values) % 2 == 0)
    assert all(type(v) is float and abs(v) < float("inf") for v in values)


@PROPERTY
@given(
    cls=st.integers(0, 10**12),
    values=st.one_of(_box(inside=False), _polygon),
    fmt=_number_format,
    sep=st.sampled_from([" ", "\t", "  ", " \t"]),
    pad=st.sampled_from(["", " ", "\t", "\n", "\r\n", "  \r\n"]),
)
def test_valid_label_lines_round_trip(cls, values, fmt, sep, pad):
    written = [fmt(v) for v in values]
    parsed = parse_line(pad.strip("\r\n") + sep.join([str(cls), *written]) + pad)
    assert parsed is not None
    assert parsed[0] == cls
    assert parsed[1] == [float(w) for w in written]  # exactly what the text says ...
    assert parsed[1] == pytest.approx(values, rel=1e-5, abs=1e-6)  # ... which is the number, to the format's precision


def _lines_named(text: str, path: Path) -> list[int]:
    return [int(n) for n in re.findall(re.escape(str(path)) + r":(\d+)", text)]


@PROPERTY
@given(lines=st.lists(_label_line, max_size=6), newline=st.sampled_from(["\n", "\r\n", "\r"]))
def test_the_label_file_check_names_the_file_and_line_of_each_problem(lines, newline):
    text = newline.join(lines)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "labels" / "x.txt"
        path.parent.mkdir()
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        count, errors = _check_labels(path, 4)
    assert 0 <= count <= len(text.splitlines()) + 1
    editor_lines = len(re.split(r"\r\n|\r|\n", text))
    for error in errors:
        assert error.startswith(f"{path}:"), error
        assert all(1 <= n <= editor_lines for n in _lines_named(error, path)), error
        assert len(error) < 1_000, error


@PROPERTY
@given(rows=st.lists(st.tuples(st.integers(0, 3), st.one_of(_box(), _polygon)), max_size=8), fmt=_number_format)
def test_valid_label_files_pass_and_read_back(rows, fmt):
    boxes_only = all(len(v) == 4 for _, v in rows) or all(len(v) > 4 for _, v in rows)  # Ultralytics: not mixed
    text = "".join(" ".join([str(c), *map(fmt, v)]) + "\n" for c, v in rows if boxes_only or len(v) == 4)
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "images" / "x.jpg"
        path = Path(tmp) / "labels" / "x.txt"
        path.parent.mkdir()
        path.write_text(text)
        count, errors = _check_labels(path, 4)
        read = normalised_boxes(image)
    assert (count, errors) == (len(text.splitlines()), [])
    assert read.shape == (count, 5)
    assert (read[:, 1:] >= -1e-3).all() and (read[:, 1:] <= 1 + 1e-3).all()


def _label_bytes_from_lines(lines: list[str], newline: str, bom: bool, junk: bytes, at: int) -> bytes:
    data = newline.join(lines).encode("utf-8", "surrogatepass")
    at = min(at, len(data))
    return (b"\xef\xbb\xbf" if bom else b"") + data[:at] + junk + data[at:]


_good_row = st.builds(
    lambda c, v: " ".join([str(c), *(f"{x:.6f}" for x in v)]), st.integers(0, 5), st.one_of(_box(), _polygon)
)
_label_bytes = st.one_of(
    st.binary(max_size=300),
    st.builds(
        _label_bytes_from_lines,
        st.lists(st.one_of(_good_row, _good_row, _label_line), max_size=8),
        st.sampled_from(["\n", "\r\n", "\r"]),
        st.booleans(),  # UTF-8 byte-order mark
        st.sampled_from([b"", b"", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\xef\xbb\xbf", b"\xe2\x80\xa8"]),
        st.integers(0, 400),
    ),
)


@pytest.fixture(scope="module")
def one_label(shapes, tmp_path_factory):
    """(data YAML, image, its label file) in a copy of the dataset whose other val labels are good."""
    root = tmp_path_factory.mktemp("labelled") / "ds"
    shutil.copytree(shapes / "images" / "val", root / "images" / "val")
    shutil.copytree(shapes / "labels" / "val", root / "labels" / "val")
    (root / "data.yaml").write_text("path: .\ntrain: images/val\nval: images/val\nnames: [a, b, c, d]\n")
    return root / "data.yaml", root / "images" / "val" / "val_00000.jpg", root / "labels" / "val" / "val_00000.txt"


@PROPERTY
@given(data=_label_bytes)
def test_any_label_file_bytes_pass_the_dataset_check_or_fail_naming_the_file(one_label, data):
    verify_image_label = pytest.importorskip("ultralytics.data.utils").verify_image_label
    data_yaml, image, label = one_label
    label.write_bytes(data)
    others = sum(len(normalised_boxes(p)) for p in sorted(image.parent.iterdir()) if p != image)
    try:
        summary = check_dataset(data_yaml, splits=("val",))
    except DatasetError as error:
        _assert_clear(error, str(label))
        lines = len(re.split(rb"\r\n|\r|\n", data))
        assert all(1 <= n <= lines for n in _lines_named(str(error), label)), str(error)
        with contextlib.suppress(DatasetError):  # a checked file may still read; an unchecked one fails clearly
            labelled_image(image)
        return
    rows = normalised_boxes(image)
    assert summary.instances["val"] == others + len(rows)
    assert ((rows[:, 0] >= 0) & (rows[:, 0] < 4)).all()
    assert len(labelled_image(image).boxes) == len(rows)
    # what the check passes, Ultralytics' own label check accepts (index 8 counts corrupt files)
    verdict = verify_image_label((str(image), str(label), "", False, 4, 0, 0, False))
    assert verdict[8] == 0, verdict[-1]


def test_reading_an_unchecked_label_file_fails_naming_file_and_line(tmp_path):
    image, label = tmp_path / "images" / "x.jpg", tmp_path / "labels" / "x.txt"
    label.parent.mkdir()
    label.write_text("0 0.5 0.5 0.1 0.1\n0 0.5\n")
    with pytest.raises(DatasetError, match="got 2 fields") as info:
        normalised_boxes(image)
    _assert_clear(info.value, f"{label}:2")
    label.write_bytes(b"0 0.5 0.5 0.1 0.1\n\xff\n")
    with pytest.raises(DatasetError, match="not UTF-8") as info:
        normalised_boxes(image)
    _assert_clear(info.value, f"{label}:2")


# ----------------------------------------------------------------------------------------------------------------
# 2. data YAMLs
# ----------------------------------------------------------------------------------------------------------------

_REL = "<relative path to the dataset>"  # replaced per example: the dataset root relative to the YAML's folder
_ROOT = "<absolute path to the dataset>"


def _safe_relative(text: str) -> bool:
    """A random relative path that cannot climb out of the example's folder (so no check walks a big tree)."""
    return not text.startswith(("/", "~")) and sum(part == ".." for part in re.split(r"[/\\]", text)) <= 2


_any_text = st.text(max_size=30).filter(_safe_relative)
_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-(10**30), 10**30), st.floats(), st.text(max_size=10)
)
_yaml_value = st.recursive(
    _scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), inner, max_size=4)
    ),
    max_leaves=12,
)
_odd_paths = [
    *(".", "", "..", "../..", "./.", "nope", "no/such/folder", "/nonexistent/wb-data", "~wb-no-such-user/data"),
    *("~/wb-definitely-missing", "a\x00b", "a" * 300, "b/" * 2100, "\ud800", "\t", " ", "C:\\data", "data.yaml"),
]
_path_value = st.one_of(
    st.sampled_from([_ROOT, _ROOT, _REL, _REL, *_odd_paths, f"{_ROOT}/data.yaml", f"{_ROOT}/images/val"]),
    _any_text,
    _yaml_value,
)
_split_text = st.sampled_from(
    [
        *("images/train", "images/val", "images/train", "images/val", "images", "labels/val", "train.txt"),
        *("missing.txt", "binary.txt", "images/train/train_00000.jpg", "data.yaml", "manifest.json", ".."),
        *(f"{_ROOT}/images/val", f"{_ROOT}/train.txt", f"{_ROOT}/nope", *_odd_paths),
    ]
)
_split_value = st.one_of(
    _split_text, st.lists(_split_text, min_size=1, max_size=3), _any_text, st.lists(_any_text, max_size=2), _yaml_value
)
_FOUR = ["circle", "triangle", "square", "star"]
_names_value = st.one_of(
    st.just(_FOUR),
    st.just(dict(enumerate(_FOUR))),
    st.sampled_from(
        [
            *([], {}, "circle", 4, None, [None], [[1, 2]], [{"a": 1}], ["a", "b"], {1: "a"}, {-1: "a", 0: "b"}),
            *({0: "a", "x": "b"}, {"0": "a", "1": "b"}, {True: "a"}, {0: None}, {0: "a", 2: "c"}, ["a"] * 40),
            *({0: "a", "0": "b"}, [1, 2, 3, 4], [True, False, 1.5, ""], {0.0: "a", 1.0: "b"}, {0.5: "a"}),
        ]
    ),
    st.lists(st.text(max_size=5), min_size=1, max_size=5),
    st.dictionaries(st.integers(-2, 6), st.text(max_size=5), max_size=5),
    _yaml_value,
)
_nc_value = st.one_of(
    st.sampled_from([4, 4, 3, 5, 0, -1, "4", 4.0, 4.5, True, None, "x", 10**30, [4], float("nan"), 10**9])
)
_document = st.one_of(
    st.fixed_dictionaries(  # mostly valid, so that passing datasets are common
        {"path": st.sampled_from([_ROOT, _REL]), "train": _split_value, "val": _split_value, "names": _names_value},
        optional={"nc": _nc_value, "test": _split_value, "extra": _yaml_value},
    ),
    st.fixed_dictionaries(
        {},
        optional={
            "path": _path_value,
            "train": _split_value,
            "val": _split_value,
            "names": _names_value,
            "nc": _nc_value,
            "extra": _yaml_value,
        },
    ),
    _yaml_value,  # any top level: scalar, list, mapping
)


def _fill(text: str, root: Path, folder: Path) -> str:
    return text.replace(_ROOT, str(root)).replace(_REL, os.path.relpath(root, folder))


def _filled(value, root: Path, folder: Path):
    if isinstance(value, str):
        return _fill(value, root, folder)
    if isinstance(value, list):
        return [_filled(v, root, folder) for v in value]
    if isinstance(value, dict):
        return {k: _filled(v, root, folder) for k, v in value.items()}
    return value


@contextlib.contextmanager
def _example_folder():
    """A fresh folder, four levels down, that is also the working folder (checks fall back to it for 'path')."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "a" / "b" / "c" / "d"
        folder.mkdir(parents=True)
        with contextlib.chdir(folder):
            yield folder


def _check_outcome(data_yaml: Path) -> DatasetSummary | None:
    """check_dataset's summary, None after a clear DatasetError; a passing dataset re-checks the same from its
    resolved YAML, and list_images agrees."""
    try:
        summary = check_dataset(data_yaml)
    except DatasetError as error:
        _assert_clear(error, str(data_yaml))
        try:
            list_images(data_yaml, "val")
        except DatasetError as again:
            _assert_clear(again, str(data_yaml))
        return None
    assert summary.names and all(type(k) is int and type(v) is str for k, v in summary.names.items())
    assert summary.images["train"] > 0 and summary.images["val"] > 0
    assert len(list_images(data_yaml, "val")) == summary.images["val"]
    out = data_yaml.parent / "resolved"
    out.mkdir()
    again = check_dataset(summary.write_resolved(out))
    assert (again.names, again.images, again.instances) == (summary.names, summary.images, summary.instances)
    return summary


@PROPERTY
@given(document=_document, flow=st.sampled_from([None, True, False]), unicode=st.booleans())
def test_any_yaml_document_gives_a_summary_or_a_clear_error(shapes, document, flow, unicode):
    with _example_folder() as folder:
        text = yaml.safe_dump(_filled(document, shapes, folder), default_flow_style=flow, allow_unicode=unicode)
        data_yaml = folder / "data.yaml"
        data_yaml.write_bytes(text.encode("utf-8", "surrogatepass"))
        _check_outcome(data_yaml)


@PROPERTY
@given(data=st.one_of(st.text(), st.binary(), st.text().map(lambda t: t.encode("utf-16", "surrogatepass"))))
def test_any_text_or_bytes_as_a_data_yaml_give_a_summary_or_a_clear_error(shapes, data):
    with _example_folder() as folder:
        data_yaml = folder / "data.yaml"
        data_yaml.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
        _check_outcome(data_yaml)


def _bomb(levels: int, refs: int, key: str) -> str:
    """A billion-laughs document: `refs ** levels` leaves once expanded, a few lines as written."""
    lines = ['l0: &l0 ["lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * refs)}]" for i in range(1, levels + 1)]
    top = f"*l{levels}"
    body = {
        "names": f"path: {_ROOT}\ntrain: images/train\nval: images/val\nnames: {top}",
        "names-entry": f"path: {_ROOT}\ntrain: images/train\nval: images/val\nnames: [{top}, a]",
        "names-value": f"path: {_ROOT}\ntrain: images/train\nval: images/val\nnames: {{0: {top}}}",
        "train": f"path: {_ROOT}\ntrain: {top}\nval: images/val\nnames: [a]",
        "val-entry": f"path: {_ROOT}\ntrain: images/train\nval: [images/val, {top}]\nnames: [a]",
        "path": f"path: {top}\ntrain: images/train\nval: images/val\nnames: [a]",
        "nc": f"path: {_ROOT}\ntrain: images/train\nval: images/val\nnames: [a]\nnc: {top}",
        "extra": f"path: {_ROOT}\ntrain: images/train\nval: images/val\nnames: [a, b, c, d]\nextra: {top}",
    }[key]
    return "\n".join(lines) + "\n" + body + "\n"


_BOMB_KEYS = ["names", "names-entry", "names-value", "train", "val-entry", "path", "nc", "extra"]
_GOOD = f"path: {_ROOT}\ntrain: images/train\nval: images/val\nnames: [circle, triangle, square, star]\n"
_templates = st.one_of(
    st.sampled_from(
        [
            _GOOD,
            _GOOD.replace("train: ", "train:\t"),  # a tab after the colon
            "\t" + _GOOD,  # a tab indent
            _GOOD + "names: {0: a}\n",  # duplicate key: the last one wins in PyYAML, as in Ultralytics
            _GOOD + "train: images/nope\n",
            _GOOD.replace("names: [circle", "names: &n [circle") + "also: *n\n",  # anchor and alias
            f"base: &b {{train: images/train, val: images/val}}\n<<: *b\npath: {_ROOT}\nnames: [a, b, c, d]\n",
            "names: *undefined\n",
            _GOOD + "nc: 3\n",
            _GOOD + "nc: '4'\n",
            _GOOD.replace("names: [circle, triangle, square, star]", "nc: 4"),  # nc without names
            _GOOD.replace("names: [circle, triangle, square, star]", "nc: 1000000000000"),
            _GOOD + "names: {0: 2020-02-30}\n",  # a date YAML reads and Python refuses
            _GOOD + "extra: !!float abc\n",
            _GOOD + "nc: " + "9" * 5000 + "\n",
            _GOOD + "extra: !!binary '@@'\n",
            _GOOD + "? [a, b]\n: unhashable key\n",
            _GOOD.replace("path: ", "path: !!str "),
            _GOOD.replace("images/val", "images/val\x00"),
            _GOOD.replace("images/val", '"images/val\\0"'),
            _GOOD.replace("images/val", '"\\ud800"'),
            _GOOD.replace(f"path: {_ROOT}", f"path: {_REL}"),
            _GOOD.replace(f"path: {_ROOT}", "path: ~wb-no-such-user"),
            _GOOD.replace(f"path: {_ROOT}", f"path: {_ROOT}/data.yaml"),
            _GOOD.replace("images/train", "[images/train, train.txt]"),
            _GOOD.replace("images/train", "binary.txt"),
            _GOOD.replace("images/train", "missing.txt"),
            "%YAML 1.1\n---\n" + _GOOD,
            _GOOD + "---\n" + _GOOD,  # two documents
            "---\n...\n",
            "\ufeff" + _GOOD,
            _GOOD.replace("\n", "\r\n"),
        ]
    ),
    st.builds(lambda n: "names: " + "[" * n + "]" * n + "\n", st.integers(1, 3000)),  # deep nesting
    st.builds(lambda n: "names: " + "{a: " * n + "1" + "}" * n + "\n", st.integers(1, 3000)),
    st.builds(_bomb, st.integers(1, 4), st.integers(1, 5), st.sampled_from(_BOMB_KEYS)),
    st.builds(lambda good, at, junk: good[:at] + junk + good[at:], st.just(_GOOD), st.integers(0, 120), st.text()),
)


@PROPERTY
@given(template=_templates)
def test_tricky_yaml_texts_give_a_summary_or_a_clear_error(shapes, template):
    with _example_folder() as folder:
        data_yaml = folder / "data.yaml"
        data_yaml.write_bytes(_fill(template, shapes, folder).encode("utf-8", "surrogatepass"))
        _check_outcome(data_yaml)


@pytest.mark.parametrize("key", _BOMB_KEYS)
def test_an_alias_bomb_is_never_expanded(shapes, tmp_path, key):
    """10**9 leaves once expanded: the check must answer from the few lines written, in a process whose memory is
    capped, so that a regression fails here instead of taking the machine down."""
    data_yaml = tmp_path / "data.yaml"
    data_yaml.write_text(_fill(_bomb(9, 10, key), shapes, tmp_path))
    script = textwrap.dedent(
        f"""
        import resource, sys, tempfile
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
        from workbench.core.data.checks import check_dataset
        from workbench.core.errors import DatasetError
        try:
            summary = check_dataset({str(data_yaml)!r})
        except DatasetError as error:
            print("DatasetError", len(str(error)))
        else:
            summary.write_resolved(tempfile.mkdtemp())
            print("passed", summary.images)
        """
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("passed" if key == "extra" else "DatasetError"), done.stdout


_PAYLOADS = {
    "os.system": "!!python/object/apply:os.system ['touch {marker}']",
    "subprocess": "!!python/object/apply:subprocess.call [['touch', '{marker}']]",
    "new": "!!python/object/new:os.system ['touch {marker}']",
    "name": "!!python/name:os.system",
}


@pytest.mark.parametrize("payload", _PAYLOADS)
@pytest.mark.parametrize("where", ["top", "names", "train", "extra"])
def test_python_tags_in_a_data_yaml_are_refused_and_run_nothing(shapes, tmp_path, payload, where):
    marker = tmp_path / "marker"
    tag = _PAYLOADS[payload].format(marker=marker)
    good = _fill(_GOOD, shapes, tmp_path)
    text = {
        "top": tag + "\n",
        "names": good.replace("names: [circle, triangle, square, star]", f"names: {tag}"),
        "train": good.replace("train: images/train", f"train: {tag}"),
        "extra": good + f"extra: {tag}\n",
    }[where]
    data_yaml = tmp_path / "data.yaml"
    data_yaml.write_text(text)
    with pytest.raises(DatasetError, match="python/") as info:
        check_dataset(data_yaml)
    _assert_clear(info.value, str(data_yaml))
    assert not marker.exists()
    if payload == "os.system" and where == "top":  # the payload is real: an unsafe loader would have run it
        yaml.unsafe_load(text)
        assert marker.exists()


# ----------------------------------------------------------------------------------------------------------------
# 3. recipes (`workbench.core.optimize.recipes.Recipe.from_yaml` / `from_dict`)
# ----------------------------------------------------------------------------------------------------------------

_STEP_KINDS = ["prune", "sparsify", "finetune", "distill", "quantize", "qat", "export", "nope", "", 3, None]
_OPTION_NAMES = [
    *("ratio", "round_to", "epochs", "teacher", "format", "imgsz", "lr", "batch", "subset_size", "preset"),
    *("mode", "max_drop", "threads", "precisions", "accuracy", "latency_imgsz", "half", "dynamic", "opset", "x"),
]
_option_value = st.one_of(
    _scalar,
    st.sampled_from(["parent", "demo", "openvino", "onnx", "int8", "fp32", "mixed", "performance", "640"]),
    st.lists(st.one_of(st.integers(-10, 2000), st.sampled_from(["fp32", "int8", "abc"])), max_size=3),
    _yaml_value,
)
_step = st.one_of(
    st.sampled_from(_STEP_KINDS).map(lambda k: k if isinstance(k, str) else {k: {}}),
    st.dictionaries(
        st.sampled_from(_STEP_KINDS),
        st.one_of(st.none(), st.dictionaries(st.sampled_from(_OPTION_NAMES), _option_value, max_size=4), _scalar),
        min_size=1,
        max_size=2,
    ),
    _yaml_value,
)
_measure = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from(_OPTION_NAMES), _option_value, max_size=4),
    _yaml_value,
)
_recipe_document = st.one_of(
    st.fixed_dictionaries(
        {"steps": st.lists(_step, max_size=4)}, optional={"measure": _measure, "name": _scalar, "extra": _scalar}
    ),
    _yaml_value,
)


def _recipe_outcome(path: Path):
    """Recipe.from_yaml's recipe, or None after a clear ConfigError naming the file; a recipe round-trips."""
    from workbench.core.errors import ConfigError
    from workbench.core.optimize.recipes import Recipe

    try:
        recipe = Recipe.from_yaml(path)
    except ConfigError as error:
        text = str(error)
        assert str(path) in text, text
        assert error.problem.strip() and error.fix.strip(), text
        assert len(text) < 10_000, f"an error message of {len(text)} characters"
        return None
    again = Recipe.from_dict(recipe.to_dict(), source=str(path))
    assert again == recipe
    return recipe


@PROPERTY
@given(document=_recipe_document, flow=st.sampled_from([None, True, False]))
def test_any_recipe_document_gives_a_recipe_or_a_clear_error(document, flow):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "recipe.yaml"
        path.write_text(yaml.safe_dump(document, default_flow_style=flow, allow_unicode=True))
        _recipe_outcome(path)


@PROPERTY
@given(data=st.one_of(st.text(), st.binary()))
def test_any_text_or_bytes_as_a_recipe_give_a_recipe_or_a_clear_error(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "recipe.yaml"
        path.write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
        _recipe_outcome(path)


@pytest.mark.parametrize(
    "text",
    [
        "steps: [prune]\nname: 2020-02-30\n",  # a date YAML cannot build
        "steps: [prune]\nname: " + "[" * 2000 + "]" * 2000 + "\n",  # nesting deep enough to recurse out
        "steps:\n  - prune: {ratio: " + "9" * 5000 + "}\n",  # more digits than Python converts
        "a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\nd: &d [*c, *c]\nsteps: *d\n",  # aliases: small, not a bomb
    ],
)
def test_tricky_recipe_texts_give_a_clear_error(tmp_path, text):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    assert _recipe_outcome(path) is None


def test_python_tags_in_a_recipe_are_refused_and_run_nothing(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "recipe.yaml"
    path.write_text(f"steps:\n  - prune: !!python/object/apply:os.system ['touch {marker}']\n")
    from workbench.core.errors import ConfigError
    from workbench.core.optimize.recipes import Recipe

    with pytest.raises(ConfigError, match="recipe.yaml:2") as info:
        Recipe.from_yaml(path)
    assert "!!python" in info.value.fix
    assert not marker.exists()
