"""The documentation command of `workbench`: `card` (a variant's model card, from the ledger, as markdown or JSON)."""

from __future__ import annotations

from pathlib import Path


def _card(args) -> int:
    from ..core.errors import ConfigError
    from ..core.report.documentation.model_card import model_card
    from ..core.store.workspace import LEDGER_NAME, Workspace, default_workspace
    from .bundle import _variant_id

    root = Path(args.workspace).expanduser().resolve() if args.workspace else default_workspace()
    if not (root / LEDGER_NAME).is_file():  # never make an empty workspace just to say the variant is not in it
        raise ConfigError(f"no workspace at {root} (no {LEDGER_NAME})", "pass --workspace, the folder of your study")
    out = Path(args.out).expanduser().resolve() if args.out else None
    if out is not None and out.is_dir():
        raise ConfigError(f"--out {out} is a folder", "pass a file name, e.g. model-card.md (or .json)")
    workspace = Workspace(root)
    card = model_card(workspace, _variant_id(workspace, args.variant))  # an unknown variant fails here: nothing written
    if out is None:
        print(card.markdown(), end="")
        return 0
    card.save(out)
    print(f"card: {out}")
    return 0


def add_card_parsers(sub) -> None:
    card = sub.add_parser("card", help="a variant's model card from the ledger (markdown, or JSON for a .json --out)")
    card.add_argument("variant", help="the variant's id, or its exact name in the ledger")
    card.add_argument(
        "--workspace", default=None, help="the study's folder (default: $WORKBENCH_WORKSPACE or ./workbench-runs)"
    )
    card.add_argument("--out", default=None, help="write the card here (.md, or .json) instead of printing it")
    card.set_defaults(run=_card)
