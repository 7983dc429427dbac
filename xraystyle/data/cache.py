"""Pre-processed tensor cache: each image is read, windowed and resized once, not every step.

Reading a 2048 px DICOM costs tens of milliseconds; a training step at 256 px on a GPU costs
less. So the deterministic part of the pipeline (read -> window -> resize/pad) runs once over
the cohort, in parallel DataLoader workers, into a float16 ``.npy`` memory map keyed by a hash
of the manifest rows and the preprocessing settings. Random physics augmentation is applied
per batch on the training device afterwards. Unreadable images are skipped and counted; more
than ``max_bad_fraction`` of them stops the run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..errors import TrainingError, XrayStyleError

log = logging.getLogger(__name__)
CACHE_VERSION = 1


@dataclass
class TensorCache:
    images: np.ndarray  # [N, 1, S, S] float16 memmap in [-1, 1]
    ok: np.ndarray  # [N] bool: False for rows that failed to read
    key: str


class _PreprocessDataset(Dataset):
    def __init__(self, paths: list[Path], pipeline):
        self.paths = paths
        self.pipeline = pipeline

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            image = self.pipeline({"path": str(self.paths[i])})["image"]
            return i, torch.as_tensor(image, dtype=torch.float16), None
        except XrayStyleError as exc:
            # Only the reason travels on: the message is already identifier-free.
            return i, None, str(exc)


def files_fingerprint(manifest, n: int = 256, chunk: int = 1 << 16) -> list:
    """Size and the hash of the first and last 64 KiB of up to ``n`` image files spread evenly
    over the manifest.

    Images rewritten under the same paths (a re-export, a regenerated cohort) must not be served
    from an old cache. Content, not modification times: a copy of the cohort (``cp`` without
    ``-p``, another node's copy) keeps its key, so data-parallel ranks agree and nothing is
    rebuilt needlessly. Hashing every file would cost minutes on network storage for 10^5
    images, so a fixed sample is read (~30 MiB); a change confined to a few files can slip
    through: delete the cache folder after editing single images."""
    paths = list(manifest.df["path"])
    picks = sorted({int(i) for i in np.linspace(0, len(paths) - 1, num=min(n, len(paths)))}) if paths else []
    out = []
    for i in picks:
        try:
            with open(manifest.resolve(paths[i]), "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                h = hashlib.sha256(fh.read(chunk))
                if size > chunk:
                    fh.seek(max(chunk, size - chunk))
                    h.update(fh.read(chunk))
            out.append([size, h.hexdigest()[:16]])
        except OSError:
            out.append(None)
    return out


def cache_key(manifest, preprocess_cfg) -> str:
    pre = {k: v for k, v in asdict(preprocess_cfg).items() if k != "augment"}
    payload = {"v": CACHE_VERSION, "manifest": manifest.content_hash(),
               "rows": list(map(str, manifest.df["path"])), "preprocess": pre,
               "files": files_fingerprint(manifest)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def build_tensor_cache(manifest, preprocess_cfg, cache_dir: str | Path, *, workers: int = 0,
                       max_bad_fraction: float = 0.01, progress: bool = True) -> TensorCache:
    """Load (or build) the cache for every row of ``manifest`` (in row order)."""
    from ..transforms import eval_pipeline  # imported here: MONAI import is slow

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    remove_dead_scratch(cache_dir)
    key = cache_key(manifest, preprocess_cfg)
    data_path, ok_path = cache_dir / f"tensors-{key}.npy", cache_dir / f"tensors-{key}.ok.npy"
    n, size = len(manifest.df), preprocess_cfg.size
    if data_path.exists() and ok_path.exists():
        try:
            ok = np.load(ok_path, allow_pickle=False)
            images = np.load(data_path, mmap_mode="r", allow_pickle=False)
            if images.shape != (n, 1, size, size) or ok.shape != (n,) or images.dtype != np.float16:
                raise ValueError("unexpected shape or type")
        except (OSError, ValueError) as exc:  # damaged or foreign file: rebuild, never unpickle
            log.warning("tensor cache %s is unreadable (%s); rebuilding it", data_path.name, exc)
        else:
            _check_bad(ok, max_bad_fraction, manifest)
            return TensorCache(images, ok, key)

    paths = [manifest.resolve(p) for p in manifest.df["path"]]
    tmp = data_path.with_suffix(f".tmp{os.getpid()}.{_HOST}.npy")
    ok_tmp = ok_path.with_suffix(f".tmp{os.getpid()}.{_HOST}.npy")
    try:
        images = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(n, 1, size, size))
        ok = np.zeros(n, dtype=bool)
        loader = DataLoader(_PreprocessDataset(paths, eval_pipeline(preprocess_cfg)), batch_size=8,
                            num_workers=workers, collate_fn=list)
        failures: list[str] = []
        bar = tqdm(total=n, desc="preprocessing", unit="img", disable=not progress, leave=False)
        for batch in loader:
            for i, image, reason in batch:
                if image is None:
                    failures.append(reason)
                else:
                    images[i] = image.numpy()
                    ok[i] = True
            bar.update(len(batch))
        bar.close()
        images.flush()
        del images
        for reason in failures[:5]:
            log.warning("skipped unreadable image: %s", reason)
        if failures:
            log.warning("%d of %d images could not be read and are skipped", len(failures), n)
        _check_bad(ok, max_bad_fraction, manifest)
        np.save(ok_tmp, ok)
        os.replace(tmp, data_path)
        os.replace(ok_tmp, ok_path)
    except BaseException:  # a stopped build never leaves a cohort-sized scratch file behind
        tmp.unlink(missing_ok=True)
        ok_tmp.unlink(missing_ok=True)
        raise
    return TensorCache(np.load(data_path, mmap_mode="r", allow_pickle=False), ok, key)


# Scratch names carry the pid and the host: a cache folder on shared storage may be used by
# processes on several machines (or containers), whose pids mean nothing here.
_HOST = re.sub(r"[^A-Za-z0-9-]+", "-", socket.gethostname())[:40] or "host"
_SCRATCH = re.compile(r"^tensors-[0-9a-f]+(?:\.ok)?\.tmp(\d+)(?:\.([A-Za-z0-9-]+))?\.npy$")


def remove_dead_scratch(cache_dir: Path) -> list[Path]:
    """Delete scratch files of cache builds whose process is gone (killed -9, machine reset).

    A build removes its scratch file itself when it stops with an error; only SIGKILL and the
    like leave one, cohort-sized (13 GB for 100k images at 256 px) and never reused. A file is
    removed only when its process provably no longer exists on this machine: never another live
    build's, never one from another host. Files without a host (older versions) are judged by
    the pid alone."""
    removed = []
    for entry in os.scandir(cache_dir):
        m = _SCRATCH.match(entry.name)
        if not m or (m.group(2) is not None and m.group(2) != _HOST):
            continue
        pid = int(m.group(1))
        if pid == os.getpid() or _alive(pid):
            continue
        try:
            os.unlink(entry.path)
        except FileNotFoundError:  # another process cleaned it first
            continue
        except OSError as exc:
            log.debug("cannot remove stale cache scratch %s: %s", entry.name, exc)
            continue
        log.info("removed stale cache scratch file %s (process %d is gone)", entry.name, pid)
        removed.append(Path(entry.path))
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: exists, another user's; anything else: assume alive
        return True
    return True


def _check_bad(ok: np.ndarray, max_bad_fraction: float, manifest) -> None:
    bad = int((~ok).sum())
    if len(ok) and bad / len(ok) > max_bad_fraction:
        raise TrainingError(f"{manifest.path}: {bad} of {len(ok)} images could not be read "
                            f"(more than max_bad_fraction={max_bad_fraction}); run "
                            f"'xraystyle cohort check' to list them")
