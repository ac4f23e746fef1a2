"""The ``symgrad`` command line: generate code, write reports, train.

Exit status: 0 on success, 2 for bad input (the message names the file, key and problem),
1 when a tool symgrad needs is missing or a build fails.
"""

import argparse
import sys

from symgrad.errors import SpecError, ToolError
from symgrad.onnx_import import import_onnx
from symgrad.pipeline import generate
from symgrad.render import check_output_dir
from symgrad.report import cli as report_cli
from symgrad.spec import load
from symgrad.train import cli as train_cli
from symgrad.version import __version__


def _generate(args):
    model = load(args.spec)
    check_output_dir(args.out)
    options = {}
    if args.target == "c":
        options = {"shape": args.shape, "with_main": args.with_main, "build": args.build, "blas": args.blas}
    if args.second_order:
        options["second_order"] = True
    for path in generate(model, args.target, args.out, dtype=args.dtype, **options):
        print(f"wrote {path}")
    return 0


def _import(args):
    for path in import_onnx(args.model, args.out, loss=args.loss, name=args.name):
        print(f"wrote {path}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="symgrad",
        description="Derive exact chain-rule gradients of a model described in a TOML spec, explain the "
                    "derivation step by step, and generate NumPy or C code for the forward and backward passes.",
        epilog="Examples:\n"
               "  symgrad generate examples/mazur.toml                 # -> generated/mazur.py\n"
               "  symgrad generate examples/mazur.toml --target c      # -> generated/mazur_c/\n"
               "  symgrad report examples/mazur.toml -o mazur.html     # step-by-step derivation\n"
               "  symgrad import model.onnx -o model.toml               # -> model.toml + model.npz\n"
               "Spec format: see README.md (every key, its type, default and meaning).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"symgrad {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    g = sub.add_parser("generate", help="generate an importable NumPy module or C code from a spec",
                       description="Generate the forward/backward code of SPEC into DIR.")
    g.add_argument("spec", metavar="SPEC", help="the model's TOML spec file")
    g.add_argument("--target", choices=["numpy", "c"], default="numpy", help="code to generate (default: numpy)")
    g.add_argument("-o", "--out", default="generated", metavar="DIR", help="output folder (default: generated/)")
    g.add_argument("--dtype", choices=["float64", "float32"], default="float64", help="floating type (default: float64)")
    g.add_argument("--shape", choices=["auto", "unrolled", "loops", "hybrid"], default="auto",
                   help="C code shape: straight-line unrolled code, loops, or loops with unrolled code for batch 1 "
                        "(default: auto, by size)")
    g.add_argument("--with-main", action="store_true", help="C: also write a main() driver that runs the worked sample")
    g.add_argument("--build", action="store_true", help="C: compile the shared library now")
    g.add_argument("--blas", choices=["auto", "yes", "no"], default="no",
                   help="C: call cblas_dgemm for the matrix products of loop-shaped code (default: no)")
    g.add_argument("--second-order", action="store_true",
                   help="also generate input_gradients, jacobian, hvp, gauss_newton_vp, hessian and hessian_blocks")
    g.set_defaults(run=_generate)
    i = sub.add_parser("import", help="write a spec and its weights (.npz) from an ONNX model",
                       description="Read MODEL.onnx (dense chains, convolutions, pooling, residual adds and concats) and write "
                                   "SPEC.toml with its weights in SPEC.npz beside it (the spec's params_file).")
    i.add_argument("model", metavar="MODEL.onnx", help="the ONNX model")
    i.add_argument("-o", "--out", required=True, metavar="SPEC.toml", help="the spec to write (weights go to SPEC.npz)")
    i.add_argument("--loss", default="mse", help="the loss kind of the spec (default: mse)")
    i.add_argument("--name", help="the model name (default: SPEC's file name without .toml)")
    i.set_defaults(run=_import)
    for register in _extra_commands():
        register(sub)
    return parser


def _extra_commands():
    """Subcommands that live in their own packages (report, train)."""
    return [report_cli.register, train_cli.register]


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except SpecError as exc:
        print(f"symgrad: error: {exc}", file=sys.stderr)
        return 2
    except ToolError as exc:
        print(f"symgrad: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("symgrad: interrupted; no partial output was left", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
