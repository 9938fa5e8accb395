"""Typed ledger records: a Variant (an artifact and its lineage) and a Measurement (one result and its context)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path


class Format(StrEnum):
    """What an artifact is, spelled one way everywhere (the ledger's `format` column)."""

    PYTORCH = "pytorch"
    ONNX = "onnx"
    OPENVINO = "openvino"
    TORCHSCRIPT = "torchscript"
    TFLITE = "tflite"  # LiteRT (TensorFlow Lite) flatbuffer

    @classmethod
    def of_path(cls, path: Path | str) -> Format:
        """The format of an artifact from its name: .pt, .onnx, .torchscript, .tflite, an OpenVINO folder or .xml."""
        name = Path(path).name
        if name.endswith(".pt"):
            return cls.PYTORCH
        if name.endswith(".onnx"):
            return cls.ONNX
        if name.endswith(".torchscript"):
            return cls.TORCHSCRIPT
        if name.endswith(".tflite"):
            return cls.TFLITE
        if name.endswith(("_openvino_model", ".xml")):
            return cls.OPENVINO
        raise ValueError(f"no known artifact format for {name}")

    @classmethod
    def parse(cls, value: str | None) -> Format | None:
        """A stored spelling, including the 'pt' that early ledgers wrote for PyTorch checkpoints."""
        if value is None:
            return None
        return cls.PYTORCH if value == "pt" else cls(value)


def _json(value):
    return json.loads(value) if isinstance(value, str) else (value or {})


@dataclass(frozen=True)
class Variant:
    """One model artifact with its lineage: the parent, the step that made it and that step's parameters."""

    id: int
    name: str
    parent_id: int | None
    step: str
    params: dict = field(default_factory=dict)
    format: Format | None = None
    path: str | None = None  # relative to the workspace root
    sha256: str | None = None
    size_bytes: int | None = None
    fingerprint_id: str | None = None
    created_at: str = ""

    @classmethod
    def from_row(cls, row: Mapping) -> Variant:
        return cls(
            id=int(row["id"]),
            name=row["name"],
            parent_id=row["parent_id"],
            step=row["step"],
            params=_json(row["params"]),
            format=Format.parse(row["format"]),
            path=row["path"],
            sha256=row["sha256"],
            size_bytes=row["size_bytes"],
            fingerprint_id=row["fingerprint_id"],
            created_at=row["created_at"],
        )

    @property
    def is_pytorch(self) -> bool:
        return self.format is Format.PYTORCH

    def as_dict(self) -> dict:
        return {**self.__dict__, "format": None if self.format is None else self.format.value}


@dataclass(frozen=True)
class Measurement:
    """One latency, accuracy or parity result of a variant, with the context it was measured in."""

    id: int
    variant_id: int
    kind: str
    metrics: dict = field(default_factory=dict)
    context: dict = field(default_factory=dict)
    fingerprint_id: str | None = None
    created_at: str = ""

    @classmethod
    def from_row(cls, row: Mapping) -> Measurement:
        return cls(
            id=int(row["id"]),
            variant_id=int(row["variant_id"]),
            kind=row["kind"],
            metrics=_json(row["metrics"]),
            context=_json(row["context"]),
            fingerprint_id=row["fingerprint_id"],
            created_at=row["created_at"],
        )

    @property
    def status(self) -> str:
        return self.context.get("status", "ok")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict:
        return dict(self.__dict__)
