import numpy as np
import pytest

from xraystyle.errors import XrayStyleError
from xraystyle.models.labels import action_title
from xraystyle.reporting import figures
from xraystyle.reporting.counterfactual import _nice, select_findings
from xraystyle.reporting.provenance import code_string, technical_metadata


@pytest.mark.parametrize("size,scale", [(32, 6), (64, 3), (128, 2), (256, 1), (1024, 1)])
def test_display_scale_enlarges_small_models_by_whole_pixels(size, scale):
    assert figures.display_scale(size) == scale
    img = np.linspace(-1, 1, size * size).reshape(size, size)
    rgb = figures.grey_rgb(img)
    assert rgb.shape == (size * scale, size * scale, 3)
    assert (rgb[:scale, :scale] == rgb[0, 0]).all()  # nearest neighbour: blocks of one value


def test_marked_panel_keeps_the_image_and_adds_a_strip():
    img = np.zeros((32, 32))
    plain, marked = figures.grey_rgb(img), figures.synthetic_panel(img)
    assert marked.shape[1] == plain.shape[1] and marked.shape[0] > plain.shape[0] + 20
    assert (marked[: plain.shape[0]] == plain).all()  # no anatomy hidden by the mark
    strip = marked[plain.shape[0]:]
    assert (strip == figures.MARK_FILL).all(axis=2).mean() > 0.5 and (strip.sum(axis=2) < 100).any()  # text


def test_difference_colours_are_symmetric():
    rgb = figures.colour_rgb(np.array([[-0.2, 0.0, 0.2]]), -0.2, 0.2, figures.DIFF_CMAP, scale=1)
    blue, white, red = rgb[0].astype(int)
    assert blue[2] > blue[0] and red[0] > red[2] and white.min() > 230


def test_nice_limits():
    assert [_nice(v) for v in (0.0, 0.013, 0.2, 0.31, 0.9, 1.7)] == [0.01, 0.02, 0.2, 0.5, 1.0, 2.0]


def test_select_findings_and_titles():
    available = ["Effusion", "Cardiomegaly", "Pleural_Thickening"]
    assert select_findings(available, None, ["normal", "effusion"]) == ["Effusion"]
    assert select_findings(available, None, ["normal", "nodule"]) == available
    assert select_findings(available, ["pleural thickening"], ["normal"]) == ["Pleural_Thickening"]
    with pytest.raises(XrayStyleError, match="does not predict nodule"):
        select_findings(available, ["nodule"], ["normal"])
    assert action_title("normal", "effusion") == "add effusion"
    assert action_title("effusion", "normal") == "remove effusion"
    assert action_title("nodule", "effusion") == "replace nodule with effusion"
    assert action_title(None, "normal") == "to normal (no finding)"


def test_technical_whitelist_and_code_strings():
    meta = {"source_format": "dicom", "view_position": "PA", "patient_age_years": 45.0, "notes": ["x"],
            "rows": 10, "window_center": [1.0]}
    assert technical_metadata(meta) == {"source_format": "dicom", "view_position": "PA", "rows": 10}
    assert code_string("pa ") == "PA" and code_string("<script>") is None and code_string("A" * 17) is None
