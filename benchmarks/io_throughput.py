"""I/O throughput: 2048 x 2048 16-bit DICOM -> 256 x 256 float tensor, one process.

Writes a synthetic chest DX (12 bits stored in 16, window centre/width) uncompressed and as
JPEG 2000 lossless, then times, per encoding:
  read      ``xraystyle.io.read_xray`` alone (header checks, decode, LUTs, polarity);
  pipeline  ``xraystyle.transforms.eval_pipeline`` (read, robust window, resize+pad, tensor),
            or, where that module is absent, read + 0.5/99.5 percentile window + torch resize.
Prints a Markdown table (median milliseconds and images per second over --repeats runs after
one warm-up). Run from the repository root:

    python benchmarks/io_throughput.py --repeats 20 --threads 1
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
import torch
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

from xraystyle.io import read_xray


def synthetic_dx(side: int, seed: int = 0) -> np.ndarray:
    """A smooth chest-like 12-bit image with quantum-like noise (compresses like a radiograph)."""
    y, x = np.mgrid[0:side, 0:side] / side
    lungs = np.exp(-(((np.abs(x - 0.5) - 0.2) / 0.13) ** 2 + ((y - 0.45) / 0.28) ** 2))
    body = np.exp(-(((x - 0.5) / 0.42) ** 8 + ((y - 0.5) / 0.48) ** 8))
    level = 0.1 + 0.6 * body - 0.35 * lungs + 0.25 * np.exp(-(((x - 0.5) / 0.05) ** 2)) * body
    level += np.random.default_rng(seed).normal(0, 0.01, level.shape)
    return np.clip(np.rint(level * 0.8 * 4095), 0, 4095).astype(np.uint16)


def write_dicom(stored: np.ndarray, path: Path, syntax=ExplicitVRLittleEndian) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.ViewPosition = "DX", "PA"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelData = stored.tobytes()
    if syntax != ExplicitVRLittleEndian:
        ds.compress(syntax, stored, encoding_plugin="pylibjpeg")
    ds.save_as(path, enforce_file_format=True)
    return path


def simple_pipeline(out_size: int):
    """read_xray + percentile window + bilinear resize: the fallback when transforms are absent."""

    def run(path: Path) -> torch.Tensor:
        arr, _ = read_xray(path)
        lo, hi = np.percentile(arr, [0.5, 99.5])
        scaled = np.clip((arr - lo) / max(hi - lo, 1e-6), 0, 1) * 2 - 1
        tensor = torch.from_numpy(scaled.astype(np.float32))[None, None]
        return torch.nn.functional.interpolate(tensor, size=(out_size, out_size), mode="bilinear", antialias=True)[0]

    return run


def pipeline(out_size: int):
    try:
        from xraystyle.transforms import eval_pipeline
        from xraystyle.transforms.config import PreprocessConfig
    except ImportError:
        return "read_xray + percentile window + torch resize", simple_pipeline(out_size)
    compose = eval_pipeline(PreprocessConfig(size=out_size))
    return "transforms.eval_pipeline", lambda path: compose({"path": str(path)})["image"]


def time_it(fn, path: Path, repeats: int) -> float:
    fn(path)  # warm-up: imports, caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(path)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=2048)
    parser.add_argument("--out-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    stored = synthetic_dx(args.side)
    name, run = pipeline(args.out_size)
    with tempfile.TemporaryDirectory() as tmp:
        files = {
            "uncompressed": write_dicom(stored, Path(tmp) / "plain.dcm"),
            "JPEG 2000 lossless": write_dicom(stored, Path(tmp) / "j2k.dcm", JPEG2000Lossless),
        }
        out = run(files["uncompressed"])
        print(f"python {platform.python_version()}, pydicom {pydicom.__version__}, torch {torch.__version__}, "
              f"threads {args.threads}, {args.side}x{args.side} -> {tuple(out.shape)}, pipeline: {name}")
        print("| encoding | file size | stage | median ms / image | images / s |")
        print("|---|---|---|---|---|")
        for label, path in files.items():
            size = f"{path.stat().st_size / 2**20:.1f} MiB"
            for stage, fn in (("read_xray", read_xray), ("to 256 tensor", run)):
                seconds = time_it(fn, path, args.repeats)
                print(f"| {label} | {size} | {stage} | {seconds * 1e3:.0f} | {1 / seconds:.1f} |")


if __name__ == "__main__":
    main()
