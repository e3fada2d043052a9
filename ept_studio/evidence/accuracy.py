"""``ept-studio bench accuracy``: the paper's K-shot protocol on a dataset, written as JSON, markdown
and plots.

``run_accuracy`` is a generator: it yields :class:`AccuracyPlanned`, one :class:`EpisodeDone` per
training run, then :class:`AccuracySaved`. Each run is saved in its own file as it finishes and
a sweep into the same folder skips the runs already there (:mod:`ept_studio.evidence.sweep_runs`);
:mod:`ept_studio.evidence.ray_sweep` runs the same runs as Ray tasks. The engine (``core``) is imported inside the functions, so
importing this module does not load torch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ept_studio import RESEARCH_USE_NOTICE, __version__
from ept_studio.common.errors import ConfigError
from ept_studio.evidence.accuracy_report import (
    finite_or_none,
    medfmc_table,
    results_markdown,
    summary_dicts,
)
from ept_studio.evidence.datasets import LabelledDataset, MedfmcData, load_dataset, load_medfmc
from ept_studio.evidence.datasets.base import shrink
from ept_studio.evidence.protocol_calibration import DEFAULT_RESPLITS
from ept_studio.evidence.sweep_runs import (
    RunKey,
    episode_result,
    finished_runs,
    run_record,
    save_run,
    sweep_fingerprint,
)

if TYPE_CHECKING:
    import torch

    from ept_studio.core.backbones import LoadedBackbone
    from ept_studio.core.training import TrainRecipe
    from ept_studio.evidence.protocol import (
        Episode,
        EpisodeResult,
        FewShotPool,
        ProtocolConfig,
        SupportDraw,
    )

DEFAULT_METHODS = ("ept", "linear", "vpt", "lora", "bias", "full")
CACHE_MAX_SIDE = 512
RESULTS_FORMAT = "ept-studio-accuracy/1"


@dataclasses.dataclass(frozen=True)
class AccuracyRequest:
    """One protocol run. ``dataset`` names a built-in set; or ``medfmc_root`` + ``medfmc_task``.

    ``draws`` are random support draws (for MedFMC: the release's splits exp1..exp``draws``);
    ``recipe`` overrides the paper recipe (``{"epochs": 3}``), identically for every method;
    ``{"preset": "default", ...}`` starts from another preset. The method ``"prototype"`` is the
    nearest-centroid baseline (no training). Each run's query images are split into a calibration
    part (``calibration_fraction`` of each class, rounded down) and an evaluation part, for the
    temperature and the ``set_coverage`` prediction sets
    (:mod:`ept_studio.evidence.protocol_calibration`).
    """

    out: Path
    dataset: str | None = None
    medfmc_root: Path | None = None
    medfmc_task: str | None = None
    shots: tuple[int, ...] = (1, 5, 10)
    draws: int = 5
    seeds: int = 4
    methods: tuple[str, ...] = DEFAULT_METHODS
    backbone: str | None = None
    backbone_weights: Path | None = None
    input_size: int | None = None
    """Build the backbone for this input size instead of its own (None: its own)."""
    detail_size: int | None = None
    """Also average each trained method's probabilities with the untrained prototype's on the
    backbone built for this input size (:mod:`ept_studio.core.detail`); None: no detail view."""
    recipe: dict[str, Any] = dataclasses.field(default_factory=dict)
    queries_per_class: int | None = None
    resamples: int = 1000
    seed: int = 0
    command: str = ""
    hold_out: bool = False
    set_coverage: float = 0.9
    calibration_fraction: float = 0.5
    calibration_resplits: int = DEFAULT_RESPLITS

    def __post_init__(self) -> None:
        if (self.dataset is None) == (self.medfmc_root is None):
            raise ConfigError("choose either a built-in --dataset or --medfmc ROOT with --task")
        if self.medfmc_root is not None and self.medfmc_task is None:
            raise ConfigError("--medfmc needs --task chest, colon or endo")
        if self.recipe.get("tie_break") is not None and not self.hold_out:
            raise ConfigError(
                "--tie-break needs --hold-out: it chooses among the epochs the held-out images "
                "score, and without a held-out set every run keeps its last epoch"
            )


@dataclasses.dataclass(frozen=True)
class AccuracyPlanned:
    """The data is read and the runs are planned."""

    title: str
    counts: dict[str, int]
    runs: int
    notes: tuple[str, ...]
    skipped: int
    finished: int = 0
    """Runs already saved in the results folder for the same settings: not run again."""


@dataclasses.dataclass(frozen=True)
class EpisodeDone:
    """One training run finished (``index`` counts from 1)."""

    index: int
    total: int
    method: str
    shots: int
    metric: str
    value: float
    seconds: float
    eta_s: float


@dataclasses.dataclass(frozen=True)
class AccuracySaved:
    """Everything is written; ``markdown`` is the report's text."""

    results_json: Path
    results_md: Path
    plots: tuple[Path, ...]
    markdown: str
    wall_seconds: float


@dataclasses.dataclass(frozen=True, eq=False)
class _Plan:
    title: str
    dataset: LabelledDataset
    pool: FewShotPool
    draws: list[SupportDraw]
    medfmc: MedfmcData | None


def run_accuracy(
    request: AccuracyRequest,
    backbone: LoadedBackbone | None = None,
    cancel: Callable[[], bool] | None = None,
    detail: LoadedBackbone | None = None,
) -> Iterator[object]:
    """Run the protocol (see the module docstring); ``backbone`` replaces the requested one, and
    ``detail`` the backbone built for ``request.detail_size``.

    Runs already saved in ``request.out`` for the same settings are skipped (see
    :mod:`ept_studio.evidence.sweep_runs`); each finished run is saved at once."""
    from ept_studio.core.backbones import load_backbone

    start = time.perf_counter()
    sweep = prepare_sweep(request)
    loaded = backbone or load_backbone(
        request.backbone, weights=request.backbone_weights, img_size=request.input_size
    )
    detail_view = detail or _detail_backbone(request)
    if detail_view is not None and detail_view.spec.input_size <= loaded.spec.input_size:
        raise ConfigError(
            f"--detail {detail_view.spec.input_size} must be larger than the "
            f"{loaded.spec.input_size} px the tuned model sees"
        )
    fingerprint = sweep_fingerprint(request, loaded.weights_sha256)
    records = finished_runs(request.out, fingerprint, sweep.keys)
    missing = [key for key in sweep.keys if key not in records]
    yield sweep.planned(len(records))
    for index, key in enumerate(missing, start=1):
        record = run_sweep_episode(sweep, key, loaded, cancel, detail_view)
        save_run(request.out, key, record)
        records[key] = record
        yield sweep.episode_done(record, index, len(missing), time.perf_counter() - start)
    yield save_sweep(sweep, loaded, records, start)


@dataclasses.dataclass(frozen=True, eq=False)
class PreparedSweep:
    """A request's data read and its runs planned: what every machine of a sweep rebuilds alike
    (the plan is seeded), so that a run is named by its :class:`RunKey` alone."""

    request: AccuracyRequest
    config: ProtocolConfig
    recipe: TrainRecipe
    plan: _Plan
    episodes: dict[RunKey, Episode]
    notes: tuple[str, ...]
    images: _ImageCache

    @property
    def keys(self) -> list[RunKey]:
        """Every run, in the plan's order (the order of the results)."""
        return list(self.episodes)

    def planned(self, finished: int) -> AccuracyPlanned:
        return AccuracyPlanned(
            self.plan.title,
            self.plan.dataset.counts(),
            len(self.episodes),
            self.notes + self.plan.dataset.notes,
            len(self.plan.dataset.skipped),
            finished,
        )

    def episode_done(
        self, record: Mapping[str, Any], index: int, total: int, elapsed: float
    ) -> EpisodeDone:
        """The progress event of the ``index``-th run of ``total`` run this time."""
        result = record["result"]
        metric = "map" if self.plan.dataset.label_mode == "multi" else "accuracy"
        value = result["metrics"][metric]
        return EpisodeDone(
            index,
            total,
            result["method"],
            result["shots"],
            metric,
            math.nan if value is None else float(value),
            float(result["train_seconds"]),
            elapsed / index * (total - index),
        )


def prepare_sweep(request: AccuracyRequest) -> PreparedSweep:
    """Read ``request``'s data (names and labels; pixels on first use) and plan its runs."""
    from ept_studio.core.training import recipe_from_settings
    from ept_studio.evidence.protocol import ProtocolConfig, method_configs, plan_episodes

    config = ProtocolConfig(
        shots=request.shots,
        draws=request.draws,
        seeds=request.seeds,
        queries_per_class=request.queries_per_class,
        resamples=request.resamples,
        seed=request.seed,
        hold_out=request.hold_out,
        calibration_fraction=request.calibration_fraction,
        set_coverage=request.set_coverage,
        calibration_resplits=request.calibration_resplits,
    )
    recipe = recipe_from_settings(request.recipe)
    methods = method_configs(_checked_methods(request.methods))
    plan = _plan(request, config)
    episodes = {
        RunKey(e.method, e.draw.shots, e.draw.draw, e.seed_index): e
        for e in plan_episodes(plan.draws, methods, config)
    }
    notes = tuple(sorted({note for draw in plan.draws for note in draw.notes}))
    return PreparedSweep(request, config, recipe, plan, episodes, notes, _ImageCache(plan.dataset))


def run_sweep_episode(
    sweep: PreparedSweep,
    key: RunKey,
    backbone: LoadedBackbone,
    cancel: Callable[[], bool] | None = None,
    detail: LoadedBackbone | None = None,
) -> dict[str, Any]:
    """Train and evaluate one run of the sweep; its run record (plain data, see
    :func:`~ept_studio.evidence.sweep_runs.run_record`). The serial sweep and a Ray task both
    call this: the same key on the same kind of device gives the same numbers. ``detail``: the
    backbone built for ``detail_size``, when the request asks for the detail view."""
    from ept_studio.evidence.protocol import run_episode

    result = run_episode(
        sweep.episodes[key],
        sweep.plan.pool,
        sweep.images,
        backbone,
        sweep.recipe,
        cancel,
        sweep.config.hold_out,
        sweep.config.calibration(),
        detail,
    )
    fingerprint = sweep_fingerprint(sweep.request, backbone.weights_sha256)
    return run_record(key, fingerprint, result)


def save_sweep(
    sweep: PreparedSweep,
    loaded: LoadedBackbone,
    records: Mapping[RunKey, Mapping[str, Any]],
    start: float,
) -> AccuracySaved:
    """Write ``results.json``, the plots and ``results.md`` from every run's record, in the
    plan's order."""
    results = [episode_result(records[key]) for key in sweep.keys]
    recipe = sweep.recipe.to_dict()
    return _save(
        sweep.request, sweep.plan, sweep.config, recipe, loaded, results, sweep.notes, start
    )


def _detail_backbone(request: AccuracyRequest) -> LoadedBackbone | None:
    """The backbone built for ``request.detail_size`` (None when the request has no detail view)."""
    if request.detail_size is None:
        return None
    from ept_studio.core.backbones import load_backbone

    return load_backbone(
        request.backbone, weights=request.backbone_weights, img_size=request.detail_size
    )


def _checked_methods(names: tuple[str, ...]) -> tuple[str, ...]:
    from ept_studio.core.methods import MethodName
    from ept_studio.evidence.protocol import PROTOTYPE_BASELINE

    known = {m.value for m in MethodName} | {PROTOTYPE_BASELINE}
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ConfigError(f"unknown methods {unknown}: choose from {', '.join(sorted(known))}")
    return tuple(dict.fromkeys(names))


def _plan(request: AccuracyRequest, config: Any) -> _Plan:
    from ept_studio.evidence.protocol import FewShotPool, plan_draws

    if request.medfmc_root is not None:
        return _plan_medfmc(request, config)
    dataset = load_dataset(str(request.dataset))
    pool = FewShotPool(
        targets=tuple(s.label for s in dataset.samples),
        class_names=dataset.class_names,
        label_mode=dataset.label_mode,  # type: ignore[arg-type]
        groups=tuple(s.group for s in dataset.samples),
    )
    return _Plan(dataset.card.title, dataset, pool, plan_draws(pool, config), None)


def _plan_medfmc(request: AccuracyRequest, config: Any) -> _Plan:
    from ept_studio.evidence.protocol import FewShotPool, explicit_draw

    experiments = tuple(range(1, request.draws + 1))
    data = load_medfmc(
        Path(str(request.medfmc_root)), str(request.medfmc_task), request.shots, experiments
    )
    dataset = data.dataset
    pool = FewShotPool(
        targets=tuple(s.label for s in dataset.samples),
        class_names=dataset.class_names,
        label_mode=dataset.label_mode,  # type: ignore[arg-type]
        groups=tuple(s.group for s in dataset.samples),
    )
    query = _capped_test(
        data.test, request.queries_per_class, len(dataset.class_names), config.seed
    )
    draws = [
        explicit_draw(pool, split.shots, split.experiment - 1, split.support, query)
        for split in data.splits
    ]
    return _Plan(dataset.card.title, dataset, pool, draws, data)


def _capped_test(
    test: tuple[int, ...], per_class: int | None, classes: int, seed: int
) -> tuple[int, ...]:
    """The whole test list, or a seeded subsample of ``per_class x classes`` images."""
    if per_class is None or per_class * classes >= len(test):
        return test
    import numpy as np

    chosen = np.random.default_rng(seed).choice(len(test), size=per_class * classes, replace=False)
    return tuple(test[int(i)] for i in sorted(chosen))


class _ImageCache:
    """Sample ``i`` as a uint8 ``[3, H, W]`` tensor, decoded once.

    Images over ``CACHE_MAX_SIDE`` pixels a side are shrunk once, before any transform, so that a
    test set of thousands of large images fits in memory (the model sees 224 px).
    """

    def __init__(self, dataset: LabelledDataset) -> None:
        self.dataset = dataset
        self.cache: dict[int, torch.Tensor] = {}

    def __call__(self, index: int) -> torch.Tensor:
        import torch

        if index not in self.cache:
            pixels = shrink(self.dataset.samples[index].read(), CACHE_MAX_SIDE)
            self.cache[index] = torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous()
        return self.cache[index]


def _save(
    request: AccuracyRequest,
    plan: _Plan,
    config: Any,
    recipe: dict[str, Any],
    loaded: LoadedBackbone,
    results: list[EpisodeResult],
    notes: tuple[str, ...],
    start: float,
) -> AccuracySaved:
    from ept_studio.evidence.plots import plot_accuracy_vs_shots, plot_reliability
    from ept_studio.evidence.protocol_stats import summarise

    summaries = summary_dicts(summarise(results, plan.pool.label_mode, config))
    wall = time.perf_counter() - start
    document = _document(request, plan, config, recipe, loaded, results, summaries, notes, wall)
    request.out.mkdir(parents=True, exist_ok=True)
    json_path = request.out / "results.json"
    json_path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    plots = (
        plot_accuracy_vs_shots(document, request.out / "accuracy_vs_k.png"),
        plot_reliability(document, request.out / "reliability.png"),
    )
    markdown = results_markdown(document, [p.name for p in plots])
    if plan.medfmc is not None:
        markdown += "\n" + medfmc_table(document, plan.medfmc.task.key)
    md_path = request.out / "results.md"
    md_path.write_text(markdown, encoding="utf-8")
    return AccuracySaved(json_path, md_path, plots, markdown, wall)


def _document(
    request: AccuracyRequest,
    plan: _Plan,
    config: Any,
    recipe: dict[str, Any],
    loaded: LoadedBackbone,
    results: list[EpisodeResult],
    summaries: list[dict[str, Any]],
    notes: tuple[str, ...],
    wall: float,
) -> dict[str, Any]:
    """The results document: no image names or paths, only counts (no PHI)."""
    import timm
    import torch

    card = dataclasses.asdict(plan.dataset.card)
    return {
        "format": RESULTS_FORMAT,
        "notice": RESEARCH_USE_NOTICE,
        "command": request.command,
        "dataset": {
            **card,
            "classes": list(plan.dataset.class_names),
            "label_mode": plan.dataset.label_mode,
            "counts": plan.dataset.counts(),
            "skipped_files": len(plan.dataset.skipped),
            "notes": list(plan.dataset.notes),
        },
        "protocol": {
            **dataclasses.asdict(config),
            "shots": list(config.shots),
            "detail_size": request.detail_size,
        },
        "draw_notes": list(notes),
        "recipe": recipe,
        "preset": str(request.recipe.get("preset", "paper")),
        "methods": list(dict.fromkeys(r.method for r in results)),
        "backbone": {"name": loaded.spec.name, "sha256": loaded.weights_sha256},
        "machine": _machine(results),
        "versions": {
            "ept_studio": __version__,
            "torch": torch.__version__,
            "timm": timm.__version__,
            "python": platform.python_version(),
        },
        "wall_seconds": round(wall, 1),
        "summaries": summaries,
        "runs": [_run_dict(r) for r in results],
    }


def _machine(results: list[EpisodeResult]) -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
        "device": results[0].device if results else "none",
    }


def _run_dict(result: EpisodeResult) -> dict[str, Any]:
    return {
        "method": result.method,
        "shots": result.shots,
        "draw": result.draw,
        "seed": result.seed,
        "classes": len(result.classes),
        "support_size": result.support_size,
        "held_out_size": result.held_out_size,
        "best_epoch": result.best_epoch,
        "query_size": result.query_size,
        "metrics": {k: finite_or_none(v) for k, v in result.metrics.items()},
        "train_seconds": round(result.train_seconds, 2),
        "trainable_parameters": result.trainable_parameters,
        "failure": result.failure,
        "calibration": result.calibration,
        "query_scores": _query_scores(result),
    }


SCORE_DECIMALS = 5
"""Logits are kept to this many decimals: far below any difference a probability or a set shows."""


def _query_scores(result: EpisodeResult) -> dict[str, Any] | None:
    """The query images' logits and targets, so calibration and prediction sets can be measured
    again from the file (more re-splits, another rule) without training again; None without
    logits. The targets are class positions (or multi-hot rows) in the run's class order."""
    if result.logits is None:
        return None
    return {
        "logits": np.round(np.asarray(result.logits, dtype=np.float64), SCORE_DECIMALS).tolist(),
        "targets": np.asarray(result.targets).astype(int).tolist(),
    }


def recalibrate_results(folder: Path) -> bool:
    """Measure ``folder``'s ``results.json`` calibration again from its runs' kept query scores
    (:func:`~ept_studio.evidence.protocol_calibration.recalibrate`) and rewrite it and its
    ``results.md``; False, and nothing written, when no run kept scores."""
    from ept_studio.evidence.protocol_calibration import recalibrate

    json_path = folder / "results.json"
    document = json.loads(json_path.read_text(encoding="utf-8"))
    document.setdefault("protocol", {}).setdefault("calibration_resplits", DEFAULT_RESPLITS)
    if not recalibrate(document):
        return False
    json_path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    plots = [name for name in ("accuracy_vs_k.png", "reliability.png") if (folder / name).exists()]
    (folder / "results.md").write_text(results_markdown(document, plots), encoding="utf-8")
    return True
