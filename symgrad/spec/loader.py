"""Load a model from a TOML file or a dict: keys checked, errors located by file, key and line."""

import difflib
import math
import re
import tomllib
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from symgrad.checks import finite_array
from symgrad.errors import ExpressionError, SpecError
from symgrad.limits import read_bounded
from symgrad.ops.dense import Dense
from symgrad.ops.layers import TENSOR_LAYERS, get_layer
from symgrad.ops.losses import get_loss
from symgrad.spec.config import Expect, Sample, TrainConfig
from symgrad.spec.graph import GraphNetwork
from symgrad.spec.model import ExpressionModel, Network, loss_or_error

TOP_KEYS = {"name", "description", "inputs", "input_shape", "outputs", "init", "layers", "expression", "loss", "sample",
            "expect", "train", "params_file"}
FREE_LAYER_KEYS = {"kind", "name", "neurons"}
LAYER_KEYS = {"kind", "name", "units", "activation", "activation_params", "weight", "bias", "bias_value", "neurons", "weight_names",
              "bias_names", "freeze", "init", "input"}
INIT_KEYS = {"scheme", "seed"}
LOSS_KEYS = {"kind", "expression", "reduction", "average_outputs"}
SAMPLE_KEYS = {"x", "t", "seed"}
EXPECT_KEYS = {"what", "name", "value", "rel_tol", "abs_tol", "source"}
EXPRESSION_KEYS = {"output", "outputs", "params", "freeze"}
TRAIN_KEYS = {f.name for f in TrainConfig.__dataclass_fields__.values()}


def _check_keys(table, allowed, prefix):
    if not isinstance(table, dict):
        raise SpecError("expected a table", prefix or None)
    for k in table:
        if k not in allowed:
            close = difflib.get_close_matches(k, sorted(allowed), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise SpecError(f"unknown key{hint}; allowed: {', '.join(sorted(allowed))}", f"{prefix}.{k}" if prefix else k)


def _typed(table, key, types, prefix, default=None, required=False):
    full = f"{prefix}.{key}" if prefix else key
    if key not in table:
        if required:
            raise SpecError("missing required key", full)
        return default
    v = table[key]
    if isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise SpecError(f"expected {_type_names(types)}, got a boolean", full)
    if not isinstance(v, types):
        raise SpecError(f"expected {_type_names(types)}, got {type(v).__name__}", full)
    if isinstance(v, float) and not math.isfinite(v):
        raise SpecError("numbers must be finite (no nan or inf)", full)
    return v


def _text(table, key, prefix, default=""):
    """A free-text value (description, source): any characters but NUL and other control characters.

    Tabs and line breaks (\\n, \\r, U+0085) are allowed: generated files show them as escapes. A control character is almost
    surely a mistake, and NUL cannot reach C or most tools, so both are refused here with their code point.
    """
    v = _typed(table, key, str, prefix, default)
    for i, c in enumerate(v):
        if (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0) and c not in "\t\n\r\x85":
            raise SpecError(f"control character U+{ord(c):04X} at position {i} is not allowed in text "
                            "(tabs and line breaks are)", f"{prefix}.{key}" if prefix else key)
    return v


def _type_names(types):
    names = {int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table", bool: "true/false"}
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join(names.get(t, t.__name__) for t in types)


def from_dict(data, source="<dict>", folder="."):
    """A Network or ExpressionModel from the parsed TOML table (raises SpecError); ``params_file`` is relative to folder."""
    _check_keys(data, TOP_KEYS, "")
    params_file = _typed(data, "params_file", str, "", None)
    model = _model(data, source)
    if params_file is not None:
        values = read_params(Path(folder) / params_file, params_file)
        model.params = with_values(model.params, values, "params_file", f"{params_file}: ")
    return model


def _model(data, source):
    """The model a spec table describes, with the parameter values the spec itself gives."""
    name = _typed(data, "name", str, "", required=True)
    description = _text(data, "description", "")
    if _is_graph(data):
        return _load_graph(data, source)
    inputs = _typed(data, "inputs", (list, int), "", required=True)
    outputs = _typed(data, "outputs", list, "", None)
    loss = _load_loss(data)
    sample = _load_sample(data)
    expects = _load_expects(data)
    train = _load_train(data)
    has_layers, has_expr = "layers" in data, "expression" in data
    if has_layers == has_expr:
        raise SpecError("give either [[layers]] (a network) or [expression] (an expression model)",
                        "layers" if has_layers else None)
    if has_expr:
        if outputs is not None:
            raise SpecError("an expression model names its outputs in [expression]", "outputs")
        ex = _typed(data, "expression", dict, "")
        _check_keys(ex, EXPRESSION_KEYS, "expression")
        if ("output" in ex) == ("outputs" in ex):
            raise SpecError("give output = \"...\" or an [expression.outputs] table", "expression.output")
        outs = _typed(ex, "outputs", dict, "expression") if "outputs" in ex else _typed(ex, "output", str, "expression")
        for k, v in (outs.items() if isinstance(outs, dict) else ()):
            if not isinstance(v, str):
                raise SpecError("expected an expression string", f"expression.outputs.{k}")
        params = _typed(ex, "params", dict, "expression", required=True)
        freeze = _typed(ex, "freeze", list, "expression", [])
        return ExpressionModel(name, inputs, outs, params, loss, tuple(freeze), sample, train, expects, description, source)
    init = _typed(data, "init", dict, "", {})
    _check_keys(init, INIT_KEYS, "init")
    layers_data = _typed(data, "layers", list, "", required=True)
    layers = [_load_layer(ld, f"layers[{k}]") for k, ld in enumerate(layers_data)]
    return Network(
        name, inputs, layers, loss, outputs, sample,
        _typed(init, "scheme", str, "init", "xavier"), _typed(init, "seed", int, "init", 0),
        train, expects, description, source,
    )


def _is_graph(data):
    """A spec is a graph network when it gives input_shape, or a layer is shaped or names its input(s)."""
    layers = data.get("layers")
    shaped = isinstance(layers, list) and any(
        isinstance(ld, dict) and (ld.get("kind") in TENSOR_LAYERS or "input" in ld or "inputs" in ld) for ld in layers)
    return "input_shape" in data or shaped


def _load_graph(data, source):
    """A GraphNetwork: input_shape (or flat inputs), [[layers]] of any kind with input/inputs."""
    if "expression" in data:
        raise SpecError("an expression model has no layers or input_shape", "input_shape")
    name = _typed(data, "name", str, "", required=True)
    if ("input_shape" in data) == ("inputs" in data):
        raise SpecError("give input_shape = [C, L] / [C, H, W] (shaped inputs) or inputs (flat), not both"
                        if "inputs" in data else "give input_shape = [C, L] or [C, H, W], or inputs", "input_shape")
    if "input_shape" in data:
        shape = _typed(data, "input_shape", list, "")
    else:
        inputs = _typed(data, "inputs", (list, int), "")
        shape = [inputs if isinstance(inputs, int) else len(inputs)]
    init = _typed(data, "init", dict, "", {})
    _check_keys(init, INIT_KEYS, "init")
    layers_data = _typed(data, "layers", list, "", required=True)
    layers = []
    for k, ld in enumerate(layers_data):
        p = f"layers[{k}]"
        if not isinstance(ld, dict):
            raise SpecError("each [[layers]] entry must be a table", p)
        kind = _typed(ld, "kind", str, p, "dense")
        if kind == "dense":
            layer = _load_layer(ld, p)
        elif kind in TENSOR_LAYERS:
            cls = TENSOR_LAYERS[kind]
            _check_keys(ld, set(cls.allowed()) | {"kind", "name", "activation", "activation_params"}, p)  # the op says
            # why a kind takes no activation
            args = {key: v for key, v in ld.items() if key not in ("kind", "name")}
            try:
                layer = cls(_typed(ld, "name", str, p, required=True), **args)
            except SpecError as exc:
                raise SpecError(exc.message, f"{p}.{exc.key}" if exc.key else p) from None
        else:
            raise SpecError(f"layer kind {kind!r} is not available in a graph network (kinds: dense, "
                            f"{', '.join(TENSOR_LAYERS)}); a softmax output is activation = \"softmax\"", f"{p}.kind")
        layers.append(layer)
    return GraphNetwork(
        name, shape, layers, _load_loss(data), _typed(data, "outputs", list, "", None), _load_sample(data),
        _typed(init, "scheme", str, "init", "xavier"), _typed(init, "seed", int, "init", 0),
        _load_train(data), _load_expects(data), _text(data, "description", ""), source)


def _load_layer(ld, p):
    """A Dense, or a parameter-free layer of a registered kind (``kind``, ``name``, optional ``neurons``)."""
    if not isinstance(ld, dict):
        raise SpecError("each [[layers]] entry must be a table", p)
    kind = _typed(ld, "kind", str, p, "dense")
    if kind != "dense":
        _check_keys(ld, FREE_LAYER_KEYS, p)
        try:
            return get_layer(kind, _typed(ld, "name", str, p, required=True), _typed(ld, "neurons", list, p, None))
        except ExpressionError as exc:
            raise SpecError(str(exc), f"{p}.kind") from None
    _check_keys(ld, LAYER_KEYS, p)
    return Dense(
            name=_typed(ld, "name", str, p, required=True),
            units=_typed(ld, "units", int, p, required=True),
            activation=_typed(ld, "activation", str, p, "identity"),
            activation_params=_typed(ld, "activation_params", dict, p, None),
            weight=_typed(ld, "weight", list, p, None),
            bias=_typed(ld, "bias", str, p, "unit"),
            bias_value=_typed(ld, "bias_value", (int, float, list), p, None),
            neurons=_typed(ld, "neurons", list, p, None),
            weight_names=_typed(ld, "weight_names", list, p, None),
            bias_names=_typed(ld, "bias_names", (list, str), p, None),
            freeze=tuple(_typed(ld, "freeze", (list, str), p, ())),
            init=_typed(ld, "init", str, p, None),
            input=_typed(ld, "input", str, p, None),
    )


def _load_loss(data):
    ld = _typed(data, "loss", (dict, str), "", required=True)
    if isinstance(ld, str):
        return loss_or_error(kind=ld)
    _check_keys(ld, LOSS_KEYS, "loss")
    kind = _typed(ld, "kind", str, "loss", None)
    expr = _typed(ld, "expression", str, "loss", None)
    if (kind is None) == (expr is None):
        raise SpecError("give kind = \"...\" or expression = \"...\" (not both)", "loss.kind")
    try:
        return get_loss(kind, expr, _typed(ld, "reduction", str, "loss", None), _typed(ld, "average_outputs", bool, "loss", None))
    except ExpressionError as exc:
        key = "loss.expression" if expr is not None else ("loss.reduction" if "reduction" in str(exc) else "loss.kind")
        raise SpecError(str(exc), key) from None


def _load_sample(data):
    sd = _typed(data, "sample", dict, "", None)
    if sd is None:
        return None
    _check_keys(sd, SAMPLE_KEYS, "sample")
    seed = _typed(sd, "seed", int, "sample", None)
    x = _typed(sd, "x", list, "sample", required=seed is None)
    t = _typed(sd, "t", list, "sample", None)
    if seed is not None and x is not None:
        raise SpecError("give x (and t) or a seed, not both", "sample.seed")
    return Sample(None if x is None else finite_array(x, "sample.x"), None if t is None else finite_array(t, "sample.t"), seed)


def _load_expects(data):
    items = _typed(data, "expect", list, "", [])
    out = []
    for k, ed in enumerate(items):
        p = f"expect[{k}]"
        _check_keys(ed, EXPECT_KEYS, p)
        out.append(Expect(
            _typed(ed, "what", str, p, required=True), _typed(ed, "name", str, p, None),
            float(_typed(ed, "value", (int, float), p, required=True)),
            float(_typed(ed, "rel_tol", (int, float), p, 1e-6)), float(_typed(ed, "abs_tol", (int, float), p, 0.0)),
            _text(ed, "source", p),
        ))
    return out


def _load_train(data):
    td = _typed(data, "train", dict, "", {})
    _check_keys(td, TRAIN_KEYS, "train")
    kw = {}
    for f in TrainConfig.__dataclass_fields__.values():
        if f.name in td:
            typ = {"float": (int, float), "int": int, "str": str, "bool": bool}[f.type if isinstance(f.type, str) else f.type.__name__]
            kw[f.name] = _typed(td, f.name, typ, "train")
            if typ == (int, float):
                kw[f.name] = float(kw[f.name])
    return TrainConfig(**kw)


def read_params(path, shown, key="params_file"):
    """{name: float64 array} from an .npz of named arrays (never unpickled); errors name ``key`` and the file as ``shown``."""
    def fail(problem):
        return SpecError(f"{shown}: {problem}", key)

    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise fail("file not found") from None
    except IsADirectoryError:
        raise fail("is a folder, not an .npz file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise fail(f"cannot read parameters: {exc}") from None
    if not isinstance(data, np.lib.npyio.NpzFile):  # a .npy holds one array, not named parameters
        raise fail("expected an .npz of named parameter arrays, got a single array")
    values = {}
    try:
        with data:
            for name in data.files:
                arr = data[name]
                if arr.dtype.kind not in "fiu":
                    raise fail(f"array {name!r} holds {arr.dtype}, not numbers")
                values[name] = arr.astype(np.float64)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise fail(f"cannot read parameters: {exc}") from None
    return values


def with_values(params, values, key="params", where=""):
    """params with every value replaced by the array of the same name: missing, extra, misshapen or non-finite arrays are errors.

    Errors name ``key`` and start with ``where`` (the file the values came from).
    """
    by_name = {p.name: p for p in params}
    missing = [n for n in by_name if n not in values]
    extra = sorted(set(values) - set(by_name))
    if missing:
        raise SpecError(f"{where}no array {missing[0]!r} (the model's parameters: {', '.join(by_name)})", key)
    if extra:
        raise SpecError(f"{where}array {extra[0]!r} is not a parameter of the model (its parameters: {', '.join(by_name)})", key)
    out = []
    for p in params:
        arr = np.asarray(values[p.name], dtype=np.float64)
        if arr.shape != tuple(p.shape):
            raise SpecError(f"{where}array {p.name!r} has shape {arr.shape}, the model needs {tuple(p.shape)}", key)
        bad = np.argwhere(~np.isfinite(arr))
        if len(bad):
            at = f" at index {tuple(int(i) for i in bad[0])}" if arr.ndim else ""
            raise SpecError(f"{where}array {p.name!r} has a NaN or infinite value{at}", key)
        out.append(replace(p, value=arr))
    return out


def _line_of(text, key):
    """Best-effort line number of a dotted key like ``layers[1].activation`` in TOML text."""
    if not key or not text:
        return None
    lines = text.splitlines()
    parts = key.split(".")
    start = 0
    first = parts[0]
    m = re.fullmatch(r"(\w+)\[(\d+)\]", first)
    if m:
        table, idx = m.group(1), int(m.group(2))
        headers = [i for i, ln in enumerate(lines) if re.match(rf"\s*\[\[\s*{table}\s*\]\]", ln)]
        if idx < len(headers):
            start = headers[idx]
            parts = parts[1:]
        else:
            return None
    elif len(parts) > 1:
        for i, ln in enumerate(lines):
            if re.match(rf"\s*\[\s*{re.escape(first)}\s*\]", ln):
                start = i
                parts = parts[1:]
                break
    if not parts:
        return start + 1
    leaf = re.sub(r"\[\d+\]$", "", parts[-1])
    for i in range(start, len(lines)):
        if re.match(rf"\s*{re.escape(leaf)}\s*=", lines[i]):
            return i + 1
    return start + 1 if start else None


def load(path):
    """Load and check a spec file; raises SpecError naming the file, key and line."""
    path = Path(path)
    text = _read_spec(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise SpecError(f"TOML syntax error: {exc}", file=path, line=int(m.group(1)) if m else None) from None
    except RecursionError:
        raise SpecError("TOML nested too deeply (arrays or tables inside each other)", file=path) from None
    try:
        return from_dict(data, source=_display_path(path), folder=path.parent)
    except SpecError as exc:
        raise exc.located(_display_path(path), _line_of(text, exc.key)) from None
    except RecursionError:
        raise SpecError("spec nested too deeply", file=_display_path(path)) from None



def as_model(spec):
    """The model of spec: a spec file's path is loaded, a model object is returned as it is."""
    return load(spec) if isinstance(spec, (str, Path)) else spec

def _read_spec(path):
    """The text of a spec file: a regular file of at most SYMGRAD_MAX_SPEC_BYTES, UTF-8, a leading BOM dropped."""
    data = read_bounded(path, "SYMGRAD_MAX_SPEC_BYTES", "spec")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"cannot read file: not UTF-8 text ({exc.reason} at byte {exc.start})", file=path) from None
    return text[1:] if text.startswith("\ufeff") else text


def _display_path(path):
    """The path as given when relative, else relative to the working directory if inside it (no absolute paths)."""
    path = Path(path)
    if not path.is_absolute():
        return path.as_posix()
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return path.name
