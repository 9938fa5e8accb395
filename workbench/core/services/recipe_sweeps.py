"""Sweeps over the optimizer's recipes: the toolkit a sweep reads, checks and runs its trials' recipes with (the
optimizer's recipe schema and pipeline, the advisor's catalog of targets), the `SearchSpace` that brings it
(`workbench.SearchSpace`), and the sweep specs that come with the package.

The sweep imports no optimizer: a space carries this toolkit, and each of its trials carries it to the engine that
runs it (a Dask worker unpickles it by reference to `OptimizerToolkit`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..progress import ProgressFn
from ..sweep import space
from ..sweep.toolkit import RecipeRun, TrialFailed

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace


class OptimizerToolkit:
    """The `sweep.toolkit.Toolkit` of the optimizer's recipes and the advisor's catalog (imported on use, so a
    sweep that never runs a trial never loads the optimizer)."""

    def read_yaml(self, path: Path | str, what: str):
        from ..optimize.recipes import read_yaml  # the recipe loader's safe reading and its errors

        return read_yaml(path, what)

    def check_recipe(self, recipe: dict, source: str) -> None:
        from ..optimize.recipes import Recipe

        Recipe.from_dict(recipe, source=source)

    def step_options(self, kind: str) -> list[str]:
        import dataclasses

        from ..optimize.recipes import STEP_CONFIGS

        return [f.name for f in dataclasses.fields(STEP_CONFIGS[kind]) if f.init]

    def check_fit(self, recipe: dict, net, data_yaml, *, source: str, split_sizes: dict | None = None) -> None:
        from ..optimize.recipes import Recipe, check_recipe

        check_recipe(Recipe.from_dict(recipe, source=source), net, data_yaml, split_sizes=split_sizes)

    def run_recipe(self, workspace: Workspace, recipe: dict, model_id: int, data_yaml, *, source: str,
                   progress: ProgressFn | None = None) -> RecipeRun:  # fmt: skip
        import dataclasses

        from ..optimize import recipes

        unmeasured = dataclasses.replace(recipes.Recipe.from_dict(recipe, source=source), measure=None)
        try:
            result = recipes.run_recipe(
                workspace, unmeasured, model_id, data_yaml, measure_input=False, progress=progress
            )
        except recipes.PipelineError as exc:
            made = tuple(v for step in exc.completed for v in step.variants)
            raise TrialFailed(exc.problem, exc.fix, made) from exc
        return RecipeRun(result.final_id, tuple(v for step in result.steps for v in step.variants))

    def target_ids(self) -> list[str]:
        from ..advise.catalog import load_catalog

        return [t.id for t in load_catalog(probe=False)]


OPTIMIZER_TOOLKIT = OptimizerToolkit()


class SearchSpace(space.SearchSpace):
    """A sweep over the optimizer's recipes (see `sweep.space` for the YAML form): `workbench.SearchSpace`."""

    default_toolkit = OPTIMIZER_TOOLKIT


def shipped_sweeps() -> dict[str, Path]:
    """The sweep specs that come with the package (workbench/recipes/sweeps), by name."""
    from importlib import resources

    folder = Path(str(resources.files("workbench") / "recipes" / "sweeps"))
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def load_sweep(shipped: str | None, own: str = "") -> tuple[SearchSpace, Path]:
    """The search space of `own` (a YAML path) when given, else of the shipped spec named `shipped`; checked."""
    text = str(own or "").strip()
    if text:
        path = Path(text).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"sweep spec {text} does not exist" + (" (it is a folder)" if path.is_dir() else ""),
                "give the path of a sweep YAML file (see workbench/recipes/sweeps/small.yaml), "
                "or clear the field to run the shipped spec",
            )
    else:
        specs = shipped_sweeps()
        if shipped not in specs:
            raise ConfigError(f"no shipped sweep {shipped!r}", f"pick one of {', '.join(specs)}, or give a YAML path")
        path = specs[shipped]
    return SearchSpace.from_yaml(path), path
