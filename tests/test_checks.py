"""Bad datasets fail with a message naming the file and the fix, and nothing is written."""

import shutil
import struct
import zlib

import pytest

from workbench.core.data.checks import check_dataset
from workbench.core.errors import DatasetError


@pytest.fixture
def copy(tmp_path, tiny_dataset):
    """A writable copy of the tiny dataset with a relative `path`."""
    root = tmp_path / "ds"
    shutil.copytree(tiny_dataset.root, root)
    (root / "data.yaml").write_text(
        "path: .\ntrain: images/train\nval: images/val\nnames: [circle, triangle, square, star]\n"
    )
    return root


def _snapshot(root):
    return {p: p.stat().st_mtime_ns for p in root.rglob("*")}


def _fails(root, match, **kwargs):
    before = _snapshot(root)
    with pytest.raises(DatasetError, match=match) as info:
        check_dataset(root / "data.yaml", **kwargs)
    assert _snapshot(root) == before
    assert info.value.fix
    return info.value


def test_a_good_copy_with_relative_path_passes(copy):
    summary = check_dataset(copy / "data.yaml")
    assert summary.resolved["path"] == str(copy)


def test_missing_yaml(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        check_dataset(tmp_path / "nope.yaml")


def test_yaml_pointing_at_nothing(copy):
    (copy / "data.yaml").write_text("path: /no/such/dir\ntrain: images/train\nval: images/val\nnames: [a]\n")
    _fails(copy, "points at nothing")


def test_split_pointing_at_nothing(copy):
    (copy / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/missing\nnames: [a, b, c, d]\n")
    _fails(copy, "'val' split .* points at nothing")


def test_class_id_out_of_range_names_file_and_line(copy):
    label = copy / "labels" / "val" / "val_00002.txt"
    label.write_text(label.read_text() + "7 0.5 0.5 0.1 0.1\n")
    error = _fails(copy, "class id 7 is outside 0..3")
    assert f"{label}:" in str(error)


def test_box_outside_the_image(copy):
    label = copy / "labels" / "train" / "train_00001.txt"
    label.write_text("1 0.95 0.5 0.3 0.2\n")
    _fails(copy, "lies outside the image")


def test_pixel_coordinates_instead_of_normalised(copy):
    (copy / "labels" / "val" / "val_00000.txt").write_text("0 32 32 10 10\n")
    _fails(copy, "normalised")


def test_empty_split(copy):
    for image in (copy / "images" / "val").iterdir():
        image.unlink()
    _fails(copy, "is empty")


def test_no_labels_at_all(copy):
    shutil.rmtree(copy / "labels" / "val")
    _fails(copy, "no label files")


def test_image_that_does_not_decode(copy):
    (copy / "images" / "val" / "val_00003.jpg").write_bytes(b"not an image")
    _fails(copy, "does not decode")


def _png_header(width: int, height: int) -> bytes:
    """A valid PNG that declares `width` x `height` pixels and holds almost nothing."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + ihdr + chunk(b"IEND", b"")


def test_giant_image_header_is_refused_without_decoding(copy):
    bomb = copy / "images" / "val" / "bomb.png"
    bomb.write_bytes(_png_header(20000, 20000))
    _fails(copy, "bomb.png: declares more pixels")
    bomb.write_bytes(_png_header(9000, 9000))
    _fails(copy, "declares 9000x9000 pixels")


def test_model_with_other_classes(copy):
    _fails(copy, "model predicts 80", model_names={i: f"c{i}" for i in range(80)})


def test_many_problems_are_summarised(copy):
    for label in (copy / "labels" / "val").iterdir():
        label.write_text("9 0.5 0.5 0.1 0.1\n")
    error = _fails(copy, "8 problem")
    assert "and 3 more" in str(error)
