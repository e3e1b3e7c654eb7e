"""``preserve image DEVICE``: a forensic image of a disk, a partition or a disk image file
into a new evidence directory, hashed while it is read, every bad sector journaled."""

from __future__ import annotations

from typing import Any

import click

from ..imaging.output import FORMATS
from ..imaging.pieces import DEFAULT_PIECE
from ..params import ByteSize, apply_options
from ._run_options import MODE_OPTIONS, OUTPUT_OPTIONS
from .collect import run_collection

IMAGE_OPTIONS = [
    click.argument("device"),
    click.option(
        "--format",
        "image_format",
        type=click.Choice(FORMATS),
        default="raw",
        show_default=True,
        help="raw (image.raw: dd-compatible) or e01 (Expert Witness Format).",
    ),
    click.option(
        "--split",
        "image_split",
        type=ByteSize(),
        help="Store the image in files of this size (image.raw.000, .001, ...); on a FAT32 "
        "drive it splits under 4 GiB anyway.",
    ),
    click.option(
        "--piece-size",
        type=ByteSize(),
        default=str(DEFAULT_PIECE),
        help="Bytes hashed and journaled as one piece (default 64M): verify names the "
        "piece a damaged byte is in, and a killed run keeps its sealed pieces.",
    ),
]


def _image(**options: Any) -> None:
    """Image DEVICE (a disk, partition or disk image file) into a new evidence directory.

    The device is opened read-only and read once: SHA-256 of the whole image and of
    every piece in the same pass, unreadable sectors written as zeros and journaled.

    \b
    Examples:
      preserve image /dev/sdb -o /media/kit/evidence --case IR-42 --examiner "A. Admin"
      preserve image /dev/sdb -o sftp://upload@lab.example/evidence --sink-host-key SHA256:...
      sha256sum EVIDENCE/artifacts/image/image.raw   # the same hash as the journal's
    """
    device = options.pop("device")
    options.update(image_device=device, image_only=True)
    ctx = click.get_current_context()
    ctx.exit(
        run_collection(
            only=(),
            skip=(),
            paths=(),
            max_file_size=None,
            **options,  # type: ignore[arg-type]
        )
    )


image_command = click.command("image", context_settings={"help_option_names": ["-h", "--help"]})(
    apply_options(_image, [*IMAGE_OPTIONS, *OUTPUT_OPTIONS, *MODE_OPTIONS])
)
