"""The command-line side of imaging: ``--image DEVICE`` on a run, the checks that refuse
a bad request before anything is collected (exit 2), and the stage's progress estimate.
``preserve image`` (agent/commands/image.py) builds on it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from collectors.base import Collector, Stage
from manifests.errors import UsageError

from ..console import Estimate
from ..params import ByteSize
from .device import Source, open_source
from .output import FORMATS, check_format
from .pieces import DEFAULT_PIECE
from .stage import ImageCollector, ImageRequest

OPTIONS = [
    click.option(
        "--image",
        "image_device",
        metavar="DEVICE",
        help="Last, after everything else: a forensic image of this disk, partition or "
        "disk image file (as 'preserve image' takes it).",
    ),
    click.option(
        "--image-format", type=click.Choice(FORMATS), help="Format of --image (default raw)."
    ),
    click.option(
        "--image-split",
        type=ByteSize(),
        help="Store --image in files of this size (on FAT32 it splits under 4 GiB anyway).",
    ),
]


@dataclass
class ImagePlan:
    """``alone``: ``preserve image`` (the image is the run); ``stage``: ``--image``."""

    alone: list[Collector] = field(default_factory=list)
    stage: list[Collector] = field(default_factory=list)


def prepare(options: dict[str, Any], output: object, metadata: dict[str, str | None]) -> ImagePlan:
    """Pop the image options; open and describe the device now, so that a wrong name is
    one line and exit 2 before anything is collected."""
    device = options.pop("image_device", None)
    fmt = options.pop("image_format", None) or "raw"
    split = options.pop("image_split", None)
    piece = options.pop("piece_size", None) or DEFAULT_PIECE
    alone = bool(options.pop("image_only", False))
    if device is None:
        if fmt != "raw" or split is not None:
            raise UsageError("--image-format and --image-split only make sense with --image")
        return ImagePlan()
    request = build_request(device, fmt, split, piece, output, metadata)
    collector = ImageCollector(request)
    return ImagePlan(alone=[collector]) if alone else ImagePlan(stage=[collector])


def build_request(
    device: str,
    fmt: str,
    split: int | None,
    piece: int,
    output: object,
    metadata: dict[str, str | None],
) -> ImageRequest:
    check_format(fmt)
    if piece < 512 or piece % 512:
        raise UsageError(f"--piece-size {piece}: give a multiple of 512 bytes, such as 64M")
    if split is not None and (split < 512 or split % 512):
        raise UsageError(f"--split {split}: give a multiple of 512 bytes, such as 2G")
    source = open_source(device)
    try:
        _refuse_output_on(source, output)
    except BaseException:
        source.close()
        raise
    kept = tuple((k, v) for k, v in metadata.items() if v)
    return ImageRequest(source, fmt, split, piece, kept)


def _refuse_output_on(source: Source, output: object) -> None:
    """Writing the image onto the device being imaged would destroy what it preserves."""
    if not source.block_device or not isinstance(output, Path):
        return
    numbers = {
        source.info.get("dev"),
        *(p["dev"] for p in source.info.get("kernel_partitions", [])),
    }
    where = Path(os.path.abspath(output))
    while not where.exists() and where != where.parent:
        where = where.parent
    dev = os.stat(where).st_dev
    if f"{os.major(dev)}:{os.minor(dev)}" in numbers:
        raise UsageError(
            f"the output {output} is on {source.path}, the device being imaged",
            hint="write the image to another drive (the kit's)",
        )


def estimates(collectors: list[Collector]) -> dict[Stage, Estimate]:
    """The image stage's progress counts against the device's size."""
    images = [c for c in collectors if isinstance(c, ImageCollector)]
    if not images:
        return {}
    return {Stage.IMAGE: Estimate(len(images), sum(c.request.source.size for c in images))}
