"""What a sweep asks of the capabilities it drives: reading a spec, checking and running a trial's recipe (the
optimizer's), and naming the catalog's targets (the advisor's). The sweep imports neither: the composition layer
hands a space its toolkit (`services.recipe_sweeps.OptimizerToolkit`, which `workbench.SearchSpace` brings), and
each trial carries it to the engine that runs it, in this process or on a Dask worker (it is pickled with the
trial, by reference to its class).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..errors import WorkbenchError
from ..progress import ProgressFn

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace


@dataclass(frozen=True)
class RecipeRun:
    """What a trial's recipe made: its final variant and every variant, in order."""

    final_id: int
    variants: tuple[int, ...]


class TrialFailed(WorkbenchError):
    """A trial's recipe failed part-way; `variants` are those its finished steps made (they stay recorded)."""

    def __init__(self, problem: str, fix: str = "", variants: tuple[int, ...] = ()):
        super().__init__(problem, fix)
        self.variants = tuple(variants)


class Toolkit(Protocol):
    """The recipe machinery and the target catalog, as a sweep uses them. Every method raises ConfigError (problem
    and fix) for what it refuses."""

    def read_yaml(self, path: Path | str, what: str) -> object:
        """The plain data of a YAML file (no Python objects built)."""
        ...

    def check_recipe(self, recipe: dict, source: str) -> None:
        """A recipe (its "name" and "steps") through the recipe schema's own checks; `source` names it in messages."""
        ...

    def step_options(self, kind: str) -> list[str]:
        """The options a step of `kind` takes (KeyError: no such kind)."""
        ...

    def check_fit(self, recipe: dict, net, data_yaml, *, source: str, split_sizes: dict | None = None) -> None:
        """The recipe's steps against the input model and the data, writing nothing."""
        ...

    def run_recipe(self, workspace: Workspace, recipe: dict, model_id: int, data_yaml, *, source: str,
                   progress: ProgressFn | None = None) -> RecipeRun:  # fmt: skip
        """Run the recipe from `model_id`, its variants recorded but not measured (a trial measures its final one).

        Raises:
            TrialFailed: a step failed (with the variants the steps before it made). Cancelled: stopped.
        """
        ...

    def target_ids(self) -> list[str]:
        """The ids of the catalog's targets a latency constraint may name."""
        ...
