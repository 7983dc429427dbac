"""LoadXrayd: the pipeline's entry, a MONAI dictionary transform over ``xraystyle.io.read_xray``.

MONAI's own ``LoadImaged`` is not used because its DICOM readers apply the rescale only (no
MONOCHROME1 inversion, no VOI LUT, no padding mask) and transpose by default; ``read_xray``
handles those and returns identifier-free metadata.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from monai.transforms import MapTransform

from ..errors import UnsupportedImageError


class LoadXrayd(MapTransform):
    """Read ``data[path_key]`` into ``image`` (1, H, W) float32, ``valid_mask`` (1, H, W) bool
    (False at DICOM padding pixels) and ``meta`` (``XrayMeta.to_dict()``, no identifiers).

    ``reader_kwargs`` are passed to ``read_xray``. Its typed errors (``InputError`` and
    subclasses) propagate unchanged. ``data[path_key]`` is stored back as ``str`` so that
    DataLoader collation works.
    """

    def __init__(self, path_key: str = "path", image_key: str = "image", mask_key: str = "valid_mask",
                 meta_key: str | None = "meta", reader_kwargs: Mapping[str, Any] | None = None):
        super().__init__(path_key)
        self.path_key, self.image_key, self.mask_key, self.meta_key = path_key, image_key, mask_key, meta_key
        self.reader_kwargs = dict(reader_kwargs or {})

    def __call__(self, data: Mapping) -> dict:
        from .. import io as xio  # lazy: the readers pull in pydicom and SimpleITK

        d = dict(data)
        path = d[self.path_key]
        array, meta = xio.read_xray(path, **self.reader_kwargs)
        array = np.asarray(array, dtype=np.float32)
        if array.ndim != 2:
            raise UnsupportedImageError(path, f"expected a 2-D image, got shape {array.shape}")
        if meta.valid_mask is None:
            mask = np.ones(array.shape, dtype=bool)
        else:
            mask = np.asarray(meta.valid_mask, dtype=bool)
            if mask.shape != array.shape:
                raise ValueError(f"reader returned a valid mask of shape {mask.shape} for an image of {array.shape}")
        d[self.path_key] = str(path)
        d[self.image_key] = array[None]
        d[self.mask_key] = mask[None]
        if self.meta_key:
            d[self.meta_key] = meta.to_dict()
        return d
