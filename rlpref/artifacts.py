"""Content-addressed, resumable, locked stage outputs.

Each pipeline stage stores its output in ``<root>/<stage>/<key>/`` where the key hashes the stage's
*own* config and the keys of its inputs. So ``loss=bt`` and ``loss=rr`` share the source agent and
the labelled feedback; a killed run resumes at the first missing stage; concurrent processes (joblib
workers, SLURM array tasks) that need the same artefact build it once: the others wait on its lock.

An artefact is complete exactly when its ``manifest.json`` exists. It is built in a temporary
sibling directory and renamed into place, so a crash never leaves a half-written artefact behind. The
manifest lists every file's sha256 and size; a reused artefact is checked against them first, so a file
replaced, truncated or edited after the build is reported (:class:`CorruptArtifactError`) instead of
read. A stage that saves progress while it runs (checkpoints) keeps it in ``<stage>/.<key>.partial/``,
which outlives a killed build, so the rebuild resumes from there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import numpy as np
from filelock import FileLock, Timeout

__all__ = [
    "Artifact",
    "ArtifactStore",
    "append_csv_row",
    "CorruptArtifactError",
    "file_digests",
    "verify_artifact",
    "atomic_path",
    "atomic_write_json",
    "atomic_write_text",
    "load_npz",
    "save_npz",
    "stable_hash",
]

MANIFEST = "manifest.json"
log = logging.getLogger("rlpref")
_CHUNK = 1 << 20


class CorruptArtifactError(RuntimeError):
    """A finished artefact whose files no longer match its manifest; names the files and the fix."""

    def __init__(self, path: Path, problems: Sequence[str], rerun: str = "<rerun your command>"):
        self.path, self.problems = Path(path), list(problems)
        super().__init__(
            f"corrupt artefact {path} (stage '{self.path.parent.name}'): " + "; ".join(self.problems)
            + f". Rebuild that stage with: python -m rlpref.cache clean {path} && {rerun}"
        )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _artifact_files(folder: Path) -> dict[str, Path]:
    """{relative path: path} of every file below ``folder`` but the manifest."""
    return {f.relative_to(folder).as_posix(): f for f in sorted(Path(folder).rglob("*"))
            if f.is_file() and f.name != MANIFEST}


def file_digests(folder: Path) -> dict[str, dict]:
    """{relative path: {"sha256": hex, "size": bytes}} of every file below ``folder`` but the manifest."""
    return {rel: {"sha256": _sha256(f), "size": f.stat().st_size} for rel, f in _artifact_files(folder).items()}


def verify_artifact(path: Path, manifest: Optional[dict] = None) -> Optional[list[str]]:
    """What differs between an artefact's files and its manifest ([] = nothing; None = the manifest
    predates checksums, so nothing can be checked)."""
    path = Path(path)
    if manifest is None:
        manifest = json.loads((path / MANIFEST).read_text())
    expected = manifest.get("files")
    if expected is None:
        return None
    problems = []
    for rel, want in expected.items():
        f = path / rel
        if not f.is_file():
            problems.append(f"{rel} is missing")
        elif f.stat().st_size != want["size"]:
            problems.append(f"{rel} has {f.stat().st_size} bytes, the build wrote {want['size']}")
        elif _sha256(f) != want["sha256"]:
            problems.append(f"{rel} differs from what the build wrote (sha256)")
    extra = sorted(set(_artifact_files(path)) - set(expected)) if len(problems) == 0 else []
    problems += [f"{rel} was added after the build" for rel in extra]
    return problems


def _canonical(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, float) and obj.is_integer():
        return int(obj)  # 1.0 and 1 must hash alike (YAML vs CLI overrides)
    return obj


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hash of a JSON-able config, independent of key order."""
    blob = json.dumps(_canonical(obj), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``: renamed onto ``path`` if the block succeeds, removed if it fails.

    Readers only ever see complete files. The temporary name ends with ``path``'s suffix, for writers
    that pick the format from it (numpy, pandas, matplotlib, imageio). The file gets the usual umask
    permissions (mkstemp's 0600 would hide a shared cache from the rest of a group).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def append_csv_row(path: Path, fields: Sequence[str], row: Mapping[str, Any]) -> None:
    """Add one row to a CSV table (header on creation) by rewriting it atomically: a kill never leaves
    half a row, and readers see the old table or the new one."""
    import csv
    import io

    path = Path(path)
    old = path.read_text() if path.is_file() else ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields))
    if not old:
        writer.writeheader()
    writer.writerow(dict(row))
    atomic_write_text(path, old + buf.getvalue())


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Atomic ``np.savez`` (no pickle: object arrays are refused when loading)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a handle: savez would append ".npz" to a name
        np.savez(f, **arrays)


def load_npz(path: Path, required: Sequence[str]) -> dict[str, np.ndarray]:
    """Load an ``.npz`` without pickle; corrupt or incomplete files name the file and the fix."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, ValueError (pickled object arrays), OSError
        raise RuntimeError(
            f"corrupt artefact {path}: {type(exc).__name__}: {exc}. Delete its folder to rebuild it."
        ) from None
    missing = [k for k in required if k not in arrays]
    if missing:
        raise RuntimeError(f"artefact {path} lacks arrays {missing}; it was written by another version. Delete it.")
    return arrays


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


@dataclass(frozen=True)
class Artifact:
    stage: str
    key: str
    path: Path
    manifest: dict
    built: bool  # True if this call built it, False if it was reused


@contextmanager
def _locked(lock: FileLock, what: str) -> Iterator[None]:
    """Hold ``lock``; when another process holds it (building the same artefact), say so and how long the
    wait took, so a shared stage's log shows which task built it and which waited."""
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("%s: another process is building it; waiting on its lock %s", what, lock.lock_file)
        t0 = time.perf_counter()
        lock.acquire()
        log.info("%s: lock acquired after waiting %.0f s", what, time.perf_counter() - t0)
    try:
        yield
    finally:
        lock.release()


class ArtifactStore:
    """A folder of stage outputs keyed by content hash; reused artefacts are verified (``verify``)."""

    def __init__(self, root: Path, lock_timeout: float = -1, verify: bool = True):
        self.root = Path(root)
        self.lock_timeout = lock_timeout
        self.verify = verify

    def key(self, stage: str, config: Mapping[str, Any], inputs: Sequence[str] = ()) -> str:
        return stable_hash({"stage": stage, "config": config, "inputs": list(inputs)})

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def exists(self, stage: str, key: str) -> bool:
        return (self.path(stage, key) / MANIFEST).is_file()

    def partial_path(self, stage: str, key: str) -> Path:
        """Where a build of this key keeps progress that must survive a kill (removed once it finishes)."""
        return self.root / stage / f".{key}.partial"

    def load_manifest(self, stage: str, key: str) -> dict:
        path = self.path(stage, key) / MANIFEST
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise CorruptArtifactError(path.parent, [f"{MANIFEST} is not valid JSON ({exc})"]) from None

    def _reuse(self, stage: str, key: str) -> "Artifact":
        path = self.path(stage, key)
        manifest = self.load_manifest(stage, key)
        if self.verify:
            problems = verify_artifact(path, manifest)
            if problems:
                raise CorruptArtifactError(path, problems)
        return Artifact(stage, key, path, manifest, built=False)

    def get_or_build(
        self,
        stage: str,
        config: Mapping[str, Any],
        inputs: Sequence[str],
        build: Callable[[Path], Optional[dict]],
    ) -> Artifact:
        """Return the stage's artefact, building it with ``build(tmp_dir)`` if it is missing.

        ``build`` writes its files into ``tmp_dir`` and returns extra manifest fields. It runs
        under the artefact's file lock, so at most one process builds a given key.
        """
        key = self.key(stage, config, inputs)
        final = self.path(stage, key)
        if (final / MANIFEST).is_file():
            return self._reuse(stage, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        with _locked(FileLock(str(final) + ".lock", timeout=self.lock_timeout), f"{stage} {key}"):
            if (final / MANIFEST).is_file():  # built by another process while we waited
                log.info("%s %s: built by another process meanwhile; reused", stage, key)
                return self._reuse(stage, key)
            if final.exists():  # leftover without manifest: an interrupted build from an old layout
                shutil.rmtree(final)
            # Under the lock no one else builds this key: folders left by killed builds (SIGKILL,
            # preemption) are garbage.
            for stale in final.parent.glob(f".{key}.building.*"):
                shutil.rmtree(stale, ignore_errors=True)
            tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{key}.building."))
            os.chmod(tmp, 0o777 & ~_umask())
            try:
                start = time.perf_counter()
                extra = build(tmp) or {}
                manifest = {
                    "stage": stage,
                    "key": key,
                    "config": _canonical(config),
                    "inputs": list(inputs),
                    "seconds": time.perf_counter() - start,
                    **extra,
                    "files": file_digests(tmp),
                }
                atomic_write_json(tmp / MANIFEST, manifest)
                try:
                    os.replace(tmp, final)
                except OSError:
                    # Lost a race that the lock should have prevented (node-local locks on some
                    # cluster file systems): the winner's artefact is as good as ours.
                    if not (final / MANIFEST).is_file():
                        raise
                    shutil.rmtree(tmp, ignore_errors=True)
                    return self._reuse(stage, key)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            shutil.rmtree(self.partial_path(stage, key), ignore_errors=True)
        return Artifact(stage, key, final, manifest, built=True)
