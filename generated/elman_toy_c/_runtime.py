# Copied by symgrad 0.1.0 from symgrad/backends/c/runtime.py, the same in every generated C package. Do not edit.
"""The Python side of a generated C package: checked, cached ctypes calls into the compiled <name>.c.

symgrad copies this file verbatim into every generated C package as ``_runtime.py`` (beside ``_build.py``,
which compiles the source, and a short per-model ``__init__.py``), so it imports only the standard library
and NumPy. The package's ``__init__`` holds the model's constants and makes one ``Package`` over them.

Threads: every call may run in several threads at once (each thread has its own work and result buffers;
the C code keeps no state). A call made by bind() owns its work buffer and writes into its grad: each
thread needs its own bind() (and grad); one bound call must not run in two threads at once.
"""

import ctypes
import functools
import threading
import weakref

import numpy as np


class Call(ctypes.Structure):
    """<name>_call: the arguments of one loss_and_gradients call in one block."""

    _fields_ = [("params", ctypes.c_void_p), ("x", ctypes.c_void_p), ("t", ctypes.c_void_p), ("grad", ctypes.c_void_p),
                ("work", ctypes.c_void_p), ("batch", ctypes.c_int)]


def set_gemm(lib, name, host):
    """Hand the process's own BLAS (``host``: (address, "library:symbol") or None) to the library; its label."""
    fn = getattr(lib, f"{name}_set_gemm")
    fn.argtypes = [ctypes.c_void_p]
    fn(host and host[0])  # the library may be shared with an earlier import: always set
    return host and host[1]


def declare(lib, name, dtype):
    """The library's (forward, loss, loss_and_gradients, loss_and_gradients_call, workspace_size) with ctypes types."""
    real = ctypes.c_double if np.dtype(dtype) == np.float64 else ctypes.c_float
    ptr, c_int = ctypes.c_void_p, ctypes.c_int
    table = {"forward": (None, [ptr, ptr, c_int, ptr, ptr]), "loss": (real, [ptr, ptr, ptr, c_int, ptr]),
             "loss_and_gradients": (real, [ptr, ptr, ptr, c_int, ptr, ptr]), "loss_and_gradients_call": (real, None),
             "workspace_size": (ctypes.c_size_t, [c_int])}
    fns = []
    for suffix, (restype, argtypes) in table.items():
        fn = getattr(lib, f"{name}_{suffix}")
        fn.restype = restype
        if argtypes is not None:
            fn.argtypes = argtypes
        fns.append(fn)
    return tuple(fns)


def address(cache, a):
    """Data address of an array, remembered in cache per live array object (reading .ctypes.data is slow)."""
    hit = cache.get(id(a))
    if hit is not None and hit[0]() is a:
        return hit[1]
    if len(cache) > 1024:
        cache.clear()
    addr = a.ctypes.data
    cache[id(a)] = (weakref.ref(a), addr)
    return addr


class Buffers:
    """Per batch size: C-contiguous inputs, targets, parameters, gradients and work, with their addresses."""

    def __init__(self, pkg, batch):
        dt = pkg.dtype
        self.x = np.empty((batch, pkg.n_inputs), dtype=dt)
        self.t = np.empty((batch, pkg.n_outputs), dtype=dt)
        self.y = np.empty((batch, pkg.n_outputs), dtype=dt)
        self.theta = np.empty(pkg.n_params, dtype=dt)
        self.grad = np.empty(pkg.n_params, dtype=dt)
        self.grads = tuple((name, self.grad[offset:offset + size].reshape(shape)) for name, offset, size, shape in pkg.grads)
        self.work = np.empty(max(1, pkg.workspace_size(batch)), dtype=dt)
        self.ptr = {k: getattr(self, k).ctypes.data for k in ("x", "t", "y", "theta", "grad", "work")}
        self.keep = {}  # converted inputs passed by address


class Package:
    """The functions a generated C package exports, over its library and the constants in ``config`` (the
    package module: PARAM_SHAPES, OFFSETS, TRAINABLE, N_INPUTS, N_OUTPUTS, DTYPE, and CHECK_FINITE, read at
    each call)."""

    def __init__(self, config, lib, name, uses_target=True, big=4096):
        self.config = config
        self.big = big  # parameters above which views of one vector are worth checking, and gradients come as views
        self.dtype = np.dtype(config.DTYPE)
        self.shapes = tuple(config.PARAM_SHAPES.items())
        self.names = tuple(config.PARAM_SHAPES)
        self.n_inputs, self.n_outputs = config.N_INPUTS, config.N_OUTPUTS
        self.layout = tuple((n, config.OFFSETS[n], int(np.prod(shape, dtype=int)), shape) for n, shape in self.shapes)
        self.n_params = sum(item[2] for item in self.layout)
        self.grads = tuple(item for item in self.layout if item[0] in config.TRAINABLE)
        self.uses_target = uses_target
        self.forward_c, self.loss_c, self.lag_c, self.lag_call_c, self.workspace_size = declare(lib, name, self.dtype)
        self.local = threading.local()  # per thread: {batch: Buffers}, so concurrent calls never share work or results
        self.addresses = {}
        self.views = {}  # id(first view) -> (weak references to the views unpack() made, address of their vector)

    # --- buffers and addresses

    def buffers(self, batch):
        """This thread's buffers for the batch size (C writes into them: another thread must not)."""
        try:
            table = self.local.buffers
        except AttributeError:
            table = self.local.buffers = {}
        b = table.get(batch)
        if b is None:
            if len(table) > 8:
                table.clear()
            b = table[batch] = Buffers(self, batch)
        return b

    # --- checks (the NumPy module's messages)

    def checked_params(self, params):
        """The parameter arrays in PARAM_NAMES order, checked against PARAM_SHAPES."""
        arrays = []
        for name, shape in self.shapes:
            try:
                p = params[name]
            except KeyError:
                raise ValueError(f"params is missing {name!r} (expected keys: {', '.join(self.names)})") from None
            if type(p) is not np.ndarray or p.dtype is not self.dtype or p.shape != shape or self.config.CHECK_FINITE:
                p = self.real(p, f"params[{name!r}]")
                if p.shape != shape:
                    raise ValueError(f"params[{name!r}] has shape {p.shape}, expected {shape}")
            arrays.append(p)
        return arrays

    def real(self, v, what):
        """v as an array of DTYPE, refusing non-real values (and NaN or infinities when CHECK_FINITE is set)."""
        check = self.config.CHECK_FINITE
        if type(v) is np.ndarray and v.dtype is self.dtype and not check:
            return v
        a = np.asarray(v)
        if a.dtype.kind not in "fiu":
            raise ValueError(f"{what} must hold real numbers, got dtype {a.dtype}")
        a = a.astype(self.dtype, copy=False)
        if check and not np.all(np.isfinite(a)):
            raise ValueError(f"{what} contains NaN or infinite values")
        return a

    def batch(self, v, width, what):
        """v as a (batch, width) array, and whether it was a single row."""
        a = self.real(v, what)
        single = a.ndim == 1
        if single:
            a = a.reshape(1, -1)
        if a.ndim != 2 or a.shape[1] != width or a.shape[0] == 0:
            raise ValueError(f"{what} must have shape (batch, {width}) or ({width},), got {np.shape(v)}")
        return a, single

    def targets(self, y, a0):
        """y as a (batch, N_OUTPUTS) array with as many rows as x."""
        t, _ = self.batch(y, self.n_outputs, "y")
        if t.shape[0] != a0.shape[0]:
            raise ValueError(f"x has {a0.shape[0]} rows but y has {t.shape[0]}")
        return t

    # --- parameters

    def pack(self, params, out=None):
        """The parameters as one contiguous vector in the C layout (OFFSETS)."""
        theta = np.empty(self.n_params, dtype=self.dtype) if out is None else out
        try:
            arrays = [params[name] for name in self.names]
        except (KeyError, TypeError):
            arrays = None
        if arrays is None or self.config.CHECK_FINITE:
            arrays = self.checked_params(params)
        else:
            for a, (_, shape) in zip(arrays, self.shapes):
                if type(a) is not np.ndarray or a.dtype is not self.dtype or a.shape != shape:
                    arrays = self.checked_params(params)  # converts, or raises the NumPy module's ValueError
                    break
        np.concatenate([a.ravel() for a in arrays], out=theta)
        return theta

    def unpack(self, theta):
        """{name: array} views of a flat parameter vector (remembered: calls on them skip packing)."""
        views = {name: theta[offset:offset + size].reshape(shape) for name, offset, size, shape in self.layout}
        if (type(theta) is np.ndarray and theta.dtype is self.dtype and theta.shape == (self.n_params,)
                and theta.flags.c_contiguous):
            arrays = [views[name] for name in self.names]
            if len(self.views) > 64:
                self.views.clear()
            self.views[id(arrays[0])] = (tuple(weakref.ref(a) for a in arrays), address(self.addresses, theta))
        return views

    def packed(self, params):
        """Address of the vector params are the unpack() views of (no packing needed), else None."""
        try:
            arrays = [params[name] for name in self.names]
        except (KeyError, TypeError):
            return None
        hit = self.views.get(id(arrays[0]))
        if hit is not None and not self.config.CHECK_FINITE:  # views unpack() made: the same objects, the same memory
            for ref, a in zip(hit[0], arrays):
                if ref() is not a:
                    break
            else:
                return hit[1]
        if self.n_params <= self.big:  # small: packing costs less than checking views made elsewhere
            return None
        return self._views_of_one_vector(arrays)

    def _views_of_one_vector(self, arrays):
        """Address of the vector the arrays are views of at the C layout's offsets, else None."""
        base = arrays[0].base if type(arrays[0]) is np.ndarray else None
        if (type(base) is not np.ndarray or base.dtype is not self.dtype or base.shape != (self.n_params,)
                or self.config.CHECK_FINITE):
            return None
        start = address(self.addresses, base)
        for a, (_, offset, _, shape) in zip(arrays, self.layout):
            if type(a) is not np.ndarray or a.base is not base or a.shape != shape or not a.flags.c_contiguous \
                    or address(self.addresses, a) != start + offset * base.itemsize:
                return None
        return start

    # --- calls on dicts

    def ready(self, v, rows, width):
        """Whether v can go to C as it is: a C-contiguous DTYPE array of shape (rows or any, width)."""
        return (type(v) is np.ndarray and v.dtype is self.dtype and v.ndim == 2 and v.shape[1] == width and v.shape[0]
                and (rows is None or v.shape[0] == rows) and v.flags.c_contiguous and not self.config.CHECK_FINITE)

    @staticmethod
    def pointer(a, buffer, name, b):
        """Address of a itself when it is C-contiguous (kept alive in b until the next call), else of its copy in b."""
        if a.flags.c_contiguous:
            b.keep[name] = a
            return a.ctypes.data
        buffer[...] = a
        return b.ptr[name]

    def prepare(self, params, x, y, targets=True):
        """(buffers, parameter vector address, x address, targets address, batch, single).

        Parameters are packed into the buffers unless they are views unpack() (or init_params()) made, or, for
        big networks, any views of one vector in the C layout.
        """
        if self.ready(x, None, self.n_inputs):  # fast path: no conversion, no copy
            a0, single = x, False
            b = self.buffers(x.shape[0])
            px = address(self.addresses, x)
        else:
            a0, single = self.batch(x, self.n_inputs, "x")
            b = self.buffers(a0.shape[0])
            px = self.pointer(a0, b.x, "x", b)
        pt = b.ptr["t"]
        if targets and self.uses_target:
            pt = (address(self.addresses, y) if self.ready(y, a0.shape[0], self.n_outputs)
                  else self.pointer(self.targets(y, a0), b.t, "t", b))
        elif targets and y is not None:
            self.targets(y, a0)  # checked, though this loss does not use targets
        theta = self.packed(params)
        if theta is None:
            self.pack(params, b.theta)
            theta = b.ptr["theta"]
        return b, theta, px, pt, a0.shape[0], single

    def forward(self, params, x):
        """The network's output for x: shape (batch, N_OUTPUTS), or (N_OUTPUTS,) for one sample."""
        b, theta, px, _, n, single = self.prepare(params, x, None, targets=False)
        self.forward_c(theta, px, n, b.ptr["y"], b.ptr["work"])
        return b.y[0].copy() if single else b.y.copy()

    def loss(self, params, x, y):
        """The loss E of the batch (a float)."""
        b, theta, px, pt, n, _ = self.prepare(params, x, y)
        return float(self.loss_c(theta, px, pt, n, b.ptr["work"]))

    def loss_and_gradients(self, params, x, y):
        """(E, {name: dE/dparam}) for every trainable parameter, from one forward pass."""
        b, theta, px, pt, n, _ = self.prepare(params, x, y)
        if self.n_params > self.big:  # big: C writes into a fresh array, returned as views of it
            g = np.empty(self.n_params, dtype=self.dtype)
            E = self.lag_c(theta, px, pt, n, g.ctypes.data, b.ptr["work"])
            return float(E), {name: g[offset:offset + size].reshape(shape) for name, offset, size, shape in self.grads}
        # small: into the buffer, then a copy of each gradient (cheaper than a new array's address and views of it)
        E = self.lag_c(theta, px, pt, n, b.ptr["grad"], b.ptr["work"])
        return float(E), {name: v.copy() for name, v in b.grads}

    def gradients(self, params, x, y):
        """{name: dE/dparam} for every trainable parameter (same keys and shapes as params)."""
        return self.loss_and_gradients(params, x, y)[1]

    # --- calls on flat vectors

    def check_flat(self, theta, x, t, grad):
        """(batch, theta, x, t and grad addresses), after refusing arrays C would read or write out of bounds, a
        read-only grad, and a grad overlapping an input (fast path: identity checks and the addresses C gets anyway)."""
        dt, n_params = self.dtype, self.n_params
        if (type(theta) is np.ndarray and type(x) is np.ndarray and type(t) is np.ndarray and type(grad) is np.ndarray
                and theta.dtype is dt and x.dtype is dt and t.dtype is dt and grad.dtype is dt
                and theta.shape == (n_params,) and grad.shape == (n_params,) and x.ndim == 2
                and x.shape[1] == self.n_inputs and x.shape[0] and t.shape == (x.shape[0], self.n_outputs)):
            gf = grad.flags
            if gf.c_contiguous and gf.writeable and theta.flags.c_contiguous and x.flags.c_contiguous \
                    and t.flags.c_contiguous:
                cache = self.addresses
                g = address(cache, grad)
                ge = g + grad.nbytes
                pt, px, pp = address(cache, t), address(cache, x), address(cache, theta)
                if (ge <= pp or pp + theta.nbytes <= g) and (ge <= px or px + x.nbytes <= g) \
                        and (ge <= pt or pt + t.nbytes <= g):
                    return x.shape[0], pp, px, pt, g
        self.refuse_flat(theta, x, t, grad)
        cache = self.addresses
        return x.shape[0], address(cache, theta), address(cache, x), address(cache, t), address(cache, grad)

    def refuse_flat(self, theta, x, t, grad):
        """check_flat's slow path: the same checks one by one, raising ValueError with what is wrong."""
        dt, n_params = self.dtype, self.n_params
        for a, what in ((theta, "theta"), (grad, "grad")):
            if type(a) is not np.ndarray or a.dtype != dt or not a.flags.c_contiguous or a.shape != (n_params,):
                raise ValueError(f"{what} must be a C-contiguous {dt.name} vector of {n_params}")
        rows = x.shape[0] if type(x) is np.ndarray and x.ndim == 2 else None
        for a, w, what in ((x, self.n_inputs, "x"), (t, self.n_outputs, "t")):
            if type(a) is not np.ndarray or a.dtype != dt or not a.flags.c_contiguous or a.ndim != 2 \
                    or a.shape != (rows, w) or not rows:
                raise ValueError(f"{what} must be a C-contiguous {dt.name} array of shape ({rows or 'B >= 1'}, {w})")
        if not grad.flags.writeable:
            raise ValueError("grad is read-only (C writes the gradient into it): pass a writeable array, "
                             "e.g. np.empty(N_PARAMS)")
        for a, what in ((theta, "theta"), (x, "x"), (t, "t")):
            if np.may_share_memory(grad, a):  # contiguous arrays: overlapping bounds are shared memory
                raise ValueError(f"grad overlaps {what}: C would overwrite its input while reading it; "
                                 "pass a separate array")

    def loss_and_gradients_flat(self, theta, x, t, grad):
        """E, with dE/dtheta written into grad (frozen entries 0): the allocation-free call for hot loops.

        theta and grad are C-contiguous DTYPE vectors of N_PARAMS (layout OFFSETS; pack() makes one), x and t
        C-contiguous DTYPE arrays of shape (B, N_INPUTS) and (B, N_OUTPUTS); grad must be writeable and must
        not overlap theta, x or t (ValueError otherwise). Safe from several threads, each with its own grad.
        """
        n, pp, px, pt, g = self.check_flat(theta, x, t, grad)
        return self.lag_c(pp, px, pt, n, g, self.buffers(n).ptr["work"])

    def bind(self, theta, x, t, grad):
        """A no-argument function that computes E and writes dE/dtheta into grad for these very arrays.

        The pointers are resolved once into a <name>_call block, so a call is one ctypes call with one
        argument: for hot loops that update theta, x and t in place. Same array requirements as
        loss_and_gradients_flat (checked once, here); the arrays are kept alive. The call owns its work
        buffer: each thread needs its own bind() (and grad); one bound call must not run in two threads at once.
        """
        n = self.check_flat(theta, x, t, grad)[0]
        work = np.empty(max(1, self.workspace_size(n)), dtype=self.dtype)
        block = Call(*(a.ctypes.data for a in (theta, x, t, grad, work)), n)
        call = functools.partial(self.lag_call_c, ctypes.byref(block))  # one ctypes argument, no Python frame
        call.arrays = (theta, x, t, grad, work, block)
        return call
