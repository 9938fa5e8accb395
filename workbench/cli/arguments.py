"""Argument types and flags the `workbench` commands share."""

from __future__ import annotations

import argparse


def _number_type(parse, expected: str, accept, bounds: str):
    """An argparse type: the text read by `parse` (else "expected <expected>") and kept if `accept(number)` (else
    "must be <bounds>"): a value out of range is refused, never replaced by a default."""

    def convert(value: str):
        try:
            number = parse(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}") from None
        if not accept(number):
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return number

    return convert


_positive = _number_type(int, "a whole number", lambda n: n >= 1, "at least 1")
_count = _number_type(int, "a whole number", lambda n: n >= 0, "0 or more")
_port = _number_type(int, "a port number", lambda n: 1 <= n <= 65535, "a port, 1-65535")
_seconds = _number_type(float, "a number of seconds", lambda n: n > 0, "more than 0")
_mebibytes = _number_type(float, "a number of MiB", lambda n: 0 < n <= 4096, "more than 0 and at most 4096 MiB")
_per_second = _number_type(float, "requests per second", lambda n: 0 < n < 1e6, "more than 0 and under a million")
_fraction = _number_type(float, "a fraction such as 0.01", lambda n: 0 < n <= 1, "more than 0 and at most 1")


def _trust_flag(command) -> None:
    command.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="load a .pt whose pickle names more than model classes: it may run code; only for a file you checked",
    )
