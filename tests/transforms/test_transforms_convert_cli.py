import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import xraystyle.io as xio
from xraystyle.cli import app
from xraystyle.transforms import PreprocessConfig, eval_pipeline

from .conftest import chest_like, write_png16

runner = CliRunner()


def _one_line_error(result, *needles):
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xraystyle: error: ")
    assert "Traceback" not in result.output
    for n in needles:
        assert n in lines[0]


def test_convert_writes_16bit_png_equal_to_pipeline_output(tmp_path, fake_reader):
    src = write_png16(tmp_path / "in.png", chest_like(60, 40))
    out = tmp_path / "out.png"
    result = runner.invoke(app, ["convert", str(src), str(out), "--size", "32"])
    assert result.exit_code == 0, result.output
    with Image.open(out) as im:
        assert im.mode == "I;16" and im.size == (32, 32)
        written = np.asarray(im)
    assert written.dtype == np.uint16
    x = eval_pipeline(PreprocessConfig(size=32))({"path": src})["image"][0].numpy().astype(np.float64)
    expected = np.round((x + 1.0) / 2.0 * 65535.0).astype(np.uint16)
    np.testing.assert_array_equal(written, expected)
    assert written[:, :5].max() == 0 and written.max() > 60000  # padding is air (black), bone white


def test_convert_refuses_non_png_output(tmp_path, fake_reader):
    src = write_png16(tmp_path / "in.png", chest_like())
    result = runner.invoke(app, ["convert", str(src), str(tmp_path / "out.jpg")])
    _one_line_error(result, "out.jpg", ".png")
    assert not (tmp_path / "out.jpg").exists()


def test_convert_bad_input_is_one_line_exit_1(tmp_path, fake_reader):
    bad = tmp_path / "broken.png"
    bad.write_text("not an image")
    result = runner.invoke(app, ["convert", str(bad), str(tmp_path / "o.png")])
    _one_line_error(result, "broken.png", "cannot read")
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("args, needle", [(["--size", "8"], "size"), ([], "no_such_dir")])
def test_convert_bad_size_or_unwritable_output(tmp_path, fake_reader, args, needle):
    src = write_png16(tmp_path / "in.png", chest_like())
    result = runner.invoke(app, ["convert", str(src), str(tmp_path / "no_such_dir" / "o.png"), *args])
    _one_line_error(result, needle)


def test_convert_with_real_reader_if_available(tmp_path):
    if not callable(getattr(xio, "read_xray", None)):
        pytest.skip("xraystyle.io.read_xray not written yet")
    missing = runner.invoke(app, ["convert", str(tmp_path / "missing.dcm"), str(tmp_path / "o.png")])
    _one_line_error(missing, "missing.dcm")
    src = write_png16(tmp_path / "in.png", chest_like(40, 30).round())
    ok = runner.invoke(app, ["convert", str(src), str(tmp_path / "o.png"), "--size", "16"])
    assert ok.exit_code == 0, ok.output
    with Image.open(tmp_path / "o.png") as im:
        assert im.mode == "I;16" and im.size == (16, 16)
