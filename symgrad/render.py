"""Templates and output files: Jinja rendering of already-printed strings, and atomic writes."""

import ctypes
import io
import os
import secrets
import shutil
import tempfile
import zipfile
from importlib import resources
from pathlib import Path

import jinja2
import numpy as np

from symgrad.errors import SpecError
from symgrad.escape import FILTERS, python_string

# Context keys that carry user text (spec path, description, and lines built from user names and expressions):
# render() marks them, and a template must print them through an escaping filter (see symgrad/escape.py).
USER_TEXT = ("source", "description", "summary", "formulas", "rewrites")


class UserText(str):
    """Text from a spec or its file name: printing it in a template without an escaping filter is an error."""


def _finalize(value):
    """Refuse user text that reaches a template's output without going through an escaping filter."""
    if isinstance(value, UserText):
        raise jinja2.TemplateError(f"user text {str(value)[:40]!r} printed without an escaping filter "
                                   f"({', '.join(FILTERS)})")
    return value


def _mark(value):
    """value with its strings (also inside lists and tuples) marked as UserText."""
    if isinstance(value, str):
        return UserText(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_mark(v) for v in value)
    return value


def environment():
    """The Jinja environment over symgrad's templates: strict, with one escaping filter per target language."""
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_load_template),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        finalize=_finalize,
    )
    env.filters.update(FILTERS)
    return env


_CHECKOUT_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
# the checkout's templates/ beside the package when there is one (plain checkouts, worktrees), else the installed copy
_TEMPLATES = (_CHECKOUT_TEMPLATES if (_CHECKOUT_TEMPLATES / "numpy" / "module.py.j2").is_file()
              else resources.files("symgrad.templates"))


def template_text(name):
    """A template's (or static file's) text, ``name`` relative to templates/."""
    return _TEMPLATES.joinpath(*name.split("/")).read_text(encoding="utf-8")


_load_template = template_text


def render(template_name, **context):
    """Render ``template_name`` (relative to templates/) with the given strings; USER_TEXT keys are marked."""
    context = {k: _mark(v) if k in USER_TEXT else v for k, v in context.items()}
    return environment().get_template(template_name).render(**context)


def python_tuple(items, indent=4, width=110):
    """Python source of a tuple of strings, wrapped into lines of at most ``width`` characters."""
    if not items:
        return "()"
    parts = [f'"{python_string(item)}",' for item in items]
    lines, line = [], ""
    for part in parts:
        if line and indent + len(line) + 1 + len(part) > width:
            lines.append(line)
            line = part
        else:
            line = f"{line} {part}" if line else part
    lines.append(line)
    if len(lines) == 1 and len(lines[0]) + 20 <= width:
        return "(" + (lines[0] if len(items) == 1 else lines[0][:-1]) + ")"
    return "(\n" + "".join(" " * indent + ln + "\n" for ln in lines) + ")"


def npz_bytes(arrays):
    """An .npz of named arrays (what np.savez writes) with fixed timestamps, so the same arrays give the same bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, value in arrays.items():
            entry = io.BytesIO()
            np.lib.format.write_array(entry, np.asarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            z.writestr(info, entry.getvalue())
    return buf.getvalue()


def check_output_file(path, key="--out"):
    """Refuse an output path that is a folder or a device, or whose folder cannot be written, before any work."""
    path = Path(path)
    if path.is_dir():
        raise SpecError(f"{path} is a folder; give a file name", key)
    if path.exists() and not path.is_file():
        raise SpecError(f"{path} is not a regular file", key)
    _check_writable_dir(path.parent, key)
    return path


def check_output_dir(path, key="--out"):
    """Refuse an output folder that is a file or a device or cannot be written, before any work."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SpecError(f"{path} is not a folder", key)
    _check_writable_dir(path, key)
    return path


def _check_writable_dir(folder, key):
    """The nearest existing folder on the way to ``folder`` must accept a new file (tried, not guessed from modes)."""
    folder = Path(folder) if str(folder) else Path(".")
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise SpecError(f"{probe} is not a folder", key)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".symgrad-probe.", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise SpecError(f"cannot write into {probe}: {exc.strerror or exc}", key) from None


def _temporary(path, data):
    """``data`` (text or bytes) written to a fresh hidden file beside ``path``; returns that file's path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _hidden_name(path, ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # 48 random bits taken: raises, removes nothing
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, 0o644)
    except BaseException:
        _unlink(tmp)
        raise
    return tmp


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _check_file_target(path):
    if path.is_dir() or (path.exists() and not path.is_file()):
        raise SpecError(f"cannot write {path}: it exists and is not a regular file", file=path)


def write_atomic(path, data):
    """Write text or bytes to ``path`` through a temporary file in the same folder, then rename."""
    path = Path(path)
    _check_file_target(path)
    tmp = None
    try:
        tmp = _temporary(path, data)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise SpecError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            _unlink(tmp)
    return path


def write_files_atomic(files):
    """Write ``{path: text or bytes}`` as one set: every file to a temporary beside it first, then renamed in order.

    Nothing is replaced until every temporary is written; a failure while renaming puts back the files
    already replaced (their old contents kept under a hidden hard link meanwhile), so an error never leaves
    a mix of old and new files. Put last the file that refers to the others (a spec after its .npz).
    """
    paths = [Path(p) for p in files]
    for path in paths:
        _check_file_target(path)
    temps, backups, done = {}, {}, []
    try:
        for path, data in zip(paths, files.values()):
            temps[path] = _temporary(path, data)
        for path in paths:
            if path.exists():
                backups[path] = _hidden_name(path, ".old")
                os.link(path, backups[path])
            os.replace(temps[path], path)
            del temps[path]
            done.append(path)
    except OSError as exc:
        failed = path
        for path in reversed(done):
            if path in backups:
                os.replace(backups.pop(path), path)
            else:
                _unlink(path)
        raise SpecError(f"cannot write {failed}: {exc.strerror or exc}") from None
    finally:
        for leftover in [*temps.values(), *backups.values()]:
            _unlink(leftover)
    return paths


def write_folder_atomic(folder, files):
    """Write ``{file name: text or bytes}`` as the whole of ``folder``: built beside it, then swapped in at once.

    An interrupt at any moment (even SIGKILL) leaves the old complete folder or the new complete one: on
    Linux the two are exchanged by one renameat2(RENAME_EXCHANGE); elsewhere the old folder is renamed
    away and the new one renamed in, and an exception in between puts the old one back.
    """
    folder = Path(folder)
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise SpecError(f"cannot write {folder}: it exists and is not a folder", file=folder)
    tmp = old = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = _hidden_name(folder, ".tmp")
        try:
            os.mkdir(tmp, 0o700)
        except FileExistsError:  # 48 random bits taken: not ours to remove
            tmp = None
            raise
        for name, data in files.items():
            with open(tmp / name, "wb") as f:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp / name, 0o644)
        os.chmod(tmp, 0o755)
        if not folder.exists():
            os.rename(tmp, folder)
            tmp = None
        elif _exchange(tmp, folder):
            old, tmp = tmp, None  # tmp now holds the previous package
        else:
            old = _hidden_name(folder, ".old")
            os.rename(folder, old)
            try:
                os.rename(tmp, folder)
                tmp = None
            except BaseException:
                os.rename(old, folder)
                old = None
                raise
    except OSError as exc:
        raise SpecError(f"cannot write {folder}: {exc.strerror or exc}") from None
    finally:
        for leftover in (tmp, old):
            if leftover is not None:
                _remove_tree(leftover)
    return [folder / name for name in files]


def _hidden_name(path, suffix):
    """A fresh hidden name beside ``path``, chosen before anything is made so an interrupt cannot orphan it."""
    return path.parent / f".{path.name}.{secrets.token_hex(6)}{suffix}"


def _remove_tree(path):
    """Remove a folder completely even when Ctrl-C arrives meanwhile (then re-raise the interrupt afterwards)."""
    interrupted = None
    while True:
        try:
            shutil.rmtree(path, ignore_errors=True)
            break
        except KeyboardInterrupt as exc:
            interrupted = exc
    if interrupted is not None:
        raise interrupted


def _exchange(a, b):
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this file system or kernel cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(b))
