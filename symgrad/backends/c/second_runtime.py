"""The Python side of a C package's second-order functions (packages generated with --second-order).

symgrad copies this file verbatim into such packages as ``_second.py``; it imports only NumPy and
ctypes and works over the package's ``_runtime.Package``. The contract is the NumPy module's:
directions v and the results of hvp and gauss_newton_vp are dicts shaped like the gradients, the
Hessian's rows and columns follow HESSIAN_ORDER (TRAINABLE, each flattened row-major); hessian() is one
C call (bind_hessian() makes it a bound call) and gauss_newton_matrix() one C product per column, both up
to HESSIAN_LIMIT trainable parameters.
"""

import ctypes
import functools
import threading

import numpy as np


class Second:
    """input_gradients, jacobian, hvp, gauss_newton_vp, hessian and hessian_blocks over a Package and its library."""

    def __init__(self, pkg, lib, name, limit, convex=True, call=None):
        self.pkg, self.limit, self.convex, self.call = pkg, limit, convex, call
        ptr, c_int = ctypes.c_void_p, ctypes.c_int
        table = {"second_workspace_size": (ctypes.c_size_t, [c_int]),
                 "hessian_workspace_size": (ctypes.c_size_t, [c_int]),
                 "hessian": (None, [ptr, ptr, ptr, c_int, ptr, ptr]),
                 "hessian_call": (None, [ptr]),
                 "input_gradients": (None, [ptr, ptr, ptr, c_int, ptr, ptr]),
                 "jacobian": (None, [ptr, ptr, c_int, ptr, ptr]),
                 "hvp": (None, [ptr, ptr, ptr, ptr, c_int, ptr, ptr]),
                 "gauss_newton_vp": (None, [ptr, ptr, ptr, ptr, c_int, ptr, ptr])}
        self.c = {}
        for suffix, (restype, argtypes) in table.items():
            fn = getattr(lib, f"{name}_{suffix}")
            fn.restype, fn.argtypes = restype, argtypes
            self.c[suffix] = fn
        self.order = tuple((n, shape) for n, _, _, shape in pkg.grads)
        self.local = threading.local()  # per thread: {batch: work buffer}, as the package's own buffers
        self.n_trainable = sum(size for _, _, size, _ in pkg.grads)

    def _work(self, n, kind="second"):
        """This thread's work buffer for batch n (C writes into it: another thread must not)."""
        table = getattr(self.local, "work", None)
        if table is None:
            table = self.local.work = {}
        w = table.get((kind, n))
        if w is None:
            if len(table) > 8:
                table.clear()
            w = table[kind, n] = np.empty(max(1, self.c[f"{kind}_workspace_size"](n)), dtype=self.pkg.dtype)
        return w

    def input_gradients(self, params, x, y):
        """dE/dx, the same shape as x."""
        b, theta, px, pt, n, single = self.pkg.prepare(params, x, y)
        gx = np.empty((n, self.pkg.n_inputs), dtype=self.pkg.dtype)
        work = self._work(n)  # held until C returns
        self.c["input_gradients"](theta, px, pt, n, gx.ctypes.data, work.ctypes.data)
        return gx[0] if single else gx

    def jacobian(self, params, x):
        """d output / d x: shape (batch, N_OUTPUTS, N_INPUTS), or (N_OUTPUTS, N_INPUTS) for one sample."""
        b, theta, px, _, n, single = self.pkg.prepare(params, x, None, targets=False)
        J = np.empty((n, self.pkg.n_outputs, self.pkg.n_inputs), dtype=self.pkg.dtype)
        work = self._work(n)
        self.c["jacobian"](theta, px, n, J.ctypes.data, work.ctypes.data)
        return J[0] if single else J

    def direction(self, v):
        """v (a dict shaped like the gradients) as one vector in the parameter layout (0 for frozen entries)."""
        flat = np.zeros(self.pkg.n_params, dtype=self.pkg.dtype)
        for name, offset, size, shape in self.pkg.grads:
            try:
                p = v[name]
            except (KeyError, TypeError):
                keys = ", ".join(n for n, *_ in self.pkg.grads)
                raise ValueError(f"v is missing {name!r} (expected keys: {keys})") from None
            p = self.pkg.real(p, f"v[{name!r}]")
            if p.shape != shape:
                raise ValueError(f"v[{name!r}] has shape {p.shape}, expected {shape}")
            flat[offset:offset + size] = p.reshape(-1)
        return flat

    def _product(self, fn, params, x, y, flat):
        b, theta, px, pt, n, _ = self.pkg.prepare(params, x, y)
        out = np.empty(self.pkg.n_params, dtype=self.pkg.dtype)
        work = self._work(n)
        self.c[fn](theta, px, pt, flat.ctypes.data, n, out.ctypes.data, work.ctypes.data)
        return out

    def _dict(self, out):
        return {name: out[offset:offset + size].reshape(shape).copy() for name, offset, size, shape in self.pkg.grads}

    def hvp(self, params, x, y, v):
        """The Hessian of E with respect to the trainable parameters times v ({name: array}, shaped like v)."""
        return self._dict(self._product("hvp", params, x, y, self.direction(v)))

    def gauss_newton_vp(self, params, x, y, v):
        """The generalised Gauss-Newton matrix J^T H_loss J times v, J = d output / d params (positive semi-definite)."""
        if not self.convex:
            raise ValueError("gauss_newton_vp needs a loss whose second derivative in the output is never negative "
                             "(the built-in squared-error and cross-entropy losses); this model's loss is a custom expression")
        return self._dict(self._product("gauss_newton_vp", params, x, y, self.direction(v)))

    def _refuse_big(self, fn):
        if self.n_trainable > self.limit:
            raise ValueError(f"hessian() builds at most {self.limit} x {self.limit} matrices; this model has "
                             f"{self.n_trainable} trainable parameters: use {fn}(params, x, y, v) for matrix-vector products")

    def hessian(self, params, x, y):
        """The full Hessian of E, (N_TRAINABLE, N_TRAINABLE) in HESSIAN_ORDER, in one C call."""
        self._refuse_big("hvp")
        b, theta, px, pt, n, _ = self.pkg.prepare(params, x, y)
        H = np.empty((self.n_trainable, self.n_trainable), dtype=self.pkg.dtype)
        work = self._work(n, "hessian")
        self.c["hessian"](theta, px, pt, n, H.ctypes.data, work.ctypes.data)
        return H

    def bind_hessian(self, theta, x, t, H):
        """A no-argument function that writes the Hessian of E into H for these very arrays (one ctypes call).

        theta, x and t as for the package's bind(); H a writeable C-contiguous (N_TRAINABLE, N_TRAINABLE) array of
        the package's dtype, overlapping none of them. Rows and columns in HESSIAN_ORDER; no size limit is checked
        here beyond the array shapes. One bound call owns its work buffer: one thread at a time.
        """
        dt, nt = self.pkg.dtype, self.n_trainable
        if type(H) is not np.ndarray or H.dtype != dt or not H.flags.c_contiguous or H.shape != (nt, nt) \
                or not H.flags.writeable:
            raise ValueError(f"H must be a writeable C-contiguous {dt.name} array of shape ({nt}, {nt})")
        scratch = np.empty(self.pkg.n_params, dtype=dt)
        self.pkg.refuse_flat(theta, x, t, scratch)  # theta, x and t as bind() takes them (ValueError otherwise)
        for a, what in ((theta, "theta"), (x, "x"), (t, "t")):
            if np.may_share_memory(H, a):
                raise ValueError(f"H overlaps {what}: C would overwrite its input while reading it; pass a separate array")
        n = x.shape[0]
        work = np.empty(max(1, self.c["hessian_workspace_size"](n)), dtype=dt)
        block = self.call(*(a.ctypes.data for a in (theta, x, t, H, work)), n)
        call = functools.partial(self.c["hessian_call"], ctypes.byref(block))
        call.arrays = (theta, x, t, H, work, block)
        return call

    def _columns(self, params, x, y, fn):
        """The matrix of the product ``fn`` (hvp or gauss_newton_vp), (N_TRAINABLE, N_TRAINABLE), one call per column."""
        self._refuse_big(fn)
        index = np.concatenate([np.arange(offset, offset + size) for _, offset, size, _ in self.pkg.grads]) \
            if self.pkg.grads else np.zeros(0, dtype=int)
        H = np.empty((self.n_trainable, self.n_trainable), dtype=self.pkg.dtype)
        e = np.zeros(self.pkg.n_params, dtype=self.pkg.dtype)
        for col, i in enumerate(index):
            e[i] = 1
            H[:, col] = self._product(fn, params, x, y, e)[index]
            e[i] = 0
        return H

    def gauss_newton_matrix(self, params, x, y):
        """The Gauss-Newton matrix J^T H_loss J, (N_TRAINABLE, N_TRAINABLE) in HESSIAN_ORDER, one product per column."""
        if not self.convex:
            self.gauss_newton_vp(params, x, y, {})  # its refusal
        return self._columns(params, x, y, "gauss_newton_vp")

    def hessian_blocks(self, H):
        """{(name_a, name_b): block of H with shape shape_a + shape_b} for every pair of trainable parameters."""
        H = np.asarray(H)
        if H.shape != (self.n_trainable, self.n_trainable):
            raise ValueError(f"H must have shape ({self.n_trainable}, {self.n_trainable}), got {H.shape}")
        starts, k = {}, 0
        for name, shape in self.order:
            size = int(np.prod(shape, dtype=np.int64))
            starts[name] = (k, k + size, shape)
            k += size
        return {(a, b): H[i0:i1, j0:j1].reshape(sa + sb)
                for a, (i0, i1, sa) in starts.items() for b, (j0, j1, sb) in starts.items()}
