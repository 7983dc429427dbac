"""Independent judges of counterfactuals: one ``Classifier`` interface over two kinds of model.

- ``xrv:<weights>``: torchxrayvision's pretrained models (``xrv:densenet121-res224-all``, ...),
  read only from torchxrayvision's cache ``~/.torchxrayvision/models_data/`` or from
  ``weights_dir``. torchxrayvision itself downloads a missing file on construction; we never
  construct it with ``weights=``: we look for the exact file name it would use, build the
  architecture with ``weights=None`` and load the file ourselves with ``weights_only=True``.
- ``PATH.pt``: a classifier trained by ``xraystyle classifier train`` on real images.

Every classifier takes the toolkit's images, ``(B, 1, S, S)`` in [-1, 1] at any S, and does its
own resizing and scaling. ``predict_proba`` returns uncalibrated sigmoid probabilities;
``thresholds`` are the per-finding operating points in that same probability space (decide
"present" with ``p >= thresholds``); ``calibrated_proba`` rescales piecewise-linearly so each
operating point maps to 0.5 (torchxrayvision's ``op_norm``).
"""

from __future__ import annotations

import abc
import hashlib
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..cohorts.vocabulary import FINDINGS
from ..errors import CheckpointError, ConfigError, MissingWeightsError, XrayStyleError
from .nets import build_classifier_net

log = logging.getLogger(__name__)

CLASSIFIER_FORMAT = "xraystyle-classifier"
CLASSIFIER_VERSION = 1

# torchxrayvision pathology name -> our vocabulary (docs/manifest.md).
XRV_TO_VOCAB: dict[str, str] = {
    "Atelectasis": "atelectasis", "Consolidation": "consolidation", "Infiltration": "infiltration",
    "Pneumothorax": "pneumothorax", "Edema": "edema", "Emphysema": "emphysema", "Fibrosis": "fibrosis",
    "Effusion": "effusion", "Pneumonia": "pneumonia", "Pleural_Thickening": "pleural_thickening",
    "Cardiomegaly": "cardiomegaly", "Nodule": "nodule", "Mass": "mass", "Hernia": "hernia",
    "Lung Lesion": "lung_lesion", "Fracture": "fracture", "Lung Opacity": "lung_opacity",
    "Enlarged Cardiomediastinum": "enlarged_cardiomediastinum",
}
assert set(XRV_TO_VOCAB.values()) <= set(FINDINGS)


def op_norm(p: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """torchxrayvision's operating-point normalisation, vectorised: threshold -> 0.5, piecewise
    linear below and above. (Its own ``op_norm`` treats NaN thresholds specially; ours are
    always finite.)"""
    t = thresholds.to(p).expand_as(p)
    return torch.where(p < t, p / (2 * t), 1 - (1 - p) / (2 * (1 - t)))


class Classifier(nn.Module, abc.ABC):
    """A multi-label chest X-ray classifier over our finding vocabulary.

    Subclasses implement :meth:`_net_logits_and_features` on a prepared input; this class
    handles selection of the output columns, probabilities and operating points.
    """

    def __init__(self, findings: list[str], input_size: int, thresholds: list[float], identity: str, name: str):
        super().__init__()
        self.findings = list(findings)
        self.input_size = int(input_size)
        self.register_buffer("_thresholds", torch.tensor(thresholds, dtype=torch.float32))
        self.identity = identity  # stable id of the weights (cache keys of real-image features)
        self.name = name

    @property
    def thresholds(self) -> torch.Tensor:
        return self._thresholds

    @property
    def device(self) -> torch.device:
        return self._thresholds.device

    def index(self, finding: str) -> int:
        if finding not in self.findings:
            raise XrayStyleError(f"classifier {self.name} does not predict {finding!r} "
                                 f"(it predicts: {', '.join(self.findings)})")
        return self.findings.index(finding)

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"expected images (B, 1, S, S), got shape {tuple(x.shape)}")
        x = x.to(self.device, torch.float32)
        if x.shape[-2:] != (self.input_size, self.input_size):
            down = x.shape[-1] > self.input_size
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                              align_corners=False, antialias=down)
        return x

    @abc.abstractmethod
    def _net_logits_and_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of ``findings`` (B, K) and penultimate features (B, F) of a resized batch."""

    @torch.no_grad()
    def logits_and_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._net_logits_and_features(self._resize(x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_and_features(x)[0]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (B, F): the space of the X-ray FID."""
        return self.logits_and_features(x)[1]

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Uncalibrated probabilities (B, K), K = len(findings); compare with ``thresholds``."""
        return torch.sigmoid(self.logits(x))

    def calibrated_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities rescaled so that each finding's operating point is 0.5."""
        return op_norm(self.predict_proba(x), self.thresholds)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Bool (B, K): finding present at the operating point."""
        return self.predict_proba(x) >= self.thresholds


class XrvClassifier(Classifier):
    """A torchxrayvision pretrained model; inputs scaled to its [-1024, 1024] convention."""

    def __init__(self, net: nn.Module, kind: str, columns: list[int], findings: list[str],
                 input_size: int, thresholds: list[float], identity: str, name: str):
        super().__init__(findings, input_size, thresholds, identity, name)
        self.net = net.eval().requires_grad_(False)
        self.kind = kind
        self.columns = list(columns)

    def _net_logits_and_features(self, x):
        x = x * 1024.0  # torchxrayvision's xrv.utils.normalize range
        if self.kind == "densenet":
            feats = self.net.features2(x)  # no input_resolution attribute: no prints, we resized
            logits = self.net.classifier(feats)
        else:
            m = self.net
            h = m.maxpool(m.relu(m.bn1(m.conv1(x))))
            h = m.layer4(m.layer3(m.layer2(m.layer1(h))))
            feats = torch.flatten(m.avgpool(h), 1)
            logits = m.fc(feats)
        return logits[:, self.columns], feats


class TrainedClassifier(Classifier):
    """A classifier trained by ``xraystyle classifier train`` (our nets, [-1, 1] inputs)."""

    def __init__(self, net: nn.Module, arch: str, findings: list[str], input_size: int,
                 thresholds: list[float], identity: str, name: str, info: dict[str, Any] | None = None):
        super().__init__(findings, input_size, thresholds, identity, name)
        self.net = net.eval().requires_grad_(False)
        self.arch = arch
        self.info = info or {}

    def _net_logits_and_features(self, x):
        return self.net(x)


# ----------------------------------------------------------------------------- torchxrayvision


def xrv_weights_file(weights: str) -> str:
    """File name torchxrayvision stores ``weights`` under (basename of its download URL)."""
    import torchxrayvision as xrv

    urls = xrv.models.model_urls
    if weights not in urls:
        raise ConfigError(f"unknown torchxrayvision weights {weights!r}; known: {', '.join(sorted(urls))}")
    return urls[weights]["weights_url"].rsplit("/", 1)[-1]


def xrv_cache_dir() -> Path:
    """torchxrayvision's own weights cache (``xrv.utils.get_cache_dir()``)."""
    import torchxrayvision as xrv

    return Path(xrv.utils.get_cache_dir()).expanduser()


def find_xrv_weights(weights: str, weights_dir: Path | None = None) -> Path:
    """Path of the weights file, or MissingWeightsError naming the file and folders searched.

    ``weights_dir`` replaces torchxrayvision's cache folder (never both: what is loaded is
    always what the caller pointed at).
    """
    name = xrv_weights_file(weights)
    folders = [Path(weights_dir).expanduser()] if weights_dir is not None else [xrv_cache_dir()]
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    raise MissingWeightsError(
        f"torchxrayvision weights {name} for xrv:{weights} not found (searched: "
        f"{', '.join(str(f) for f in folders)}); xraystyle never downloads: copy the file there "
        f"or pass --weights-dir")


def _xrv_safe_globals() -> list:
    """Classes a torchxrayvision DenseNet release file pickles (whole-module files): allowed for
    ``torch.load(weights_only=True)``, which then rebuilds them without running pickled code."""
    import torchxrayvision as xrv

    m = xrv.models
    return [m.DenseNet, m._DenseBlock, m._DenseLayer, m._Transition, nn.Sequential, nn.Conv2d,
            nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.Linear, nn.Dropout, set]


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        with torch.serialization.safe_globals(_xrv_safe_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad weights file
        first = str(exc).strip().splitlines()
        hint = next((ln for ln in first if "GLOBAL" in ln or "Unsupported" in ln), first[0] if first else "")
        raise CheckpointError(path, f"cannot load with weights_only=True ({hint.strip()[:200]})") from None
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise CheckpointError(path, f"expected a state_dict or a model, found {type(obj).__name__}")
    return obj


def load_xrv_classifier(weights: str, weights_dir: Path | None = None, device: str | torch.device = "cpu") -> XrvClassifier:
    import torchvision
    import torchxrayvision as xrv

    path = find_xrv_weights(weights, weights_dir)
    entry = xrv.models.model_urls[weights]
    labels = list(entry["labels"])
    if weights.startswith("resnet"):
        # xrv.models.ResNet always calls get_weights (a download when absent): build the same
        # torchvision network with its one-channel stem, as torchxrayvision does.
        kind = "resnet"
        ctor = torchvision.models.resnet101 if weights.startswith("resnet101") else torchvision.models.resnet50
        net = ctor(num_classes=len(labels), weights=None)
        net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    else:  # every other name in model_urls is a DenseNet-121 (all, nih, chex, densenet121-res224-*)
        kind = "densenet"
        net = xrv.models.DenseNet(weights=None, num_classes=len(labels))
    state = _load_state(path)
    state = {k: v for k, v in state.items() if k != "op_threshs"}
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(path, f"does not match torchxrayvision {kind} ({str(exc).splitlines()[0][:150]})") from None
    columns, findings, thresholds = [], [], []
    op = entry.get("op_threshs")
    for j, label in enumerate(labels):
        if label not in XRV_TO_VOCAB:
            continue  # '' = this model has no output for that pathology
        t = float(op[j]) if op is not None else float("nan")
        if t != t:  # no calibrated operating point published for this output
            log.warning("xrv:%s has no operating point for %s: using 0.5", weights, label)
            t = 0.5
        columns.append(j)
        findings.append(XRV_TO_VOCAB[label])
        thresholds.append(t)
    identity = f"xrv:{weights}:{_file_sha256(path)[:16]}"
    clf = XrvClassifier(net, kind, columns, findings, int(entry.get("input_resolution", 224)), thresholds,
                        identity, f"xrv:{weights}")
    return clf.to(device)


# ----------------------------------------------------------------------------- our .pt files


def load_trained_classifier(path: Path, device: str | torch.device = "cpu") -> TrainedClassifier:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "classifier file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated, not a torch file, pickled code, ...
        raise CheckpointError(path, f"not a readable classifier file ({str(exc).strip().splitlines()[0][:150]})") from None
    if not isinstance(payload, dict) or payload.get("format") != CLASSIFIER_FORMAT:
        raise CheckpointError(path, "not an xraystyle classifier (train one with 'xraystyle classifier train')")
    try:
        findings = list(payload["findings"])
        net = build_classifier_net(payload["arch"], len(findings))
        net.load_state_dict(payload["state_dict"])
        clf = TrainedClassifier(net, payload["arch"], findings, int(payload["input_size"]),
                                [float(t) for t in payload["thresholds"]], f"pt:{_file_sha256(path)[:16]}",
                                path.name, info={k: payload.get(k) for k in ("val_auc", "threshold_rule", "train")})
    except (KeyError, TypeError, ValueError, RuntimeError, ConfigError) as exc:
        raise CheckpointError(path, f"classifier file is incomplete ({str(exc).splitlines()[0][:150]})") from None
    return clf.to(device)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_classifier(spec: str, weights_dir: Path | None = None, device: str | torch.device = "cpu") -> Classifier:
    """``xrv:<weights>`` (torchxrayvision, cached weights only) or a ``.pt`` trained here."""
    spec = str(spec).strip()
    if spec.startswith("xrv:"):
        return load_xrv_classifier(spec[4:], weights_dir, device)
    if spec.endswith(".pt") or Path(spec).exists():
        return load_trained_classifier(Path(spec), device)
    raise ConfigError(f"classifier {spec!r}: expected xrv:<weights> (e.g. xrv:densenet121-res224-all) "
                      "or a .pt file from 'xraystyle classifier train'")
