"""Training on a project's labels: the training set, and ``train_on_project``.

``train_on_project`` is a generator like ``train_on_folder``: it yields :class:`ProjectDataReady`,
then the engine's training events, then :class:`ProjectTrainingSaved`. Images are rendered with the
rendering spec stored for each of them (the pixels the user saw when labelling), trained on the
``train`` role and evaluated on the ``test`` role. The prompt file and the run record go to
``runs/<id>/`` in the project, and the run is recorded in the database, also when it fails.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ept_studio.common.errors import (
    ConfigError,
    DatasetError,
    ImageDecodeError,
    TrainingCancelled,
)
from ept_studio.core.conformal import DEFAULT_COVERAGE
from ept_studio.core.detail import DETAIL_FACTOR
from ept_studio.core.hold_out import calibration_half, held_out_indices
from ept_studio.core.hold_out import held_out_sizes as core_held_out_sizes
from ept_studio.data.render import RenderingSpec, render_file
from ept_studio.data.store import ImageStatus, LabelMode, PredictionRow, Project, Role
from ept_studio.services.model import fitting
from ept_studio.services.model.run_record import Evaluation, RecordedData, RecordedImage, Target
from ept_studio.services.model.training_options import (
    DEFAULT_SLICES_PER_SERIES,
    coverage_error,
    share_for,
    slices_per_series_error,
)
from ept_studio.services.project.duplicates import straddling_duplicates
from ept_studio.services.project.series import series_key
from ept_studio.services.project.series_sampling import split_units, thin_series
from ept_studio.services.project.trainable import series_split_reason, training_blockers

if TYPE_CHECKING:
    import torch

    from ept_studio.core.backbones import LoadedBackbone
    from ept_studio.core.model import TunedModel

CALIBRATION_ON_HELD_OUT = "held-out training images"
CALIBRATION_ON_TEST = "a seeded half of each class's test images"
PROMPT_FILE_NAME = "prompt.safetensors"
RUN_RECORD_NAME = "run.json"


@dataclasses.dataclass(frozen=True)
class TrainingItem:
    """One labelled image: where it is, how to render it, its target (index or multi-hot), role."""

    image_id: int
    sha256: str
    path: Path
    rendering: RenderingSpec
    target: Target
    role: Role
    patient_hash: str | None
    series_key: str = ""
    """The series it is a slice of (:func:`~ept_studio.services.project.series.series_key`;
    a loose image is a series of its own); empty: not known."""

    @property
    def unit(self) -> str:
        """What is never split between training and held-out or calibration images."""
        return self.series_key or f"image:{self.image_id}"


@dataclasses.dataclass(frozen=True)
class TrainingSet:
    """A project's labelled images in class order; ``excluded`` counts those left out, by reason."""

    classes: tuple[str, ...]
    label_mode: LabelMode
    items: tuple[TrainingItem, ...]
    excluded: dict[str, int]
    slices_per_series: int = 0
    """At most this many training slices were taken from one series (0: every slice)."""
    thinned: tuple[tuple[int, int], ...] = ()
    """(slices, slices taken) of each training series the limit applied to, in project order."""

    @property
    def slices_not_taken(self) -> int:
        """Training slices left out by the per-series limit."""
        return sum(slices - taken for slices, taken in self.thinned)

    def of_role(self, role: Role) -> list[TrainingItem]:
        return [item for item in self.items if item.role is role]

    def patients_in_both_roles(self) -> int:
        """Patients (by salted hash) with images in train and in test: an optimistic test."""
        train = {i.patient_hash for i in self.of_role(Role.TRAIN) if i.patient_hash}
        return len(train & {i.patient_hash for i in self.of_role(Role.TEST) if i.patient_hash})

    def smallest_class(self) -> int:
        """Training images of the class with the fewest (a series counts once; classes
        without training images left out; 0 when there are none)."""
        units: dict[int, set[str]] = {}
        for item in self.of_role(Role.TRAIN):
            target = item.target
            carried = (
                [k for k, flag in enumerate(target) if flag]
                if isinstance(target, tuple)
                else [target]
            )
            for k in carried:
                units.setdefault(k, set()).add(item.unit)
        return min((len(found) for found in units.values()), default=0)

    def series_in_both_roles(self) -> dict[str, tuple[int, ...]]:
        """Series with slices in train and in test: each one's test slices (image ids).

        A loose image is a series of its own and is on one side only.
        """
        roles: dict[str, set[Role]] = {}
        for item in self.items:
            if item.series_key:
                roles.setdefault(item.series_key, set()).add(item.role)
        both = {key for key, seen in roles.items() if len(seen) > 1}
        test: dict[str, list[int]] = {key: [] for key in sorted(both)}
        for item in self.of_role(Role.TEST):
            if item.series_key in both:
                test[item.series_key].append(item.image_id)
        return {key: tuple(ids) for key, ids in test.items()}


def training_set(project: Project, slices_per_series: int = 0) -> TrainingSet:
    """Every labelled image whose file is in place, with its rendering spec, target and role.

    ``slices_per_series`` (0: no limit) keeps at most that many training slices of each series,
    evenly spaced over its slice order (:func:`~.series_sampling.thin_series`): the one place a
    run's training images are sampled, so the plan, the run and its record agree. Test images
    are all kept.
    """
    problem = slices_per_series_error(slices_per_series)
    if problem:
        raise ConfigError(problem)
    classes = project.labels.classes()
    index = {c.id: k for k, c in enumerate(classes)}
    by_image: dict[int, list[tuple[int, Role]]] = {}
    for label in project.labels.all():
        by_image.setdefault(label.image_id, []).append((index[label.class_id], label.role))
    items: list[TrainingItem] = []
    excluded: dict[str, int] = {}
    for image in project.images():
        labels = by_image.get(image.id)
        if not labels:
            continue
        if image.status is not ImageStatus.OK or image.path is None:
            reason = "file not found on this machine" if image.path is None else image.status.value
            excluded[reason] = excluded.get(reason, 0) + 1
            continue
        target: Target = labels[0][0]
        if project.label_mode is LabelMode.MULTI:
            hot = {k for k, _ in labels}
            target = tuple(int(k in hot) for k in range(len(classes)))
        spec = RenderingSpec.from_dict(image.rendering)
        items.append(
            TrainingItem(
                image.id,
                image.sha256,
                image.path,
                spec,
                target,
                labels[0][1],
                image.patient_hash,
                series_key(image),
            )
        )
    training = {item.image_id for item in items if item.role is Role.TRAIN}
    dropped, thinned = thin_series(project, training, slices_per_series)
    kept = [item for item in items if item.image_id not in dropped]
    names = tuple(c.name for c in classes)
    return TrainingSet(names, project.label_mode, tuple(kept), excluded, slices_per_series, thinned)


@dataclasses.dataclass(frozen=True)
class ProjectDataReady:
    """The labelled images are rendered: counts per class and role, what was left out and why."""

    run_id: int
    classes: tuple[str, ...]
    train_counts: dict[str, int]
    test_counts: dict[str, int]
    excluded: dict[str, int]
    unreadable: int
    patients_in_both_roles: int


@dataclasses.dataclass(frozen=True)
class ProjectTrainingSaved:
    """The run finished; its prompt file and run record are in ``runs/<id>/``."""

    run_id: int
    prompt_file: Path
    prompt_sha256: str
    run_record: Path
    metrics: dict[str, float]
    model: TunedModel = dataclasses.field(repr=False, compare=False)
    test_size: int = 0
    """How many test images ``metrics`` were measured on."""
    detail_size: int | None = None
    """The fine-detail check's input size when the run scores with it (and so do ``metrics``)."""


@dataclasses.dataclass(frozen=True)
class _Rendered:
    classes: tuple[str, ...]
    label_mode: LabelMode
    train: list[tuple[TrainingItem, torch.Tensor]]
    test: list[tuple[TrainingItem, torch.Tensor]]


def train_on_project(
    folder: Path,
    method: dict[str, Any],
    recipe: dict[str, Any],
    seed: int = 0,
    *,
    backbone: LoadedBackbone | None = None,
    backbone_name: str | None = None,
    backbone_weights: Path | None = None,
    cancel: Callable[[], bool] | None = None,
    locations_dir: Path | None = None,
    hold_out: bool = False,
    coverage: float = DEFAULT_COVERAGE,
    calibrate_on_test: bool = False,
    slices_per_series: int = DEFAULT_SLICES_PER_SERIES,
    share_minimum: int = 0,
    detail: bool = False,
) -> Generator[object, None, None]:
    """Train on the project in ``folder``; yields events (see the module docstring).

    ``method`` is a method config dict (``{"method": "ept", "length": 100}``), ``recipe`` holds
    overrides of the paper recipe; ``backbone`` replaces the named one (tests pass a tiny one).
    ``hold_out``: keep a fifth of each class's training images aside to choose the best epoch (and
    stop early, with the recipe's patience), when every class has at least
    :data:`~ept_studio.core.hold_out.HOLD_OUT_MINIMUM` of them; the test images are never used
    for that.
    ``coverage``: how often a prediction set should contain the true class. The temperature and the
    sets are fitted on the held-out images; ``calibrate_on_test`` fits them on a seeded half of each
    class's test images instead, and those images are then recorded as calibration images and not
    scored as test images. Neither splits a series: its slices are held out, or calibrate,
    together.
    ``slices_per_series``: at most this many training slices of one series, evenly spaced
    (0: every slice; see :func:`training_set`).
    ``share_minimum``: the recipe's ``trained_share`` applies only when every class has at least
    this many training images (a series once); with fewer the run keeps all of its training,
    and its recorded recipe says so (the Train tab's plan says it before the run).
    ``detail``: also fit the detail view (:mod:`ept_studio.core.detail`) at twice the backbone's
    input size on the training images, and score with both (single-label projects; the run's
    ``detail_size`` records the size, or None).
    """
    from ept_studio.core.backbones import load_backbone

    coverage_problem = coverage_error(coverage)
    if coverage_problem:
        raise ConfigError(coverage_problem)
    from ept_studio.core.methods import config_from_dict
    from ept_studio.core.training import recipe_from_settings

    recipe_from_settings({**recipe, "seed": seed})  # a bad recipe is told before any work
    method_config = config_from_dict(method)
    with Project.open(folder, locations_dir=locations_dir) as project:
        tset = training_set(project, slices_per_series)
        full_recipe = recipe_from_settings(
            {**_with_share_rule(recipe, tset, share_minimum), "seed": seed}
        )
        _check_disjoint(project)
        _check_series_apart(tset, folder)
        rendered, unreadable = _render(project, tset)
        loaded = backbone or load_backbone(backbone_name, weights=backbone_weights)
        config = {
            "method": method_config.to_dict(),
            "recipe": full_recipe.to_dict(),
            "label_mode": tset.label_mode.value,
            "classes": list(tset.classes),
            "hold_out": hold_out,
            "coverage": coverage,
            "calibrate_on_test": calibrate_on_test,
            "slices_per_series": slices_per_series,
            "slices_not_taken": tset.slices_not_taken,
            "share_minimum": share_minimum,
            "detail_size": detail_size(detail, tset.label_mode, loaded.spec.input_size),
        }
        run_id = project.record_run(
            config=config,
            seed=seed,
            versions=fitting.library_versions(),
            backbone=loaded.spec.name,
            backbone_sha256=loaded.weights_sha256,
        )
        yield _data_ready(run_id, tset, rendered, unreadable)
        run = _Run(project, run_id, loaded, rendered, config)
        try:
            saved = yield from _train_and_save(run, cancel)
        except (TrainingCancelled, GeneratorExit):
            project.finish_run(run_id, "cancelled")
            raise
        except BaseException:
            project.finish_run(run_id, "failed")
            raise
        yield saved


def detail_size(detail: bool, mode: LabelMode, input_size: int) -> int | None:
    """The detail view's input size for a run: twice the backbone's, when asked for and the
    project is single-label (a multi-label model's per-label scores are not combined); else None."""
    return DETAIL_FACTOR * input_size if detail and mode is LabelMode.SINGLE else None


def _with_share_rule(
    recipe: dict[str, Any], tset: TrainingSet, share_minimum: int
) -> dict[str, Any]:
    """``recipe`` without its ``trained_share`` when a class has too few training images."""
    share = share_for(recipe.get("trained_share"), tset.smallest_class(), share_minimum)
    rest = {key: value for key, value in recipe.items() if key != "trained_share"}
    return rest if share is None else {**rest, "trained_share": share}


def _render(project: Project, tset: TrainingSet) -> tuple[_Rendered, int]:
    """Each image through its stored rendering spec; an unreadable file is flagged and left out."""
    import torch

    pairs: dict[Role, list[tuple[TrainingItem, torch.Tensor]]] = {Role.TRAIN: [], Role.TEST: []}
    unreadable = 0
    for item in tset.items:
        try:
            pixels = render_file(item.path, item.rendering)
        except ImageDecodeError:
            project.set_status([item.image_id], ImageStatus.UNREADABLE)
            unreadable += 1
            continue
        tensor = torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous()
        pairs[item.role].append((item, tensor))
    rendered = _Rendered(tset.classes, tset.label_mode, pairs[Role.TRAIN], pairs[Role.TEST])
    _check_trainable(rendered)
    return rendered, unreadable


def _check_series_apart(tset: TrainingSet, folder: Path) -> None:
    """The checklist's series rule: no series with slices in train and in test (its neighbouring
    slices are near copies), told with the fix in the app and on the command line."""
    straddling = tset.series_in_both_roles()
    if not straddling:
        return
    test_slices = " ".join(str(i) for ids in straddling.values() for i in ids)
    reason = series_split_reason(len(straddling))
    raise DatasetError(
        f"{reason[:1].upper()}{reason[1:]}. Press 'Split for me' on the Train tab of the app, "
        "or keep each series on one side: "
        f"`ept-studio project role {folder} train {test_slices}` moves their test slices to train."
    )


def _check_disjoint(project: Project) -> None:
    """The checklist's same-image rule: a test image may not be a training image in another
    file (a copy, or the same pixels in another encoding)."""
    reasons = [group.reason() for group in straddling_duplicates(project)]
    if reasons:
        raise DatasetError(" ".join(reasons))


def _check_trainable(rendered: _Rendered) -> None:
    """The Train tab's checklist rule (:func:`training_blockers`), again after rendering: an
    unreadable file may have taken a class's last training image."""
    counts = [
        sum(_has(item.target, k) for item, _ in rendered.train)
        for k in range(len(rendered.classes))
    ]
    single = rendered.label_mode is LabelMode.SINGLE
    reasons = training_blockers(rendered.classes, single, counts)
    if reasons:
        raise DatasetError("; ".join(reasons))


def _data_ready(
    run_id: int, tset: TrainingSet, rendered: _Rendered, unreadable: int
) -> ProjectDataReady:
    def counts(pairs: list[tuple[TrainingItem, Any]]) -> dict[str, int]:
        return {
            name: sum(_has(i.target, k) for i, _ in pairs) for k, name in enumerate(tset.classes)
        }

    return ProjectDataReady(
        run_id,
        tset.classes,
        counts(rendered.train),
        counts(rendered.test),
        dict(tset.excluded),
        unreadable,
        tset.patients_in_both_roles(),
    )


def _has(target: Target, k: int) -> bool:
    return bool(target[k]) if isinstance(target, tuple) else target == k


@dataclasses.dataclass(frozen=True)
class _Run:
    """A recorded run about to train: where it is recorded and what it trains on."""

    project: Project
    run_id: int
    loaded: LoadedBackbone
    rendered: _Rendered
    config: dict[str, Any]


def _train_and_save(
    run: _Run, cancel: Callable[[], bool] | None
) -> Generator[object, None, ProjectTrainingSaved]:
    from ept_studio.core.methods import config_from_dict
    from ept_studio.core.model import TunedModel
    from ept_studio.core.training import TrainRecipe, seed_everything

    recipe = TrainRecipe.from_dict(run.config["recipe"])
    mode = run.rendered.label_mode.value
    seed_everything(recipe.seed)
    method = config_from_dict(run.config["method"])
    model = TunedModel(run.loaded.model, method, num_classes=len(run.rendered.classes))
    support, held_out = support_split(
        run.rendered.train, bool(run.config.get("hold_out")), recipe.seed, run.rendered.label_mode
    )
    samples = [(pixels, item.target) for item, pixels in support]
    validation = [(pixels, item.target) for item, pixels in held_out]
    training = yield from fitting.fit(
        model, samples, recipe, run.loaded, mode, cancel, val_set=validation or None
    )
    size = run.config.get("detail_size")
    detail = (
        None
        if size is None
        else fitting.fit_detail(model, samples, run.loaded, int(size), recipe.prototype_scale)
    )
    on_test = bool(run.config.get("calibrate_on_test"))
    calibration_pairs, test_pairs = test_split(run.rendered.test, on_test, recipe.seed)
    calibrated = fitting.calibrate(
        model,
        [(pixels, item.target) for item, pixels in (calibration_pairs if on_test else held_out)],
        run.loaded,
        mode,
        source=CALIBRATION_ON_TEST if on_test else CALIBRATION_ON_HELD_OUT,
        coverage=float(run.config.get("coverage", DEFAULT_COVERAGE)),
        detail=detail,
    )

    def evaluated(
        pairs: list[tuple[TrainingItem, Any]],
    ) -> tuple[Evaluation, list[PredictionRow]]:
        evaluation, probabilities = fitting.evaluate_samples(
            model,
            [(pixels, item.target) for item, pixels in pairs],
            run.loaded,
            mode,
            temperature=calibrated.temperature,
            detail=detail,
        )
        if probabilities is None:
            return evaluation, []
        return evaluation, _test_prediction_rows(run.rendered.classes, pairs, probabilities)

    _, calibration_rows = evaluated(calibration_pairs)
    evaluation, test_rows = evaluated(test_pairs)
    if calibration_rows or test_rows:
        run.project.record_predictions(run.run_id, calibration_rows + test_rows)
    fitted = fitting.FittedRun(
        source="project",
        model=model,
        loaded=run.loaded,
        recipe=run.config["recipe"],
        data=_recorded_data(run, test_pairs, calibration_pairs),
        training=training,
        evaluation=evaluation,
        rendering=_rendering_summary(run.rendered),
        calibrated=calibrated,
        run_id=run.run_id,
        detail=detail,
    )
    return _save_run(run, fitted)


def held_out_sizes(class_counts: Sequence[int], hold_out: bool, mode: LabelMode) -> list[int]:
    """How many training images of each class :func:`support_split` keeps aside (0s: none)."""
    return core_held_out_sizes(class_counts, hold_out, mode is LabelMode.SINGLE)


def support_split(
    train: Sequence[tuple[TrainingItem, Any]], hold_out: bool, seed: int, mode: LabelMode
) -> tuple[list[tuple[TrainingItem, Any]], list[tuple[TrainingItem, Any]]]:
    """(support, held out): a seeded fifth of each class when asked and every class has enough
    (:mod:`ept_studio.core.hold_out`).

    Single-label only (a multi-label image belongs to several classes at once); otherwise, or with
    too few images, everything trains and nothing is held out. A series counts as one (its first
    slice's class) and is held out whole or not at all; loose images count one each.
    """
    units = split_units([item.unit for item, _ in train])
    targets = [train[members[0]][0].target for members in units]
    held_units = held_out_indices(targets, hold_out, seed, mode is LabelMode.SINGLE)
    held = {k for u in held_units for k in units[u]}
    support = [pair for k, pair in enumerate(train) if k not in held]
    return support, [pair for k, pair in enumerate(train) if k in held]


def test_split(
    test: Sequence[tuple[TrainingItem, Any]], calibrate_on_test: bool, seed: int
) -> tuple[list[tuple[TrainingItem, Any]], list[tuple[TrainingItem, Any]]]:
    """(calibration, scored test): with ``calibrate_on_test`` a seeded half of each class's test
    images (:func:`~ept_studio.core.hold_out.calibration_half`) calibrates the scores and is
    never scored as test; otherwise every test image is scored. A series counts as one and goes
    whole to one side."""
    if not calibrate_on_test:
        return [], list(test)
    units = split_units([item.unit for item, _ in test])
    halves = calibration_half([test[members[0]][0].target for members in units], seed)
    chosen = {k for u in halves for k in units[u]}
    calibration = [pair for k, pair in enumerate(test) if k in chosen]
    return calibration, [pair for k, pair in enumerate(test) if k not in chosen]


def _test_prediction_rows(
    names: Sequence[str], pairs: Sequence[tuple[TrainingItem, Any]], probabilities: Any
) -> list[PredictionRow]:
    """One stored prediction per test-role image (calibration images included): the predicted
    class and every class's calibrated model score.

    No attention is kept (an empty ``[0, 0]`` array): an inference run draws the overlays.
    """
    import numpy as np

    empty = np.zeros((0, 0), dtype=np.float32)
    return [
        PredictionRow(
            item.image_id,
            names[int(np.argmax(scores))],
            {name: float(s) for name, s in zip(names, scores, strict=True)},
            empty,
        )
        for (item, _), scores in zip(pairs, probabilities, strict=True)
    ]


def _save_run(run: _Run, fitted: fitting.FittedRun) -> ProjectTrainingSaved:
    folder = run.project.run_dir(run.run_id)
    folder.mkdir(parents=True, exist_ok=True)
    prompt, record_path = folder / PROMPT_FILE_NAME, folder / RUN_RECORD_NAME
    files = fitting.save_run(fitted, prompt, record_path)
    artifacts = {
        "prompt_file": PROMPT_FILE_NAME,
        "prompt_sha256": files.prompt_sha256,
        "run_record": RUN_RECORD_NAME,
    }
    metrics = fitted.evaluation.metrics
    run.project.finish_run(
        run.run_id, "finished", metrics=metrics, artifacts=artifacts, device=fitted.training.device
    )
    return ProjectTrainingSaved(
        run.run_id,
        prompt,
        files.prompt_sha256,
        record_path,
        metrics,
        fitted.model,
        test_size=fitted.evaluation.test_size,
        detail_size=None if fitted.detail is None else fitted.detail.input_size,
    )


def _recorded_data(
    run: _Run,
    test: list[tuple[TrainingItem, Any]],
    calibration: list[tuple[TrainingItem, Any]],
) -> RecordedData:
    """The run record's data: each image by content hash, with its target and rendering spec;
    test images calibrated on are recorded as calibration images, not test images; the
    per-series slice limit and the training slices it left out."""
    rendered = run.rendered

    def images(pairs: list[tuple[TrainingItem, Any]]) -> tuple[RecordedImage, ...]:
        return tuple(
            RecordedImage(item.sha256, item.target, item.rendering.to_dict()) for item, _ in pairs
        )

    return RecordedData(
        classes=tuple(rendered.classes),
        label_mode=rendered.label_mode.value,
        train=images(rendered.train),
        test=images(test),
        calibration=images(calibration),
        slices_per_series=int(run.config.get("slices_per_series", 0)),
        slices_not_taken=int(run.config.get("slices_not_taken", 0)),
    )


def _rendering_summary(rendered: _Rendered) -> dict[str, Any]:
    """The rendering the model was trained with: the one spec, or every distinct spec used."""
    specs = sorted({item.rendering.to_json() for item, _ in rendered.train + rendered.test})
    if len(specs) == 1:
        return dict(json.loads(specs[0]))
    return {"policy": "per-image", "specs": [json.loads(spec) for spec in specs]}
