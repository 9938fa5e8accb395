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


def _trust_flag(command) -> None:
    command.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="load a .pt whose pickle names more than model classes: it may run code; only for a file you checked",
    )
