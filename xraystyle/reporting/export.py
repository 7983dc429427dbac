"""Write synthesis results as 16-bit PNG and/or derived DICOM, with provenance sidecars.

Output names come from :attr:`SynthResult.name` (pixel hash, target, style); the index file
maps them to the input paths only when the caller asks for it (``keep_source_names``).

Intensity: by default the [-1, 1] model output fills the output bit depth (air black, bone
white). With ``restore=True`` the output goes back to the source's geometry (padding cropped,
resampled to the original rows x columns) and, where the source's robust window lies within
the output bit range (the usual case: DICOM VOI output, 8/16-bit PNG), to the source's own
grey levels: [-1, 1] maps back through the window limits the preprocessing recorded.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..atomic import atomic_write
from ..csvsafe import neutralise
from ..errors import XrayStyleError
from .provenance import SYNTHETIC_NOTICE, code_string, result_record

FORMATS = ("png", "dcm", "both")


@dataclass
class Rendered:
    """An output image in stored values, and how to display it."""

    stored: np.ndarray  # uint16 (rows, columns), values < 2**bits
    bits: int
    window_center: float
    window_width: float
    pixel_spacing: tuple[float, float] | None
    intensity: str  # "full-range" | "source-levels"
    geometry: str  # "model" | "resized" | "source"

    def as_png16(self) -> np.ndarray:
        """Values scaled to the full 16-bit range (the usual 8->16 bit expansion for 8 bits)."""
        if self.bits == 16:
            return self.stored
        scale = 65535.0 / (2**self.bits - 1)
        return np.round(self.stored.astype(np.float64) * scale).astype(np.uint16)


def source_bits(meta: dict[str, Any], formats: tuple[str, ...] = ("dicom", "png", "jpeg")) -> int:
    """The source's bit depth (8..16) when its format is in ``formats``, else 16.

    Derived DICOMs use it for DICOM sources only (BitsStored as in the source, 16 otherwise);
    restored PNGs for DICOM, PNG and JPEG sources, so the source's grey levels fit.
    """
    bits = meta.get("bits_stored")
    if meta.get("source_format") in formats and isinstance(bits, int) and bits >= 1:
        return int(min(16, max(8, bits)))
    return 16


def render(result, *, restore: bool = False, size: int | None = None, bits: int | None = None) -> Rendered:
    """Map ``result.image`` to stored values (see module docstring).

    ``size`` resamples the square model output to ``size`` x ``size`` (not with ``restore``).
    ``bits`` defaults to :func:`source_bits` of the source.
    """
    from ..transforms import resize_pad, undo_resize_pad

    if restore and size is not None:
        raise XrayStyleError("--size and --restore-geometry exclude each other")
    src = result.source
    bits = source_bits(src.meta) if bits is None else int(bits)
    top = float(2**bits - 1)
    x = result.image.float()
    spacing = src.meta.get("pixel_spacing")
    spacing = tuple(float(v) for v in spacing) if spacing else None
    geometry = "model"
    if restore:
        x = undo_resize_pad(x, src.geometry)
        geometry = "source"
    else:
        g = src.geometry
        if spacing is not None:  # pixels grew by original/resized along each axis
            spacing = (spacing[0] * g["original_shape"][0] / g["resized_shape"][0],
                       spacing[1] * g["original_shape"][1] / g["resized_shape"][1])
        if size is not None and size != x.shape[-1]:
            if spacing is not None:
                spacing = (spacing[0] * x.shape[-2] / size, spacing[1] * x.shape[-1] / size)
            x = resize_pad(x, int(size))[0]
            geometry = "resized"
    unit = ((x.clamp(-1, 1) + 1) / 2).squeeze(0).numpy().astype(np.float64)  # 0 air .. 1 bone

    low, high = src.window.get("low"), src.window.get("high")
    fits = (restore and low is not None and high is not None and np.isfinite([low, high]).all()
            and 0.0 <= low < high <= top)
    if fits:
        values = low + unit * (high - low)
        centre, width = (low + high) / 2, high - low
        intensity = "source-levels"
    else:
        values = unit * top
        centre, width = top / 2, top + 1
        intensity = "full-range"
    stored = np.clip(np.round(values), 0, top).astype(np.uint16)
    return Rendered(stored, bits, float(centre), float(width), spacing, intensity, geometry)


def png_bytes(pixels16: np.ndarray, description: str) -> bytes:
    """A 16-bit greyscale PNG whose text chunks say what it is and nothing about whom."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Software", f"xraystyle {__version__}")
    info.add_text("Description", SYNTHETIC_NOTICE)
    info.add_text("Comment", description)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels16, dtype=np.uint16)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def _atomic_write(path: Path, data: bytes) -> None:
    atomic_write(path, data, durable=False)  # outputs: a partial file never appears, no fsync needed


def derivation_text(result, model_info: dict[str, Any]) -> str:
    how = (f"latent style {result.style_index}, seed {result.seed}" if result.mode == "latent"
           else f"reference image sha256 {result.reference_sha256[:12]}")
    return (f"SYNTHETIC counterfactual by xraystyle {__version__} StarGAN v2: model checkpoint sha256 "
            f"{model_info['checkpoint_sha256'][:12]}, step {model_info['step']}; target domain "
            f"{result.target}; {how}")


def write_result(result, out_dir: Path, model_info: dict[str, Any], *, fmt: str = "png",
                 restore: bool = False, size: int | None = None) -> list[Path]:
    """Write one result as PNG and/or DICOM plus ``<name>.json``; returns the files written."""
    from ..io.dicom_writer import DerivedImage, write_derived_dicom

    if fmt not in FORMATS:
        raise XrayStyleError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out_dir = Path(out_dir)
    meta = result.source.meta
    record = result_record(result, model_info)
    derivation = derivation_text(result, model_info)
    written = []
    if fmt in ("png", "both"):
        rendered = render(result, restore=restore, size=size, bits=source_bits(meta) if restore else 16)
        record["png"] = _render_record(rendered)
        path = out_dir / f"{result.name}.png"
        _atomic_write(path, png_bytes(rendered.as_png16(), derivation))
        written.append(path)
    if fmt in ("dcm", "both"):
        rendered = render(result, restore=restore, size=size, bits=source_bits(meta, ("dicom",)))
        record["dicom"] = _render_record(rendered)
        keys = [model_info["checkpoint_sha256"], result.source.sha256]
        image = DerivedImage(
            pixels=rendered.stored,
            bits_stored=rendered.bits,
            window_center=rendered.window_center,
            window_width=rendered.window_width,
            derivation=derivation,
            series_description=f"SYNTHETIC counterfactual: {result.target} ({result.mode})",
            pixel_spacing=rendered.pixel_spacing,
            modality=code_string(meta.get("modality")) if meta.get("source_format") == "dicom" else None,
            view_position=code_string(meta.get("view_position")),
            body_part=code_string(meta.get("body_part")),
            uid_keys=(keys, [result.target, result.mode, str(result.seed), str(result.reference_sha256)],
                      [str(result.style_index), rendered.geometry, str(rendered.stored.shape),
                       str(rendered.bits), rendered.intensity]),
        )
        path = out_dir / f"{result.name}.dcm"
        written.append(write_derived_dicom(path, image))
    sidecar = out_dir / f"{result.name}.json"
    _atomic_write(sidecar, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
    written.append(sidecar)
    return written


def _render_record(rendered: Rendered) -> dict[str, Any]:
    return {"rows": int(rendered.stored.shape[0]), "columns": int(rendered.stored.shape[1]),
            "bits": rendered.bits, "geometry": rendered.geometry, "intensity": rendered.intensity,
            "window_center": round(rendered.window_center, 4), "window_width": round(rendered.window_width, 4),
            "pixel_spacing": [round(v, 6) for v in rendered.pixel_spacing] if rendered.pixel_spacing else None}


INDEX_COLUMNS = ("output", "target", "mode", "style_index", "seed", "source_sha256", "reference_sha256")


def write_index(rows: Iterable[dict[str, Any]], out_dir: Path, keep_source_names: bool = False) -> Path:
    """``index.csv``: one row per output; the ``source`` column (input path as given) only with
    ``keep_source_names``."""
    columns = list(INDEX_COLUMNS) + (["source"] if keep_source_names else [])
    # Input paths are user text: a name like =HYPERLINK(...) must not run in a spreadsheet.
    cells = [{k: ("" if row.get(k) is None else neutralise(row.get(k))) for k in columns} for row in rows]
    # Python < 3.12 leaves a bare CR unquoted with LF line ends, which splits the row for readers.
    has_cr = any(isinstance(v, str) and "\r" in v for row in cells for v in row.values())
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore", lineterminator="\n",
                            quoting=csv.QUOTE_ALL if has_cr else csv.QUOTE_MINIMAL)
    writer.writeheader()
    writer.writerows(cells)
    path = Path(out_dir) / "index.csv"
    _atomic_write(path, buffer.getvalue().encode("utf-8"))
    return path


def index_row(result) -> dict[str, Any]:
    spec = result.source.spec
    return {"output": result.name, "target": result.target, "mode": result.mode,
            "style_index": result.style_index if result.mode == "latent" else None, "seed": result.seed,
            "source_sha256": result.source.sha256, "reference_sha256": result.reference_sha256,
            "source": spec.label if spec is not None else None}

