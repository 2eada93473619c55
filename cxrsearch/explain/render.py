"""Pictures and coloured text for people: overlay PNGs (matplotlib Agg, Pillow) and rich token colours.

Colours mean the same everywhere: for attributions, **green raises the score, pink lowers it**
(matplotlib's diverging ``PiYG``, symmetric around 0, clipped at the 99th percentile of ``|value|``
on film so that a few extreme pixels do not wash the rest out); the attention view is sequential
(``magma``: bright = more attention), because attention is never negative. Overlays are blended
onto the grey radiograph with an opacity that grows with ``|value|``, so the film stays readable
where the map is near zero. Every overlay PNG has the original radiograph's width and height;
``NaN`` (film the model never saw) is left undrawn.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cxrsearch.errors import QueryError

if TYPE_CHECKING:  # pragma: no cover
    from rich.text import Text

    from cxrsearch.explain.tokens import WordAttribution

ATTRIBUTION_CMAP = "PiYG"
ATTENTION_CMAP = "magma"
MAX_ALPHA = 0.75
FIGURE_SIDE = 900
"""Longest side (pixels) of each panel in the side-by-side figure (the overlay PNGs are full size)."""


@dataclass(frozen=True)
class Scale:
    """How values become colours: ``cmap`` between ``vmin`` and ``vmax``; ``signed`` maps alpha to ``|v|``."""

    cmap: str
    vmin: float
    vmax: float
    signed: bool
    label: str


def attribution_scale(values: np.ndarray, label: str = "Integrated Gradients (per pixel)") -> Scale:
    """Symmetric ``PiYG`` scale clipped at the 99th percentile of ``|values|`` (finite values only)."""
    finite = np.abs(values[np.isfinite(values)])
    limit = float(np.percentile(finite, 99)) if finite.size else 0.0
    limit = limit if limit > 0 else float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    return Scale(ATTRIBUTION_CMAP, -limit, limit, True, label)


def attention_scale(values: np.ndarray, label: str = "cross-attention rollout (text -> image)") -> Scale:
    """``magma`` from the smallest to the largest finite value (attention is rarely far from uniform,
    so the range is stretched; the colour bar shows how narrow it is)."""
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if high <= low:
        high = low + max(abs(low), 1.0) * 1e-6
    return Scale(ATTENTION_CMAP, low, high, False, label)


def film_scale() -> Scale:
    """The grey scale of the radiograph panel (decoded intensities, 0 = black)."""
    return Scale("gray", 0.0, 1.0, False, "film intensity (decoded, 0 = black)")


def overlay_rgb(gray: np.ndarray, heat: np.ndarray, scale: Scale) -> np.ndarray:
    """Blend ``heat`` ``(H, W)`` onto grey ``(H, W)`` in ``[0, 1]`` -> ``uint8 (H, W, 3)``.

    Values are quantised to the colour map's 256 entries; colour and opacity are both functions of
    the entry, so the blend is two table lookups and integer arithmetic (a 2320x2828 film takes a
    fraction of a second). ``NaN`` maps to a 257th entry that leaves the film untouched.
    """
    from matplotlib import colormaps

    gray = np.asarray(gray, dtype=np.float32)
    heat = np.asarray(heat, dtype=np.float32)
    if gray.ndim != 2 or heat.shape != gray.shape:
        raise QueryError(f"overlay needs a heatmap of the radiograph's shape {gray.shape}, got {heat.shape}")
    levels = np.linspace(0.0, 1.0, 256)
    colours = colormaps[scale.cmap](levels)[:, :3]
    if scale.signed:
        values = scale.vmin + levels * (scale.vmax - scale.vmin)
        strength = np.abs(values) / max(abs(scale.vmin), abs(scale.vmax))
    else:
        strength = levels
    alpha = np.append(MAX_ALPHA * np.clip(strength, 0.0, 1.0), 0.0)  # entry 256: NaN, not drawn
    keep = np.round((1.0 - alpha) * 256.0).astype(np.uint32)  # film weight, in 1/256
    add = np.round(np.vstack([colours, np.zeros((1, 3))]) * alpha[:, None] * 255.0 * 256.0).astype(np.uint32)
    finite = np.isfinite(heat)
    position = np.clip((np.where(finite, heat, scale.vmin) - scale.vmin) / (scale.vmax - scale.vmin), 0.0, 1.0)
    index = np.where(finite, np.round(position * 255.0).astype(np.uint16), np.uint16(256))
    film = np.round(np.clip(gray, 0.0, 1.0) * 255.0).astype(np.uint32) * keep[index]
    out = np.empty(gray.shape + (3,), dtype=np.uint8)
    for channel in range(3):
        out[..., channel] = (film + add[index, channel] + 128) >> 8
    return out


def save_png(path: Path, image: np.ndarray) -> Path:
    """Write a ``uint8`` ``(H, W)`` or ``(H, W, 3)`` array as a PNG of exactly that size."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(image)).save(path, format="PNG", compress_level=1)
    return path


def _thumbnail(image: np.ndarray) -> np.ndarray:
    from PIL import Image

    picture = Image.fromarray(np.ascontiguousarray(image))
    picture.thumbnail((FIGURE_SIDE, FIGURE_SIDE), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(picture)


def render_figure(path: Path, panels: Sequence[tuple[str, np.ndarray, Scale | None]], title: str) -> Path:
    """Side-by-side figure: one panel per ``(caption, uint8 image, colour scale or None)``.

    Panels with a scale get a colour bar. The title is wrapped to the figure width.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    if not panels:
        raise QueryError("a figure needs at least one panel")
    height, width = panels[0][1].shape[:2]
    panel_w = 5.0
    panel_h = min(8.0, max(3.0, panel_w * height / width))
    figure = Figure(figsize=(panel_w * len(panels), panel_h + 1.6), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)  # the Agg canvas, explicitly: no pyplot, no global backend state
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (caption, image, scale) in zip(axes, panels):
        ax.imshow(
            _thumbnail(image), cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255, interpolation="antialiased"
        )
        ax.set_title(caption, fontsize=10)
        ax.set_axis_off()
        if scale is not None:
            mappable = ScalarMappable(norm=Normalize(scale.vmin, scale.vmax), cmap=scale.cmap)
            bar = figure.colorbar(
                mappable,
                ax=ax,
                orientation="horizontal",
                fraction=0.05,
                pad=0.02,
                extend="both" if scale.signed else "neither",
            )
            bar.set_label(scale.label, fontsize=8)
            bar.ax.tick_params(labelsize=7)
    figure.suptitle("\n".join(textwrap.wrap(title, width=int(45 * len(panels)))), fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def word_style(value: float, limit: float) -> str:
    """A rich style: green background for positive, pink for negative, stronger for larger ``|value|``."""
    strength = 0.0 if limit <= 0 else min(1.0, abs(value) / limit)
    if strength < 0.05:
        return ""
    target = (77, 146, 33) if value > 0 else (197, 27, 125)  # the ends of PiYG
    r, g, b = (round(255 + (c - 255) * strength) for c in target)
    ink = "white" if strength > 0.6 else "black"
    return f"{ink} on rgb({r},{g},{b})"


def coloured_report(text: str, words: Sequence[WordAttribution]) -> Text:
    """The report with each attributed word coloured by its attribution (rich :class:`Text`)."""
    from rich.text import Text

    out = Text(text)
    values = np.array([w.attribution for w in words], dtype=np.float64)
    limit = float(np.abs(values).max()) if values.size else 0.0
    for word in words:
        style = word_style(word.attribution, limit)
        if style and 0 <= word.start < word.end <= len(text):
            out.stylize(style, word.start, word.end)
    return out
