"""The one normalised finding vocabulary every manifest column and source adapter maps into.

Names are lower-case snake_case. Each source adapter maps its own label names onto these (see
docs/manifest.md for the tables); a manifest column named like a finding must be one of them.
"""

from __future__ import annotations

FINDINGS: tuple[str, ...] = (
    "effusion",
    "nodule",
    "mass",
    "cardiomegaly",
    "pneumothorax",
    "consolidation",
    "atelectasis",
    "edema",
    "pneumonia",
    "infiltration",
    "emphysema",
    "fibrosis",
    "pleural_thickening",
    "hernia",
    "lung_opacity",
    "lung_lesion",
    "fracture",
    "support_devices",
    "enlarged_cardiomediastinum",
    "pleural_other",
    "aortic_enlargement",
    "calcification",
    "ild",
    "other_lesion",
    "tuberculosis",
    "copd",
    "lung_tumor",
    "enlarged_pa",
    "lung_cavity",
    "lung_cyst",
    "mediastinal_shift",
    "other_disease",
    "no_finding",
)

# Domain keyword of Manifest.domain_labels: "no named finding positive". Never a column.
NORMAL = "normal"
