# Copied by symgrad 0.1.0 from symgrad/backends/c/build.py, the same in every generated C package. Do not edit.
"""Compile a generated C source into a shared library, cached by a SHA-256 of source and compiler command.

symgrad copies this file verbatim into every generated C package as ``_build.py``, so a package builds itself
with no symgrad installed (it imports only the standard library); `symgrad generate --build` runs the same code.
"""

import ctypes
import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path


class BuildError(RuntimeError):
    """The C source could not be compiled (no compiler, or the compiler failed)."""


def _compiler():
    """The C compiler command: $CC, else cc, gcc or clang on PATH."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc or not shutil.which(shlex.split(cc)[0]):
        raise BuildError(f"no C compiler found{f' (CC={cc!r})' if cc else ''}: install gcc (Debian: apt-get install gcc) "
                         "or set CC; the NumPy module (symgrad generate --target numpy) needs none")
    return shlex.split(cc)


def _blas_available(cc):
    """Whether cc finds <cblas.h> and links -lopenblas."""
    probe = "#include <cblas.h>\nint main(void) { return 0; }\n"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "probe.c"
        src.write_text(probe)
        res = subprocess.run([*cc, str(src), "-o", str(Path(tmp) / "probe"), "-lopenblas"], check=False, capture_output=True)
    return res.returncode == 0


# The library is built on the machine that loads it, so it may use all of that CPU's vector units
# (-march=native: the branch-free exp/tanh loops run 4-8 doubles at a time); -fno-trapping-math lets gcc
# vectorise selects next to divisions; -ffp-contract=off keeps a*b+c two roundings everywhere, so results
# do not depend on whether the CPU has FMA. A compiler that rejects these gets PORTABLE_CFLAGS.
DEFAULT_CFLAGS = "-O3 -march=native -fno-trapping-math -ffp-contract=off"
PORTABLE_CFLAGS = "-O3 -ffp-contract=off"


def _host_cpu():
    """The CPU model and feature flags (part of the cache key: a -march=native build is for this CPU only)."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        import platform

        return f"{platform.machine()} {platform.processor()}"
    keys = ("model name", "flags", "Features", "CPU part")
    return "\n".join(sorted({line for line in lines if line.split(":")[0].strip() in keys}))


def build_library(source, blas="no"):
    """Path of the shared library of source (x.c beside x.h): cache/x-<sha256>.so, compiled only when not there.

    blas: "yes" links OpenBLAS (-DSYMGRAD_USE_BLAS), "auto" when its header is found, "no" never. CC and CFLAGS
    (default DEFAULT_CFLAGS, PORTABLE_CFLAGS if the compiler rejects those) choose the compiler and flags;
    $SYMGRAD_CACHE (default ~/.cache/symgrad) the cache folder.
    """
    source = Path(source)
    cc = _compiler()
    given = os.environ.get("CFLAGS")
    link = ["-lm"]
    extra = []
    if blas == "yes" or (blas == "auto" and _blas_available(cc)):
        extra.append("-DSYMGRAD_USE_BLAS")
        link.insert(0, "-lopenblas")
    commands = [[*cc, "-std=c99", *shlex.split(flags), *extra, "-fPIC", "-shared"]
                for flags in ([given] if given is not None else [DEFAULT_CFLAGS, PORTABLE_CFLAGS])]
    text = source.read_bytes() + source.with_suffix(".h").read_bytes()
    key = hashlib.sha256(text + " ".join(commands[0] + link).encode() + _host_cpu().encode()).hexdigest()[:24]
    cache = Path(os.environ.get("SYMGRAD_CACHE", Path.home() / ".cache" / "symgrad"))
    lib = cache / f"{source.stem}-{key}.so"
    if lib.exists():
        return lib
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{source.stem}-", suffix=".so", dir=cache)
    os.close(fd)
    try:
        for command in commands:  # the portable flags only if the compiler rejects the default ones
            res = subprocess.run([*command, "-I", str(source.parent), "-o", tmp, str(source), *link],
                                 check=False, capture_output=True, text=True)
            if res.returncode == 0:
                break
        else:
            raise BuildError(f"compiling {source.name} failed ({' '.join(command)}):\n{res.stderr}")
        os.replace(tmp, lib)  # atomic: a concurrent import sees the whole library or none
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return lib


def host_gemm(kind="d"):
    """(address, "library:symbol") of the ILP64 cblas_?gemm NumPy already loaded into this process, or None.

    NumPy's wheels carry OpenBLAS with 64-bit integers (scipy_cblas_dgemm64_); handing it to the C code
    keeps one BLAS thread pool in the process, where two pools would spin against each other on a few
    cores. Linux only (/proc/self/maps); $SYMGRAD_HOST_BLAS=0 turns it off.
    """
    if os.environ.get("SYMGRAD_HOST_BLAS", "1") == "0":
        return None
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "blas" in line.lower() and line.split()[-1].startswith("/")})
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in (f"scipy_cblas_{kind}gemm64_", f"cblas_{kind}gemm64_"):
            fn = getattr(lib, symbol, None)
            if fn is not None:
                return ctypes.cast(fn, ctypes.c_void_p).value, f"{Path(path).name}:{symbol}"
    return None
