"""Radiograph-like phantoms: a seeded, labelled data set on which the image side can be seen to learn.

:func:`make_phantoms` draws grey, chest-shaped films (body, two lungs above domed diaphragms, a
heart, a spine, faint ribs) and, per study, zero to two **findings** drawn into them at varied
positions, sizes and contrasts, under varied exposure, gamma and noise:

===================  ==========================================================  ==================
label                what is drawn                                               its mask
===================  ==========================================================  ==================
``cardiomegaly``     a cardiac silhouette 1.4-1.8x the normal width              the heart
``pleural effusion`` fluid filling a lung base with a meniscus (higher            the fluid
                     laterally), blunting the costophrenic angle
``nodule``           a small bright round opacity inside a lung                  the disc
``hyperinflation``   large, hyperlucent lungs with low, flat diaphragms          the lung fields
``support devices``  sternotomy wires or a central venous catheter               the metal
``scoliosis``        a laterally curved spine                                    the spine
===================  ==========================================================  ==================

Each study is written in the layout the CLI reads (``cxrsearch train/index/evaluate --data OUT``):

- ``OUT/ecgen-radiology/<n>.xml``: an Open-i report (``uId CXR<n>``, FINDINGS and IMPRESSION written
  from templates, absent findings often negated: "No pleural effusion."; MeSH ``major`` terms from
  which :func:`~cxrsearch.data.labels.labels_from_mesh` gives exactly the drawn labels, ``normal``
  when nothing is drawn; one ``parentImage``);
- ``OUT/images/``: the film as 8-bit PNG (``CXR<n>_IM-<n>-1001.png``) or 12-bit DICOM
  (``<n>_IM-<n>-1001.dcm``, ViewPosition PA, about half of them MONOCHROME1: stored inverted);
- ``OUT/nlmcxr_dicom_metadata.csv.gz``: the view (PA) of every image, as Open-i ships it, so PNG
  films have a known view (``cxrsearch evaluate`` finds the table next to the reports);
- ``OUT/masks/<image id>__<label>.png``: per finding, where it was drawn (0/255, film size);
- ``OUT/phantoms.json``: the manifest (:class:`PhantomSet` as JSON).

Splits: the split of a study is :func:`~cxrsearch.data.splits.split_of` of its uid, so report
numbers are chosen (in increasing order) to fill the requested train/val/test counts.

Everything is a pure function of ``seed`` (``numpy.random.default_rng``): the same call writes the
same pixels, reports and masks. These are phantoms: they show that the machinery learns, and say
nothing about medical performance.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxrsearch.data.labels import labels_from_mesh
from cxrsearch.data.splits import split_of
from cxrsearch.errors import ConfigError

FINDINGS = ("cardiomegaly", "pleural effusion", "nodule", "hyperinflation", "support devices", "scoliosis")
"""The labels phantoms can carry (besides ``normal``), each one a vocabulary label."""
MANIFEST = "phantoms.json"
METADATA_CSV = "nlmcxr_dicom_metadata.csv.gz"
_REPORTS, _IMAGES, _MASKS = "ecgen-radiology", "images", "masks"


@dataclass(frozen=True)
class PhantomFinding:
    """One drawn finding: its ``label``, ``mask`` file (relative to the set's folder), its bounding
    box ``[y0, x0, y1, x1]`` in film pixels, ``area_share`` (mask pixels / film pixels), ``side``
    (``right``/``left``/``bilateral`` in the patient's frame, or ``None``) and the drawing
    ``params``."""

    label: str
    mask: str
    bbox: tuple[int, int, int, int]
    area_share: float
    side: str | None
    params: dict[str, Any]


@dataclass(frozen=True)
class PhantomStudy:
    """One study: ``uid``, ``split``, ``labels`` (vocabulary order), ``mesh`` major terms, the
    ``report`` (findings + impression), its single frontal image (``image_id``, ``image`` path
    relative to the set's folder, ``format`` png/dicom, ``photometric``) and its ``findings``."""

    uid: str
    split: str
    labels: tuple[str, ...]
    mesh: tuple[str, ...]
    findings_text: str
    impression: str
    image_id: str
    image: str
    format: str
    photometric: str | None
    findings: tuple[PhantomFinding, ...]


@dataclass(frozen=True)
class PhantomSet:
    """What :func:`make_phantoms` wrote under ``root``: the studies, their split sizes and the seed."""

    root: Path
    seed: int
    size: int
    studies: tuple[PhantomStudy, ...]

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    def split_counts(self) -> dict[str, int]:
        return {name: sum(1 for s in self.studies if s.split == name) for name in ("train", "val", "test")}

    def by_image_id(self) -> dict[str, PhantomStudy]:
        return {s.image_id: s for s in self.studies}

    def mask(self, finding: PhantomFinding) -> np.ndarray:
        """The finding's mask as a bool ``(H, W)`` array."""
        from PIL import Image

        with Image.open(self.root / finding.mask) as image:
            return np.asarray(image) > 127

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "size": self.size,
            "split_counts": self.split_counts(),
            "studies": [asdict(s) for s in self.studies],
        }


def load_phantoms(root: str | Path) -> PhantomSet:
    """The :class:`PhantomSet` whose manifest is ``root/phantoms.json``."""
    root = Path(root)
    try:
        raw = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the phantom manifest: {exc}", path=root / MANIFEST) from exc
    studies = tuple(
        PhantomStudy(
            **{
                **s,
                "labels": tuple(s["labels"]),
                "mesh": tuple(s["mesh"]),
                "findings": tuple(PhantomFinding(**{**f, "bbox": tuple(f["bbox"])}) for f in s["findings"]),
            }
        )
        for s in raw["studies"]
    )
    return PhantomSet(root=root, seed=int(raw["seed"]), size=int(raw["size"]), studies=studies)


# ------------------------------------------------------------------------------------- drawing


def _smooth_inside(distance: np.ndarray, softness: float) -> np.ndarray:
    """1 inside (``distance < 1``), 0 outside, a smooth ramp of width ``softness`` at the edge."""
    return np.clip((1.0 - distance) / softness + 0.5, 0.0, 1.0)


def _ellipse(yy, xx, cy, cx, ry, rx) -> np.ndarray:
    return np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)


@dataclass
class _Anatomy:
    """Normalised (0-1) geometry of one film, before findings change it."""

    cx: float
    cy: float
    scale: float
    lung_dx: float
    lung_rx: float
    lung_ry: float
    lung_cy: float
    dome_y: float
    dome_h: float
    heart_rx: float
    heart_ry: float
    heart_cx: float
    heart_cy: float


def _anatomy(rng: np.random.Generator) -> _Anatomy:
    s = rng.uniform(0.92, 1.06)
    cx, cy = 0.5 + rng.uniform(-0.03, 0.03), 0.5 + rng.uniform(-0.03, 0.03)
    lung_cy = cy - 0.06 * s
    return _Anatomy(
        cx=cx,
        cy=cy,
        scale=s,
        lung_dx=0.175 * s,
        lung_rx=0.135 * s,
        lung_ry=0.33 * s,
        lung_cy=lung_cy,
        dome_y=lung_cy + 0.2 * s,
        dome_h=0.05 * s,
        heart_rx=rng.uniform(0.095, 0.12) * s,
        heart_ry=rng.uniform(0.11, 0.13) * s,
        heart_cx=cx + 0.035 * s,
        heart_cy=lung_cy + 0.14 * s,
    )


def _lung_masks(yy, xx, a: _Anatomy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(right lung, left lung) soft masks in the patient's frame (right lung on the image's left), and
    the diaphragm height per column."""
    lungs = []
    for sign in (-1.0, 1.0):
        lx = a.cx + sign * a.lung_dx
        shape = _smooth_inside(_ellipse(yy, xx, a.lung_cy, lx, a.lung_ry, a.lung_rx), 0.06)
        # the domed diaphragm cuts the ellipse: its lateral end makes the costophrenic angle
        dome = a.dome_y - a.dome_h * (1.0 - np.clip(((xx - lx) / a.lung_rx) ** 2, 0.0, 1.0))
        below = np.clip((yy - dome) * 300.0 + 0.5, 0.0, 1.0)
        lungs.append(shape * (1.0 - below))
    dome_any = a.dome_y - a.dome_h
    return lungs[0], lungs[1], np.full(xx.shape[1], dome_any)


def _spine_x(yy_col: np.ndarray, a: _Anatomy, curve: float, phase: float) -> np.ndarray:
    return a.cx + curve * np.sin(np.pi * (yy_col - 0.12) / 0.8 + phase)


def _line_mask(yy, xx, points: np.ndarray, width: float) -> np.ndarray:
    """Soft mask of a polyline (``points`` ``[K, 2]`` as (y, x), normalised) of half-width ``width``."""
    best = np.full(yy.shape, np.inf)
    for (y0, x0), (y1, x1) in zip(points[:-1], points[1:]):
        dy, dx = y1 - y0, x1 - x0
        t = np.clip(((yy - y0) * dy + (xx - x0) * dx) / max(dy * dy + dx * dx, 1e-12), 0.0, 1.0)
        best = np.minimum(best, np.hypot(yy - (y0 + t * dy), xx - (x0 + t * dx)))
    return _smooth_inside(best / width, 0.5)


@dataclass
class _Film:
    """One film while it is drawn: the normalised pixel grid (``yy``, ``xx``, ``size`` pixels a side),
    its anatomy ``a``, the picture so far (``img``) and each finding drawn so far (``drawn``: label,
    bool mask, side, parameters). The steps of :func:`_draw` add to ``img`` and ``drawn`` in a fixed
    order: the draws of ``rng`` (and so every pixel for a seed) depend on it."""

    yy: np.ndarray
    xx: np.ndarray
    size: int
    a: _Anatomy
    img: np.ndarray
    drawn: list[dict[str, Any]] = field(default_factory=list)

    def add(self, label: str, mask: np.ndarray, side: str | None, params: dict[str, Any]) -> None:
        self.drawn.append({"label": label, "mask": mask, "side": side, "params": params})


@dataclass(frozen=True)
class _Lungs:
    """The lung fields of a film: right and left soft masks (patient's frame), their ``union``, and how
    much darker than the body they are drawn (``lucency``)."""

    right: np.ndarray
    left: np.ndarray
    union: np.ndarray
    lucency: float


def _draw(rng: np.random.Generator, size: int, findings: tuple[str, ...]) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One film (float ``(size, size)`` in [0, 1]) with ``findings`` drawn, and per finding its mask
    (bool), side and parameters."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    a = _finding_anatomy(rng, findings)
    body = _smooth_inside(_ellipse(yy, xx, a.cy + 0.06, a.cx, 0.55 * a.scale, 0.44 * a.scale), 0.05)
    film = _Film(yy, xx, size, a, img=0.05 + 0.5 * body)
    lungs = _draw_lungs(film, rng, hyperinflated="hyperinflation" in findings)
    if "pleural effusion" in findings:
        _draw_effusion(film, rng, lungs)
    heart = _draw_mediastinum(film, body)
    curve = rng.uniform(0.035, 0.055) * rng.choice([-1.0, 1.0]) if "scoliosis" in findings else 0.0
    spine = _draw_spine(film, rng, body, curve)
    if "cardiomegaly" in findings:
        thorax_width = round(2 * (a.lung_dx + a.lung_rx), 4)
        film.add(
            "cardiomegaly", heart > 0.5, None, {"heart_width": round(2 * a.heart_rx, 4), "thorax_width": thorax_width}
        )
    if "hyperinflation" in findings:
        params = {"lung_height": round(2 * a.lung_ry, 4), "lucency": round(lungs.lucency, 4)}
        film.add("hyperinflation", lungs.union > 0.5, "bilateral", params)
    if "scoliosis" in findings:
        film.add("scoliosis", spine > 0.5, None, {"curve": round(float(curve), 4)})
    if "nodule" in findings:
        _draw_nodule(film, rng, lungs, heart)
    if "support devices" in findings:
        _draw_support_device(film, rng)
    return _expose(rng, film.img), film.drawn


def _finding_anatomy(rng: np.random.Generator, findings: tuple[str, ...]) -> _Anatomy:
    """A film's anatomy, reshaped by the findings that change it: large lungs over low, flat
    diaphragms (hyperinflation), a wide heart (cardiomegaly)."""
    a = _anatomy(rng)
    if "hyperinflation" in findings:
        a.lung_ry *= rng.uniform(1.12, 1.2)
        a.lung_rx *= rng.uniform(1.06, 1.12)
        a.lung_cy += 0.03 * a.scale
        a.dome_y += rng.uniform(0.08, 0.11) * a.scale
        a.dome_h *= 0.3
        a.heart_cy += 0.06 * a.scale
        a.heart_rx *= 0.9
    if "cardiomegaly" in findings:
        factor = rng.uniform(1.4, 1.8)
        a.heart_rx *= factor
        a.heart_ry *= 1.0 + 0.4 * (factor - 1.0)
        a.heart_cx += 0.02 * a.scale
    return a


def _draw_lungs(film: _Film, rng: np.random.Generator, *, hyperinflated: bool) -> _Lungs:
    """Darken the lung fields (more when ``hyperinflated``) and lay faint oblique ribs over them."""
    yy, xx, a = film.yy, film.xx, film.a
    right, left, _ = _lung_masks(yy, xx, a)
    lucency = 0.3 + (0.1 if hyperinflated else 0.0) + rng.uniform(-0.03, 0.03)
    lung_field = np.clip(right + left, 0.0, 1.0)
    ribs = 0.5 + 0.5 * np.cos(2 * np.pi * (yy * 11.0 + 2.0 * np.abs(xx - a.cx) + rng.uniform(0, 1)))
    film.img = film.img - lucency * lung_field + 0.05 * ribs * lung_field
    return _Lungs(right, left, lung_field, lucency)


def _draw_effusion(film: _Film, rng: np.random.Generator, lungs: _Lungs) -> None:
    """Fluid filling one or both lung bases, its meniscus higher laterally."""
    yy, xx, a = film.yy, film.xx, film.a
    side = str(rng.choice(["right", "left", "bilateral"], p=[0.4, 0.4, 0.2]))
    amount = str(rng.choice(["small", "moderate"]))
    mask = np.zeros((film.size, film.size), dtype=bool)
    for sign, lung, name in ((-1.0, lungs.right, "right"), (1.0, lungs.left, "left")):
        if side not in (name, "bilateral"):
            continue
        lx = a.cx + sign * a.lung_dx
        depth = (rng.uniform(0.07, 0.1) if amount == "small" else rng.uniform(0.13, 0.18)) * a.scale
        lateral = np.clip(sign * (xx - lx) / a.lung_rx, -1.0, 1.0)  # -1 medial .. +1 lateral
        top = a.dome_y - depth - 0.08 * a.scale * np.clip(lateral, 0.0, 1.0) ** 2  # meniscus: higher laterally
        fluid = lung * np.clip((yy - top) * 200.0, 0.0, 1.0)
        film.img = film.img + lungs.lucency * 0.85 * fluid
        mask |= fluid > 0.5
    film.add("pleural effusion", mask, side, {"amount": amount})


def _draw_mediastinum(film: _Film, body: np.ndarray) -> np.ndarray:
    """The mediastinum and the heart over everything drawn so far; returns the heart's soft mask."""
    yy, xx, a = film.yy, film.xx, film.a
    mediastinum = _smooth_inside(_ellipse(yy, xx, a.lung_cy - 0.05, a.cx, 0.25 * a.scale, 0.05 * a.scale), 0.2)
    heart = _smooth_inside(_ellipse(yy, xx, a.heart_cy, a.heart_cx, a.heart_ry, a.heart_rx), 0.08)
    film.img = np.maximum(film.img, (0.5 + 0.1 * body) * np.maximum(mediastinum, heart))
    return heart


def _draw_spine(film: _Film, rng: np.random.Generator, body: np.ndarray, curve: float) -> np.ndarray:
    """The spine, laterally curved by ``curve`` (0: straight); returns its soft mask."""
    yy, xx, a = film.yy, film.xx, film.a
    spine_center = _spine_x(yy, a, curve, rng.uniform(-0.4, 0.4))
    spine = _smooth_inside(np.abs(xx - spine_center) / (0.025 * a.scale), 0.4) * body * (yy > 0.08)
    film.img = film.img + 0.12 * spine
    return spine


def _draw_nodule(film: _Film, rng: np.random.Generator, lungs: _Lungs, heart: np.ndarray) -> None:
    """A small bright round opacity well inside a lung, off the heart and above the diaphragm."""
    yy, xx, a = film.yy, film.xx, film.a
    candidates = np.argwhere(((lungs.right > 0.9) | (lungs.left > 0.9)) & (heart < 0.1) & (yy < a.dome_y - 0.04))
    y0, x0 = candidates[rng.integers(len(candidates))] / film.size
    radius = rng.uniform(0.02, 0.035)
    contrast = rng.uniform(0.2, 0.35)
    dist = np.hypot(yy - y0, xx - x0) / radius
    film.img = film.img + contrast * np.exp(-0.5 * (dist / 0.6) ** 4)
    side = "right" if x0 < a.cx else "left"
    zone = "upper" if y0 < a.lung_cy - 0.08 else "mid" if y0 < a.lung_cy + 0.08 else "lower"
    params = {
        "center": [round(float(y0), 4), round(float(x0), 4)],
        "radius": round(float(radius), 4),
        "contrast": round(float(contrast), 4),
        "zone": zone,
    }
    film.add("nodule", dist < 1.0, side, params)


def _draw_support_device(film: _Film, rng: np.random.Generator) -> None:
    """Sternotomy wires (4-6 loops down the midline) or a central venous catheter ending over the heart."""
    yy, xx, a = film.yy, film.xx, film.a
    kind = str(rng.choice(["sternotomy wires", "central line"]))
    metal = np.zeros((film.size, film.size))
    if kind == "sternotomy wires":
        for k in range(int(rng.integers(4, 7))):
            wy = a.lung_cy - 0.14 + 0.06 * k + rng.uniform(-0.01, 0.01)
            loop = _ellipse(yy, xx, wy, a.cx + rng.uniform(-0.01, 0.01), 0.012, 0.022)
            metal = np.maximum(metal, _smooth_inside(np.abs(loop - 1.0) / 0.35, 0.6))
    else:
        side_sign = rng.choice([-1.0, 1.0])
        start = (0.05, a.cx + side_sign * rng.uniform(0.12, 0.2))
        bend = (a.lung_cy - 0.2, a.cx - 0.03 + rng.uniform(-0.02, 0.02))
        tip = (a.heart_cy - rng.uniform(0.02, 0.08), a.cx - 0.04 + rng.uniform(-0.02, 0.02))
        metal = _line_mask(yy, xx, np.array([start, bend, tip]), rng.uniform(0.005, 0.008))
    film.img = film.img + 0.45 * metal
    film.add("support devices", metal > 0.3, None, {"kind": kind})


def _expose(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Exposure: contrast, brightness, gamma, then blur-free noise; clipped to [0, 1]."""
    img = np.clip(img, 0.0, 1.0)
    img = np.clip(rng.uniform(0.85, 1.1) * img + rng.uniform(-0.04, 0.06), 0.0, 1.0) ** rng.uniform(0.8, 1.25)
    img = img + rng.normal(0.0, rng.uniform(0.01, 0.035), img.shape)
    return np.clip(img, 0.0, 1.0)


# -------------------------------------------------------------------------------------- reports

_NEGATIONS = {
    "cardiomegaly": ("Heart size is normal.", "The cardiac silhouette is within normal limits.", "No cardiomegaly."),
    "pleural effusion": ("No pleural effusion.", "The costophrenic angles are sharp.", "No effusion."),
    "nodule": ("No pulmonary nodule.", "No focal nodule or mass.", "No suspicious pulmonary nodules."),
    "hyperinflation": ("Lung volumes are normal.", "The lungs are not hyperinflated.", "Normal lung volumes."),
    "support devices": ("No lines or tubes.", "No support devices.", "No medical devices are seen."),
    "scoliosis": ("The thoracic spine is straight.", "No scoliosis.", "Normal alignment of the spine."),
}


def _affirm(item: dict[str, Any], rng: np.random.Generator) -> tuple[str, str, str]:
    """(findings sentence, impression phrase, MeSH major term) for a drawn finding."""
    label, side, p = item["label"], item["side"], item["params"]
    if label == "cardiomegaly":
        degree = "moderate" if p["heart_width"] / p["thorax_width"] > 0.56 else "mild"
        sentence = str(
            rng.choice(
                ["The heart is enlarged.", "The cardiac silhouette is enlarged.", f"There is {degree} cardiomegaly."]
            )
        )
        return sentence, f"{degree.capitalize()} cardiomegaly.", f"Cardiomegaly/{degree}"
    if label == "pleural effusion":
        where = "bilateral" if side == "bilateral" else side
        sentence = f"{p['amount'].capitalize()} {where} pleural effusion with blunting of the costophrenic angle."
        mesh = f"Pleural Effusion/{'bilateral' if side == 'bilateral' else side}/{p['amount']}"
        return sentence, f"{p['amount'].capitalize()} {where} pleural effusion.", mesh
    if label == "nodule":
        mm = int(round(p["radius"] * 2 * 350))  # a 35 cm film
        sentence = f"There is a {mm} mm nodule in the {side} {p['zone']} lung."
        lobe = {"upper": "upper lobe", "mid": "middle lobe" if side == "right" else "lingula", "lower": "lower lobe"}[
            p["zone"]
        ]
        return sentence, f"{side.capitalize()} {p['zone']} lung nodule.", f"Nodule/lung/{lobe}/{side}"
    if label == "hyperinflation":
        sentence = str(
            rng.choice(
                ["The lungs are hyperinflated and hyperlucent.", "Hyperexpanded lungs with flattened diaphragms."]
            )
        )
        return sentence, "Hyperinflated lungs.", "Lung/hyperdistention"
    if label == "support devices":
        if p["kind"] == "sternotomy wires":
            return "Median sternotomy wires are present.", "Sternotomy wires.", "Implanted Medical Device"
        return (
            "A central venous catheter tip projects over the right atrium.",
            "Central line in place.",
            "Catheters, Indwelling",
        )
    degree = "moderate" if abs(p["curve"]) > 0.045 else "mild"
    return (
        f"There is {degree} scoliosis of the thoracic spine.",
        f"{degree.capitalize()} scoliosis.",
        f"Scoliosis/thoracic/{degree}",
    )


def _report(drawn: list[dict[str, Any]], rng: np.random.Generator) -> tuple[str, str, tuple[str, ...]]:
    present = {item["label"] for item in drawn}
    sentences, impressions, mesh = [], [], []
    for item in drawn:
        sentence, impression, term = _affirm(item, rng)
        sentences.append(sentence)
        impressions.append(impression)
        mesh.append(term)
    for label in FINDINGS:
        if label not in present and rng.random() < 0.6:
            sentences.append(str(rng.choice(_NEGATIONS[label])))
    order = rng.permutation(len(sentences))
    findings_text = " ".join(sentences[i] for i in order)
    impression = (
        " ".join(impressions)
        if impressions
        else str(rng.choice(["No acute cardiopulmonary abnormality.", "Normal chest.", "No acute disease."]))
    )
    return findings_text, impression, tuple(mesh) if mesh else ("normal",)


def _xml(uid: str, findings_text: str, impression: str, mesh: tuple[str, ...], image_id: str) -> str:
    from xml.sax.saxutils import escape

    major = "".join(f"\n      <major>{escape(term)}</major>" for term in mesh)
    return f"""<?xml version="1.0" encoding="utf-8"?>
<eCitation>
   <meta type="rr"/>
   <uId id="{uid}"/>
   <title>cxrsearch phantom (synthetic, not a patient)</title>
   <MedlineCitation>
      <Article>
         <Abstract>
            <AbstractText Label="COMPARISON">None.</AbstractText>
            <AbstractText Label="INDICATION">Phantom study.</AbstractText>
            <AbstractText Label="FINDINGS">{escape(findings_text)}</AbstractText>
            <AbstractText Label="IMPRESSION">{escape(impression)}</AbstractText>
         </Abstract>
      </Article>
   </MedlineCitation>
   <MeSH>{major}
   </MeSH>
   <parentImage id="{image_id}">
      <figureId>F1</figureId>
      <caption>Xray Chest PA</caption>
   </parentImage>
</eCitation>
"""


# -------------------------------------------------------------------------------------- writing


def _write_png(path: Path, pixels: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(np.round(pixels * 255).astype(np.uint8), mode="L").save(path, optimize=False)


def _write_dicom(path: Path, pixels: np.ndarray, monochrome1: bool, uid: str) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ComputedRadiographyImageStorage, ExplicitVRLittleEndian

    values = np.round(pixels * 4095).astype(np.uint16)
    if monochrome1:
        values = (4095 - values).astype(np.uint16)  # MONOCHROME1 stores bright (dense) as low values
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
    # a UUID-derived UID (2.25.<int>) from the study uid: the same file on every run
    meta.MediaStorageSOPInstanceUID = UID(
        "2.25." + str(int(hashlib.sha256(f"cxrsearch-phantom:{uid}".encode()).hexdigest()[:30], 16))
    )
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = ComputedRadiographyImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.PatientID = f"PHANTOM-{uid}"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.set_pixel_data(values, "MONOCHROME1" if monochrome1 else "MONOCHROME2", 12, generate_instance_uid=False)
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.save_as(path, enforce_file_format=True)


def _choose_findings(rng: np.random.Generator, normal_fraction: float, allowed: tuple[str, ...]) -> tuple[str, ...]:
    if rng.random() < normal_fraction:
        return ()
    count = 1 if rng.random() < 0.65 or len(allowed) < 2 else 2
    picked = rng.choice(len(allowed), size=count, replace=False)
    return tuple(sorted(allowed[i] for i in picked))


def _uids(counts: dict[str, int], first: int) -> list[tuple[str, str]]:
    """``(uid, split)`` in increasing report number until each split holds its count."""
    need, out, number = dict(counts), [], first
    while any(need.values()):
        uid = f"CXR{number}"
        split = split_of(uid)
        if need[split] > 0:
            need[split] -= 1
            out.append((uid, split))
        number += 1
    return out


def make_phantoms(
    out_dir: str | Path,
    n_studies: int = 600,
    seed: int = 0,
    *,
    size: int = 256,
    splits: tuple[float, float, float] = (0.6, 0.2, 0.2),
    dicom_fraction: float = 0.3,
    monochrome1_fraction: float = 0.5,
    normal_fraction: float = 0.2,
    first_number: int = 1,
    findings: tuple[str, ...] = FINDINGS,
) -> PhantomSet:
    """Write ``n_studies`` phantom studies under ``out_dir`` (see the module docstring) and return them.

    ``splits``: train/val/test shares (the counts are rounded; each split gets at least one study);
    ``dicom_fraction`` of the films are DICOM, ``monochrome1_fraction`` of those MONOCHROME1;
    ``normal_fraction`` of the studies have no finding, the others one (65 %) or two of ``findings``
    (a subset of :data:`FINDINGS`; absent ones are still negated in reports). ``out_dir``
    must be empty or absent: a phantom set is written whole or not at all.
    """
    if n_studies < 3:
        raise ConfigError(f"a phantom set needs at least 3 studies (one per split), got {n_studies}")
    if size < 64:
        raise ConfigError(f"phantom films must be at least 64 pixels wide, got {size}")
    counts = _split_counts(n_studies, splits)
    recipe = _Recipe(size, dicom_fraction, monochrome1_fraction, normal_fraction, findings)
    root = Path(out_dir)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ConfigError("phantoms are written into an empty or new folder; this one is not empty", path=root)
    for folder in (_REPORTS, _IMAGES, _MASKS):
        (root / folder).mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(seed)
    studies = tuple(_write_study(root, uid, split, recipe, rng) for uid, split in _uids(counts, first_number))
    _write_metadata(root, studies)
    result = PhantomSet(root=root, seed=seed, size=size, studies=studies)
    (root / MANIFEST).write_text(json.dumps(result.to_dict(), indent=1), encoding="utf-8")
    return result


@dataclass(frozen=True)
class _Recipe:
    """How every study of a set is drawn and written (the options of :func:`make_phantoms`, checked);
    ``findings`` are kept in :data:`FINDINGS` order."""

    size: int
    dicom_fraction: float
    monochrome1_fraction: float
    normal_fraction: float
    findings: tuple[str, ...]

    def __post_init__(self) -> None:
        for name in ("dicom_fraction", "monochrome1_fraction", "normal_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {value}")
        allowed = tuple(f for f in FINDINGS if f in set(self.findings))
        if not allowed or set(self.findings) - set(FINDINGS):
            raise ConfigError(
                f"findings must be a non-empty subset of {', '.join(FINDINGS)}, got {list(self.findings)}"
            )
        object.__setattr__(self, "findings", allowed)


def _split_counts(n_studies: int, splits: tuple[float, float, float]) -> dict[str, int]:
    """Studies per split from the train/val/test ``splits`` shares (rounded, each at least one)."""
    if len(splits) != 3 or min(splits) <= 0:
        raise ConfigError(f"splits must be three positive train/val/test shares, got {splits}")
    total = sum(splits)
    n_val = max(1, round(n_studies * splits[1] / total))
    n_test = max(1, round(n_studies * splits[2] / total))
    return {"train": max(1, n_studies - n_val - n_test), "val": n_val, "test": n_test}


def _write_study(root: Path, uid: str, split: str, recipe: _Recipe, rng: np.random.Generator) -> PhantomStudy:
    """Draw one study (findings, film, report: in that order from ``rng``) and write its report,
    film and masks under ``root``."""
    number = int(uid[3:])
    chosen = _choose_findings(rng, recipe.normal_fraction, recipe.findings)
    pixels, drawn = _draw(rng, recipe.size, chosen)
    findings_text, impression, mesh = _report(drawn, rng)
    labels = labels_from_mesh(mesh)
    expected = tuple(sorted(chosen)) or ("normal",)
    if tuple(sorted(labels)) != expected:  # pragma: no cover - the templates and labels.json disagree
        raise ConfigError(f"phantom MeSH terms {mesh} give labels {labels}, not {expected}")
    image_id = f"CXR{number}_IM-{number % 10000:04d}-1001"
    image_path, photometric = _write_film(root / _IMAGES, image_id, uid, pixels, recipe, rng)
    records = _write_masks(root, image_id, drawn)
    (root / _REPORTS / f"{number}.xml").write_text(
        _xml(uid, findings_text, impression, mesh, image_id), encoding="utf-8"
    )
    return PhantomStudy(
        uid,
        split,
        labels,
        mesh,
        findings_text,
        impression,
        image_id,
        str(image_path.relative_to(root)),
        "png" if photometric is None else "dicom",
        photometric,
        records,
    )


def _write_film(
    images: Path, image_id: str, uid: str, pixels: np.ndarray, recipe: _Recipe, rng: np.random.Generator
) -> tuple[Path, str | None]:
    """Write the film as DICOM (``recipe.dicom_fraction`` of them, MONOCHROME1 or 2) or PNG; returns
    its path and its DICOM photometric interpretation (``None`` for a PNG)."""
    as_dicom = rng.random() < recipe.dicom_fraction
    if not as_dicom:
        path = images / f"{image_id}.png"
        _write_png(path, pixels)
        return path, None
    monochrome1 = rng.random() < recipe.monochrome1_fraction
    path = images / f"{image_id[3:]}.dcm"
    _write_dicom(path, pixels, monochrome1, uid)
    return path, "MONOCHROME1" if monochrome1 else "MONOCHROME2"


def _write_masks(root: Path, image_id: str, drawn: list[dict[str, Any]]) -> tuple[PhantomFinding, ...]:
    """Write each drawn finding's mask (0/255 PNG) under ``root/masks``; returns the findings."""
    records = []
    for item in drawn:
        mask_path = root / _MASKS / f"{image_id}__{item['label'].replace(' ', '-')}.png"
        mask = item["mask"]
        _write_png(mask_path, mask.astype(np.float64))
        ys, xs = np.nonzero(mask)
        bbox = (int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1) if len(ys) else (0, 0, 0, 0)
        records.append(
            PhantomFinding(
                item["label"],
                str(mask_path.relative_to(root)),
                bbox,
                round(float(mask.mean()), 6),
                item["side"],
                item["params"],
            )
        )
    return tuple(records)


def _write_metadata(root: Path, studies: tuple[PhantomStudy, ...]) -> None:
    """``root/nlmcxr_dicom_metadata.csv.gz``: view and photometric interpretation of every film, as
    Open-i ships them (a PNG counts as MONOCHROME2); the same bytes on every run."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["imageid", "View Position", "Photometric Interpretation"])
    writer.writerows((s.image_id, "PA", s.photometric or "MONOCHROME2") for s in studies)
    with open(root / METADATA_CSV, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as handle:
        handle.write(buffer.getvalue().encode("utf-8"))  # mtime=0: the same bytes on every run
