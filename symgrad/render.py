"""Templates and output files: Jinja rendering of already-printed strings, and atomic writes."""

import os
import tempfile
from importlib import resources
from pathlib import Path

import jinja2

from .escape import FILTERS, python_string

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


def _load_template(name):
    """A template's text: from the checkout's templates/ beside the package, else the installed copy."""
    parts = name.split("/")
    if (_CHECKOUT_TEMPLATES / "numpy" / "module.py.j2").is_file():
        return _CHECKOUT_TEMPLATES.joinpath(*parts).read_text(encoding="utf-8")
    return resources.files("symgrad.templates").joinpath(*parts).read_text(encoding="utf-8")


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


def write_atomic(path, data):
    """Write text or bytes to ``path`` through a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path
