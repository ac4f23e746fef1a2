"""``symgrad report``: write a step-by-step derivation report of a spec.

The format is ``--format`` if given, else the suffix of ``-o FILE`` (.md, .tex, .html, .pdf), else
Markdown. Without ``-o`` the report is written to ``<model name>.<format>`` in the current folder.
"""

from pathlib import Path

from symgrad.errors import SpecError
from symgrad.limits import check
from symgrad.render import check_output_file, write_atomic
from symgrad.report.content import build
from symgrad.report.layout import layout, pdf
from symgrad.spec import load
from symgrad.spec.loader import read_params

OPTIONS = {"params": "--params", "params-file": "--params-file"}  # build()'s argument names -> this command's options


def register(subparsers):
    p = subparsers.add_parser(
        "report", help="write a step-by-step derivation report (md, tex, html, pdf)",
        description="Write the forward pass, the chain-rule derivation of every gradient with the numbers "
                    "substituted, the update, finite-difference checks and the checks of [[expect]].")
    p.add_argument("spec", metavar="SPEC", help="the model's TOML spec file")
    p.add_argument("-o", "--out", metavar="FILE", help="output file (default: <name>.<format> in the current folder)")
    p.add_argument("--format", choices=["md", "tex", "html", "pdf"], help="format (default: from FILE's suffix, else md)")
    p.add_argument("--params", metavar="NAMES", help="comma-separated scalar parameters to derive step by step")
    p.add_argument("--digits", type=int, default=9, metavar="N", help="significant digits of numbers (default: 9)")
    p.add_argument("--steps", type=int, default=0, metavar="N", help="also show the loss after 1 and N gradient steps")
    p.add_argument("--params-file", metavar="FILE.npz", help="parameter values to use instead of the spec's")
    p.add_argument("--hessian", action="store_true", help="also derive second derivatives, the Hessian with its "
                   "finite-difference checks and eigenvalues, and a damped Newton step (small models)")
    p.set_defaults(run=run)


def _format(args):
    if args.format:
        return args.format
    if args.out:
        suffix = Path(args.out).suffix.lower().lstrip(".")
        if suffix in ("md", "tex", "html", "pdf"):
            return suffix
        if suffix == "htm":
            return "html"
        raise SpecError(f"cannot tell the format from {args.out!r}; give --format md|tex|html|pdf", "--format")
    return "md"


def run(args):
    if not 1 <= args.digits <= 17:
        raise SpecError("--digits must be between 1 and 17", "--digits")
    if args.steps < 0:
        raise SpecError("--steps must be 0 or more", "--steps")
    check("SYMGRAD_MAX_STEPS", args.steps, "--steps", "--steps")
    fmt = _format(args)
    model = load(args.spec)
    out = check_output_file(args.out or f"{model.name}.{fmt}")
    params = [s.strip() for s in args.params.split(",") if s.strip()] if args.params else None
    values = read_params(args.params_file, args.params_file, "--params-file") if args.params_file else None
    try:
        rep = build(model, params, args.digits, args.steps, values, args.hessian)
    except SpecError as exc:  # build names its arguments; here they came from options
        if exc.key not in OPTIONS:
            raise
        raise SpecError(exc.message, OPTIONS[exc.key], exc.file, exc.line) from None
    text = layout(rep, "tex" if fmt == "pdf" else fmt)
    data = pdf(text) if fmt == "pdf" else text
    path = write_atomic(out, data)
    print(f"wrote {path}")
    return 0
