"""Argument types and flags the `workbench` commands share."""

from __future__ import annotations

import argparse


def _positive(value: str) -> int:
    """An argparse type: a whole number >= 1 (zero and negatives are refused, never replaced by a default)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {value}")
    return number


def _count(value: str) -> int:
    """A whole number >= 0."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {number}")
    return number


def _port(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {value!r}") from None
    if not 1 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1-65535, got {number}")
    return number


def _mebibytes(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of MiB, got {value!r}") from None
    if not 0 < number <= 4096:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 4096 MiB, got {value}")
    return number


def _per_second(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected requests per second, got {value!r}") from None
    if not 0 < number < 1e6:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {value}")
    return number


def _fraction(value: str) -> float:
    """A share: more than 0 and at most 1."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction such as 0.01, got {value!r}") from None
    if not 0 < number <= 1:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 1, got {value}")
    return number


def _trust_flag(command) -> None:
    command.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="load a .pt whose pickle names more than model classes: it may run code; only for a file you checked",
    )
