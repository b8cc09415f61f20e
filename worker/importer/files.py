"""Reading an import file: its bytes, decompressed (gzip, bzip2, xz, a zip of one file), and its format by name."""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zipfile
import zlib
from pathlib import Path

from worker.errors import PermanentError

FORMATS = ("csv", "tsv", "jsonl")
MAGIC = {"gzip": b"\x1f\x8b", "bzip2": b"BZh", "xz": b"\xfd7zXZ\x00", "zip": b"PK\x03\x04",
         "empty zip": b"PK\x05\x06", "zstd": b"\x28\xb5\x2f\xfd", "7z": b"7z\xbc\xaf\x27\x1c",
         "rar": b"Rar!\x1a\x07", "lzip": b"LZIP"}
UNSUPPORTED = ("zstd", "7z", "rar", "lzip")
SUFFIX_KINDS = {"gzip": (".gz", ".gzip"), "bzip2": (".bz2",), "xz": (".xz",), "zip": (".zip",)}
COMPRESSED_SUFFIXES = (".gz", ".gzip", ".bz2", ".xz", ".zip")
DECOMPRESS = {"gzip": gzip.decompress, "bzip2": bz2.decompress, "xz": lzma.decompress}


class ImportRefused(PermanentError, ValueError):
    """The whole file cannot be imported (its columns, its compression, its format): one line, nothing loaded."""


def _strip_compression(name: str) -> str:
    lower = name.lower()
    for suffix in COMPRESSED_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def detect_format(path: Path | str) -> str:
    """``csv``, ``tsv`` or ``jsonl`` from the file name (a compression suffix is looked through)."""
    name = _strip_compression(Path(path).name)
    suffix = Path(name).suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return suffix[1:]
    raise ImportRefused(f"cannot tell the format of {Path(path).name}: name it .csv, .tsv or .jsonl "
                        "(optionally .gz, .bz2, .xz or .zip), or pass --format")


def read_decompressed(path: Path) -> tuple[bytes, str]:
    """The file's bytes, decompressed if it is gzip, bzip2, xz or a zip of one file; and the name to detect by.

    Anything else that is compressed, or a file named as compressed that is not, is refused (ImportRefused).
    """
    raw = path.read_bytes()
    name = path.name
    kind = next((k for k, magic in MAGIC.items() if raw.startswith(magic)), None)
    kind = "zip" if kind == "empty zip" else kind
    named = next((k for k, suffixes in SUFFIX_KINDS.items() if name.lower().endswith(suffixes)), None)
    if kind in UNSUPPORTED:
        raise ImportRefused(f"{name} is {kind} compressed; bertjobs reads .gz, .bz2, .xz and a .zip of one file: "
                            "decompress it first")
    if named is not None and kind != named:
        raise ImportRefused(f"{name} is named as {named} but is not {named} data")
    if kind is None:
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise ImportRefused(f"{name} is UTF-16; save it as UTF-8")
        return raw, name
    try:
        if kind == "zip":
            with zipfile.ZipFile(io.BytesIO(raw)) as archive:
                members = [m for m in archive.infolist() if not m.is_dir()]
                if len(members) != 1:
                    raise ImportRefused(f"{name} holds {len(members)} files; a zip must hold exactly one")
                data, name = archive.read(members[0]), Path(members[0].filename).name
        else:
            data = DECOMPRESS[kind](raw)
    except ImportRefused:
        raise
    except (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error, zipfile.BadZipFile, NotImplementedError,
            RuntimeError) as exc:
        raise ImportRefused(f"{path.name} is not readable {kind} data: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    if any(data.startswith(magic) for magic in MAGIC.values()):
        raise ImportRefused(f"{path.name} is compressed twice; decompress it to one level first")
    if kind != "zip":
        name = _strip_compression(name)
    return data, name
