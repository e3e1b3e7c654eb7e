"""What an E01 can hold, checked before the first byte is written: sector and chunk
sizes readers accept, the compression levels, segment file sizes, and the 32-bit chunk
count and 14,971 segment names that bound an image."""

from __future__ import annotations

from manifests.errors import UsageError

from . import ewf_sections as s

DEFAULT_SEGMENT_SIZE = 1536 * 1024 * 1024  # ewfacquire's is 1.4 GiB; FAT32 holds < 4 GiB
MIN_SEGMENT_SIZE = 1024 * 1024
SEGMENT_OVERHEAD = 64 * 1024  # headers, tables, closing sections and error2 room: at most
COMPRESSION = {"none": None, "empty-block": 1, "fast": 1, "best": 9}  # zlib levels
VOLUME_LEVEL = {"none": s.LEVEL_NONE, "empty-block": s.LEVEL_NONE, "fast": s.LEVEL_FAST}
SECTOR_SIZES = (512, 1024, 2048, 4096)
CHUNK_SECTORS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)


class EwfSettingsError(UsageError):
    """The E01 cannot be written as asked (sizes, compression); found before writing."""


def check_settings(
    media_size: int, sector_size: int, sectors_per_chunk: int, segment_size: int, compression: str
) -> None:
    """Refuse what the format or its readers cannot hold, before anything is written."""
    if media_size <= 0:
        raise EwfSettingsError(
            "an E01 image needs at least one byte of media", hint="check the device's size"
        )
    if sector_size not in (512, 1024, 2048, 4096):
        raise EwfSettingsError(f"sector size {sector_size} is not one E01 readers accept")
    if sectors_per_chunk not in (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768):
        raise EwfSettingsError(f"{sectors_per_chunk} sectors a chunk is not an EWF chunk size")
    if compression not in COMPRESSION:
        raise EwfSettingsError(
            f"unknown E01 compression {compression!r}",
            hint="use none, empty-block, fast or best",
        )
    chunk = sector_size * sectors_per_chunk
    if segment_size < max(MIN_SEGMENT_SIZE, 4 * chunk):
        raise EwfSettingsError(
            f"an E01 segment file of {segment_size} bytes is too small",
            hint="give at least 1 MiB and four chunks",
        )
    if -(-media_size // chunk) > 0xFFFFFFFF:
        raise EwfSettingsError(
            f"{media_size} bytes is more chunks than an E01 counts",
            hint="use larger chunks or --format raw",
        )
    worst = -(-media_size * (chunk + 4) // chunk // (segment_size - SEGMENT_OVERHEAD))
    if worst > s.MAX_SEGMENTS:
        raise EwfSettingsError(
            f"in segment files of {segment_size} bytes this image could need {worst} of "
            f"them; an E01 has at most {s.MAX_SEGMENTS}",
            hint="give a larger --split",
        )
