"""``xraystyle convert``: write a radiograph exactly as the model sees it, as a 16-bit PNG."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Annotated

import typer

from ._common import fail, handle_errors


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # either one missing: nothing to overwrite
        return False


@handle_errors
def convert(
    input: Annotated[Path, typer.Argument(metavar="INPUT", help="Radiograph to read (DICOM, PNG, JPEG, NIfTI, MHA, ...).")],
    output: Annotated[Path, typer.Argument(metavar="OUTPUT.png", help="16-bit greyscale PNG to write.")],
    size: Annotated[int, typer.Option("--size", help="Side of the square output in pixels (16..2048).")] = 256,
) -> None:
    """Write INPUT as the eval pipeline sees it: windowed, resized, padded; [-1, 1] -> 0..65535.

    Air is dark and bone bright whatever the file's photometric interpretation.
    """
    if output.suffix.lower() != ".png":
        fail(f"{output}: output must be a .png file")
    if _same_file(input, output):  # another spelling, a symlink or a hard link of INPUT
        fail(f"{output}: is the input file; refusing to overwrite it")
    from PIL import Image

    from ..transforms import PreprocessConfig, eval_pipeline, to_uint16

    sample = eval_pipeline(PreprocessConfig(size=size))({"path": str(input)})
    pixels = to_uint16(sample["image"][0])
    buffer = io.BytesIO()  # encode fully before touching OUTPUT: no half-written file on error
    Image.fromarray(pixels).save(buffer, format="PNG")
    output.write_bytes(buffer.getvalue())
    typer.echo(f"wrote {output} ({size}x{size}, 16-bit)")
