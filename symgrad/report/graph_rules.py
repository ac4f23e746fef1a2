"""The report section that derives each layer kind's backward rule with SymPy on a small instance (core/graph_rules.py)."""

import sympy as sp

from symgrad.core.derive import derive
from symgrad.core.graph_rules import check_for, fork_check
from symgrad.report.blocks import Math, Partial, Section, Text, sym

TITLES = {"conv1d": "Convolution (conv1d)", "conv2d": "Convolution (conv2d)", "maxpool1d": "Max pooling (maxpool1d)",
          "maxpool2d": "Max pooling (maxpool2d)", "avgpool1d": "Average pooling (avgpool1d)",
          "avgpool2d": "Average pooling (avgpool2d)", "flatten": "Flatten", "add": "Add", "concat": "Concat",
          "dense": "Dense", "fork": "A fork (residual connection)"}
E = sym("E")


def rule_checks(model):
    """One RuleCheck per layer kind of the graph (the first layer of each kind sets stride, padding, dilation),
    and a fork's where a layer's output is read by more than one layer."""
    seen, out = set(), []
    for node in model.nodes:
        if node.op.kind in seen:
            continue
        seen.add(node.op.kind)
        rc = check_for(node)
        if rc is not None:
            out.append(rc)
    if any(len(c) > 1 for c in derive(model).graph.consumers.values()):
        out.append(fork_check())
    return out


def rules_section(model):
    """Each layer kind's rule: stated, then derived by SymPy on a small instance and checked against its textbook form."""
    sec = Section("Layer rules, derived by SymPy")
    sec.blocks.append(Text([
        "Each kind of layer states its backward rule. Here SymPy derives it from the layer's own definition, on a "
        "small instance written out element by element: with ", sym("delta_p"), " = ", Partial(E, sym("z_p")),
        " for the layer's outputs z, the chain rule gives ", Partial(E, sym("v")), " = ",
        sp.Sum(sym("delta_p") * Partial(sym("z_p"), sym("v")), (sym("p"), 1, sym("P"))),
        " for every weight and input v, and SymPy differentiates every output. Each sum is then compared with the "
        "rule's textbook form, computed separately from the definition: SymPy expands their difference to 0. The "
        "rules do not depend on the sizes, so small instances show them whole."]))
    for rc in rule_checks(model):
        sec.blocks += rule_blocks(rc)
    return sec


def rule_blocks(rc):
    """Blocks showing one RuleCheck: the instance's outputs, SymPy's sums per group, the rule's arrays, the verdict."""
    blocks = [Text([f"{TITLES.get(rc.kind, rc.kind)}: {rc.rule}. Instance: {rc.instance}. Its outputs, from the "
                    "layer's definition:"])]
    blocks += [Math([z, e]) for z, e in rc.forward]
    for title, how, rows in rc.groups:
        blocks.append(Text([f"The {title}: SymPy's chain-rule sums; the rule computes them as {how}:"]))
        blocks += [Math([Partial(E, v), d]) for v, d, _ in rows]
    if rc.shows:
        blocks.append(Text(["The full convolution written out: the delta spread stride apart and padded by "
                            "dilation·(kernel − 1) zeros on every side,"]))
        blocks.append(Math([_matrix(rc.shows["spread"])]))
        blocks.append(Text(["slid under the flipped kernel (its taps dilation apart); each position's sum of products "
                            "is one input's delta, after the input's padding is cropped off:"]))
        blocks.append(Math([_matrix(rc.shows["flipped"])]))
    blocks += [Text([n]) for n in rc.notes]
    n = sum(len(rows) for _, _, rows in rc.groups)
    verdict = (f"SymPy: the derived sum and the rule agree for all {n} entries." if rc.holds else
               f"SymPy: the derived sums and the rule DISAGREE on this instance ({n} entries compared).")
    blocks.append(Text([verdict]))
    return blocks


def _matrix(a):
    """An array of rank 1 or 2 as a SymPy Matrix (a row for rank 1)."""
    return sp.Matrix([list(a)]) if a.ndim == 1 else sp.Matrix(a.tolist())
