"""The wording of the rule behind each local derivative of the neuron-level report: each op states its own."""

from symgrad.ops.dense import Dense


def rule(step, v, prog):
    """The name of the rule that gives d(step)/d(v): the step's own (set by its op), or the dense layer's."""
    if step.kind == "net" and not step.rule:  # a weighted sum (dense, convolution); an add or pooling states its own
        return Dense.net_rule(v, prog.params)
    return step.rule or "chain rule through the expression (SymPy's diff)"
