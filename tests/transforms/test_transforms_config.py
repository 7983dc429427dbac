import pytest

from xraystyle.config import from_dict, to_dict
from xraystyle.errors import ConfigError
from xraystyle.transforms import AugmentConfig, PreprocessConfig


def test_defaults_are_mild_and_valid():
    cfg = PreprocessConfig()
    assert cfg.size == 256 and cfg.lower_percentile == 0.5 and cfg.upper_percentile == 99.5
    a = cfg.augment
    assert a.enabled and a.exposure_range == (-0.1, 0.1) and a.gamma_range == (0.8, 1.25)
    assert a.noise_range[1] <= 0.05 and a.blur_range[1] <= 1.5


def test_from_dict_round_trip_with_yaml_lists():
    data = {"size": 128, "augment": {"exposure_range": [-0.2, 0.3], "noise_prob": 1, "contrast_about": "zero"}}
    cfg = from_dict(PreprocessConfig, data)
    assert cfg.size == 128 and cfg.augment.exposure_range == (-0.2, 0.3) and cfg.augment.noise_prob == 1.0
    assert from_dict(PreprocessConfig, to_dict(cfg)) == cfg


@pytest.mark.parametrize("data, key", [
    ({"size": 8}, "size"),
    ({"size": 4096}, "size"),
    ({"lower_percentile": 60, "upper_percentile": 40}, "lower_percentile"),
    ({"upper_percentile": 101}, "upper_percentile"),
    ({"augment": {"exposure_prob": 1.5}}, "augment.exposure_prob"),
    ({"augment": {"gamma_range": [0.0, 1.2]}}, "augment.gamma_range"),
    ({"augment": {"blur_range": [-1.0, 1.0]}}, "augment.blur_range"),
    ({"augment": {"contrast_range": [1.2, 0.8]}}, "augment.contrast_range"),
    ({"augment": {"noise_range": [0.1]}}, "augment.noise_range"),
    ({"augment": {"contrast_about": "median"}}, "augment.contrast_about"),
    ({"augment": {"flip_prob": 0.5}}, "augment.flip_prob"),
])
def test_invalid_values_raise_one_line_config_error(data, key):
    with pytest.raises(ConfigError) as err:
        from_dict(PreprocessConfig, data)
    assert key in str(err.value) and "\n" not in str(err.value)


def test_direct_construction_is_validated_too():
    with pytest.raises(ConfigError, match="augment.noise_prob"):
        AugmentConfig(noise_prob=-0.1)
    assert AugmentConfig(blur_range=[0, 2]).blur_range == (0.0, 2.0)
