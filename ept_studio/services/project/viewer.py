"""Viewing one image: interactive window / level, inversion, frames, header fields, model attention.

Qt-free, so everything the viewer shows is tested without a window. :func:`open_view` decodes the
image once and keeps its decoded frames (modality values, full precision) in the returned
:class:`ImageView`, so dragging the window re-renders without decoding again. The window is the
DICOM LINEAR VOI function of :mod:`ept_studio.data.render` (width at least 1), applied before any
inversion; MONOCHROME1 stays inverted after windowing, and the user's *invert* swaps black and white
of what would otherwise be shown (``255 - x``).

Header fields that may identify a patient are hidden unless the user asks (:func:`metadata_rows`);
file names too, since they often carry patient names. Attention overlays come from a run's stored
predictions and are captioned "model attention", a description of the model, not a finding.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from ept_studio.common.errors import ConfigError, ProjectError
from ept_studio.data.dicom import is_dicom_file
from ept_studio.data.dicom_fields import HeaderField, read_header_fields
from ept_studio.data.overlay import CAPTION, attention_overlay, head_mean, viridis
from ept_studio.data.render import DecodedImage, RenderingSpec, decode_file, percentile_window
from ept_studio.data.render import render as render_decoded
from ept_studio.data.store import Project
from ept_studio.services.model.images import rendering_spec

__all__ = [
    "CAPTION",
    "CT_PRESETS",
    "HIDDEN",
    "AttentionLayer",
    "ColourStop",
    "ImageView",
    "MetadataRow",
    "WindowLevel",
    "WindowPreset",
    "attention_colour_stops",
    "attention_layer",
    "metadata_rows",
    "open_view",
    "open_view_file",
    "overlay_caption",
    "overlay_for",
    "overlay_pixels",
    "prediction_runs",
    "render_view",
]

HIDDEN = "hidden"
"""What an identifying field shows instead of its value."""

MAX_CACHED_FRAMES = 16
DRAG_STEPS = 400.0
"""Dragging across this many screen pixels moves the window by the image's whole value range."""


@dataclasses.dataclass(frozen=True)
class WindowLevel:
    """A (centre, width) window in modality units (Hounsfield units for CT); width at least 1."""

    centre: float
    width: float

    def __post_init__(self) -> None:
        centre, width = float(self.centre), float(self.width)
        if not (math.isfinite(centre) and math.isfinite(width)):
            raise ConfigError(f"window (centre {centre:g}, width {width:g}) must be finite")
        object.__setattr__(self, "centre", centre)
        object.__setattr__(self, "width", max(1.0, width))

    def text(self) -> str:
        """``W 400 / L 40``, to a tenth of a unit."""
        return f"W {round(self.width, 1):g} / L {round(self.centre, 1):g}"


@dataclasses.dataclass(frozen=True)
class WindowPreset:
    """A named window: one of the file's own, or a standard CT window."""

    name: str
    window: WindowLevel

    @property
    def label(self) -> str:
        return f"{self.name} ({self.window.text()})"


CT_PRESETS = (
    WindowPreset("Lung", WindowLevel(-600.0, 1500.0)),
    WindowPreset("Mediastinum", WindowLevel(40.0, 400.0)),
    WindowPreset("Abdomen", WindowLevel(60.0, 400.0)),
    WindowPreset("Bone", WindowLevel(400.0, 1800.0)),
    WindowPreset("Brain", WindowLevel(40.0, 80.0)),
)
"""Offered for CT images only, after the file's own windows."""


@dataclasses.dataclass(eq=False)
class ImageView:
    """One image opened for viewing, with its decoded frames cached (see :meth:`decoded`).

    ``stored_window`` is the window of the stored rendering in numbers (None for images without
    window / level); ``stored_voi`` says where it comes from ("stored window", "file window",
    "file VOI LUT", "percentile window", "display range"). ``pixel_aspect`` is the height of a
    pixel over its width (from Pixel Spacing), 1 when unknown.
    """

    image_id: int | None
    path: Path = dataclasses.field(repr=False)
    kind: str
    modality: str | None
    frames: int
    shape: tuple[int, int]
    photometric: str
    is_colour: bool
    windowable: bool
    spec: RenderingSpec
    stored_window: WindowLevel | None
    stored_voi: str
    presets: tuple[WindowPreset, ...]
    value_range: tuple[float, float]
    pixel_aspect: float
    _frames: dict[int, DecodedImage] = dataclasses.field(default_factory=dict, repr=False)
    _fields: tuple[HeaderField, ...] | None = dataclasses.field(default=None, repr=False)

    @property
    def frame(self) -> int:
        """The frame the stored rendering shows (from 0)."""
        return self.spec.frame

    @property
    def drag_step(self) -> float:
        """Modality units per screen pixel of a window / level drag."""
        low, high = self.value_range
        return max(high - low, 1.0) / DRAG_STEPS

    @property
    def base_invert(self) -> bool:
        """Whether the stored rendering swaps black and white (MONOCHROME1 unless the spec says)."""
        if self.spec.invert is not None:
            return self.spec.invert
        return not self.is_colour and self.photometric == "MONOCHROME1"

    def decoded(self, frame: int) -> DecodedImage:
        """Frame ``frame``, decoded once and kept (the last :data:`MAX_CACHED_FRAMES` frames)."""
        cached = self._frames.pop(frame, None)
        if cached is None:
            if not 0 <= frame < self.frames:
                raise ConfigError(f"frame {frame + 1} does not exist: the image has {self.frames}")
            cached = decode_file(self.path, frame=frame)
        self._frames[frame] = cached
        while len(self._frames) > MAX_CACHED_FRAMES:
            self._frames.pop(next(iter(self._frames)))
        return cached

    def header_fields(self) -> tuple[HeaderField, ...]:
        """The DICOM header as fields (read once); empty for other images."""
        if self._fields is None:
            self._fields = read_header_fields(self.path) if self.kind == "dicom" else ()
        return self._fields


def open_view(project: Project, image_id: int) -> ImageView:
    """The project's image ``image_id``, with the rendering stored for it."""
    record = project.image(image_id)
    if record.path is None or not record.path.is_file():
        raise ProjectError(
            f"image #{image_id}: its source file is not on this machine; import it again to "
            "relink it"
        )
    return open_view_file(record.path, rendering_spec(record.rendering), image_id=image_id)


def open_view_file(
    path: Path, spec: RenderingSpec | None = None, *, image_id: int | None = None
) -> ImageView:
    """Any image file (DICOM, PNG, JPEG, TIFF, BMP); ``spec`` is its stored rendering."""
    spec = spec if spec is not None else RenderingSpec()
    decoded = decode_file(path, frame=spec.frame)
    kind = "dicom" if is_dicom_file(path) else "image"
    # 8-bit grey and colour files are shown as stored; DICOM and high-depth grey take a window.
    windowable = not decoded.is_colour and (kind == "dicom" or decoded.display_range is None)
    window, voi = _stored_window(decoded, spec) if windowable else (None, "as stored")
    view = ImageView(
        image_id=image_id,
        path=Path(path),
        kind=kind,
        modality=decoded.modality,
        frames=decoded.frames,
        shape=decoded.shape,
        photometric=decoded.photometric,
        is_colour=decoded.is_colour,
        windowable=windowable,
        spec=spec,
        stored_window=window,
        stored_voi=voi,
        presets=_presets(decoded) if windowable else (),
        value_range=_value_range(decoded),
        pixel_aspect=_pixel_aspect(decoded),
    )
    view._frames[spec.frame] = decoded
    return view


def _stored_window(decoded: DecodedImage, spec: RenderingSpec) -> tuple[WindowLevel, str]:
    """The stored rendering's window in numbers, and where it comes from."""
    if spec.window is not None:
        return WindowLevel(*spec.window), "stored window"
    if spec.policy == "file":
        if decoded.voi_lut is not None:
            return _range_window(*percentile_window(decoded.pixels)), "file VOI LUT"
        if decoded.windows:
            return WindowLevel(*decoded.windows[0]), "file window"
        if decoded.display_range is not None:
            return _range_window(*decoded.display_range), "display range"
    return _range_window(*percentile_window(decoded.pixels)), "percentile window"


def _range_window(low: float, high: float) -> WindowLevel:
    return WindowLevel((low + high) / 2.0, high - low)


def _presets(decoded: DecodedImage) -> tuple[WindowPreset, ...]:
    own: list[WindowPreset] = []
    for index, (centre, width) in enumerate(decoded.windows, start=1):
        window = WindowLevel(centre, width)
        if all(p.window != window for p in own):
            own.append(WindowPreset(f"File window {index}", window))
    standard = CT_PRESETS if (decoded.modality or "").upper() == "CT" else ()
    return (*own, *standard)


def _value_range(decoded: DecodedImage) -> tuple[float, float]:
    return float(decoded.pixels.min()), float(decoded.pixels.max())


def _pixel_aspect(decoded: DecodedImage) -> float:
    if decoded.pixel_spacing is None:
        return 1.0
    row_spacing, column_spacing = decoded.pixel_spacing
    return row_spacing / column_spacing


def render_view(
    view: ImageView,
    centre: float | None = None,
    width: float | None = None,
    invert: bool = False,
    frame: int | None = None,
) -> np.ndarray:
    """The image as ``H x W x 3`` uint8 RGB with window (``centre``, ``width``).

    ``centre`` / ``width`` None (or an image without window / level) show the stored rendering
    exactly as the model sees it; a width below 1 is taken as 1. ``invert`` gives ``255 - x`` of
    what would be shown without it. ``frame`` None is the stored frame.
    """
    frame = view.frame if frame is None else frame
    decoded = view.decoded(frame)
    window = view.spec.window
    if view.windowable and centre is not None and width is not None:
        level = WindowLevel(centre, width)
        window = (level.centre, level.width)
    spec = RenderingSpec(
        window=window, policy=view.spec.policy, invert=view.base_invert != invert, frame=frame
    )
    return render_decoded(decoded, spec)


# -- header fields ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MetadataRow:
    """One line of the metadata panel; ``hidden`` rows show :data:`HIDDEN` as their value."""

    tag: str
    name: str
    value: str
    identifying: bool
    hidden: bool

    def __repr__(self) -> str:
        shown = "<hidden>" if self.identifying else repr(self.value)
        return f"MetadataRow({self.tag} {self.name}={shown})"

    __str__ = __repr__


def metadata_rows(view: ImageView, show_phi: bool = False) -> list[MetadataRow]:
    """What the metadata panel lists; identifying values are :data:`HIDDEN` unless ``show_phi``.

    Hidden private elements are gathered in one row (they are many, and say nothing readable).
    """
    rows = [_row("", "File name", view.path.name, True, show_phi), *_summary(view)]
    private = 0
    for field in view.header_fields():
        if field.name == "Private element" and not show_phi:
            private += 1
            continue
        rows.append(_row(field.tag, field.name, field.value, field.identifying, show_phi))
    if private:
        rows.append(MetadataRow("", f"Private elements ({private})", HIDDEN, True, True))
    return rows


def _row(tag: str, name: str, value: str, identifying: bool, show_phi: bool) -> MetadataRow:
    hidden = identifying and not show_phi
    return MetadataRow(tag, name, HIDDEN if hidden else value, identifying, hidden)


def _summary(view: ImageView) -> list[MetadataRow]:
    """What the viewer knows of any image (for PNG / JPEG the only rows besides the file name)."""
    rows, columns = view.shape
    facts = [
        ("Kind", "DICOM" if view.kind == "dicom" else view.path.suffix.lstrip(".").upper()),
        ("Size", f"{columns} × {rows} pixels"),
        ("Frames", str(view.frames)),
        ("Colour", "colour (RGB)" if view.is_colour else f"grey ({view.photometric})"),
    ]
    return [MetadataRow("", name, value, False, False) for name, value in facts]


# -- model attention -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AttentionLayer:
    """An image's stored attention in one run: ``[heads, patches]`` (or ``[patches]``)."""

    run_id: int
    image_id: int
    predicted_class: str
    attention: np.ndarray = dataclasses.field(repr=False, compare=False)
    grid: tuple[int, int]

    @property
    def heads(self) -> int:
        """The number of heads to choose from (0 for a map without heads)."""
        return int(self.attention.shape[0]) if self.attention.ndim == 2 else 0


def attention_layer(project: Project, image_id: int, run_id: int) -> AttentionLayer | None:
    """The attention run ``run_id`` stored for the image, or None when it did not predict it or
    stored no map (a training run keeps its test predictions without attention)."""
    for row in project.predictions(run_id):
        if row.image_id == image_id:
            if row.attention.size == 0:
                return None
            patches = int(row.attention.shape[-1])
            return AttentionLayer(
                run_id, image_id, row.predicted_class, row.attention, _square_grid(patches)
            )
    return None


def prediction_runs(project: Project, image_id: int) -> list[int]:
    """The runs holding a prediction for the image, newest first."""
    runs = sorted((run.id for run in project.runs()), reverse=True)
    return [run_id for run_id in runs if attention_layer(project, image_id, run_id) is not None]


def _square_grid(patches: int) -> tuple[int, int]:
    side = math.isqrt(patches)
    if side * side != patches or side == 0:
        raise ConfigError(f"{patches} attention values do not make a square patch grid")
    return side, side


def overlay_pixels(
    base: np.ndarray, layer: AttentionLayer, *, head: int | None = None, opacity: float = 0.5
) -> np.ndarray:
    """``base`` (the displayed image) with the attention heatmap blended at ``opacity`` (0..1).

    ``head`` None is the mean over heads; else a head index from 0.
    """
    if layer.heads == 0:
        head = None
    return attention_overlay(base, layer.attention, layer.grid, alpha=opacity, head=head)


@dataclasses.dataclass(frozen=True)
class ColourStop:
    """A point of the overlay's colour map: ``position`` 0 (low attention) .. 1 (high), RGB 0..255."""

    position: float
    rgb: tuple[int, int, int]


def attention_colour_stops(count: int = 256) -> tuple[ColourStop, ...]:
    """The overlay's colour map at ``count`` evenly spaced positions, for a legend beside the image.

    Taken from the very function that colours the overlay, so legend and overlay cannot disagree;
    256 stops hit every entry of its table, so a linear gradient through them is the map exactly.
    """
    if count < 2:
        raise ConfigError(f"a colour legend needs at least 2 stops, not {count}")
    positions = np.linspace(0.0, 1.0, count)
    colours = viridis(positions)
    return tuple(
        ColourStop(float(p), (int(r), int(g), int(b)))
        for p, (r, g, b) in zip(positions, colours, strict=True)
    )


def overlay_caption(layer: AttentionLayer, head: int | None = None) -> str:
    """``model attention (mean of 6 heads)`` or ``model attention (head 2 of 6)`` (from 1)."""
    if layer.heads == 0:
        return CAPTION
    if head is None:
        return f"{CAPTION} (mean of {layer.heads} heads)"
    head_mean(layer.attention, head)  # a head that does not exist is a ConfigError
    return f"{CAPTION} (head {head + 1} of {layer.heads})"


def overlay_for(
    project: Project,
    image_id: int,
    run_id: int,
    head: int | None = None,
    opacity: float = 0.5,
    *,
    base: np.ndarray | None = None,
) -> np.ndarray | None:
    """The image (``base``, else its stored rendering) with run ``run_id``'s attention over it.

    None when the run holds no prediction for the image.
    """
    layer = attention_layer(project, image_id, run_id)
    if layer is None:
        return None
    if base is None:
        base = render_view(open_view(project, image_id))
    return overlay_pixels(base, layer, head=head, opacity=opacity)
