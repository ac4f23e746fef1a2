"""The wording of the rule that gives each local derivative of the neuron-level report."""


def rule(step, v, prog):
    """The name of the rule that gives d(step)/d(v)."""
    model = prog.model
    if step.kind == "loss":
        return "sum rule: the total error is a sum of the output errors" + (
            " times a constant" if prog.scale != 1 else "")
    if step.kind == "loss_term":
        name = model.loss.name
        if name in ("half_sse", "sse", "mse"):
            return "power rule with the chain rule (the inner derivative of t - y is -1)"
        if name in ("bce", "softmax_cross_entropy"):
            return "derivative of the logarithm, d log(y)/dy = 1/y"
        return "SymPy's derivative of the loss expression"
    if step.kind == "out":
        act = model.layers[step.layer].activation
        return {
            "sigmoid": "derivative of the sigmoid: σ'(x) = σ(x)(1 - σ(x)), written with the neuron's output",
            "tanh": "derivative of tanh: 1 - tanh(x)², written with the neuron's output",
            "relu": "derivative of ReLU: 1 where the net input is positive, else 0",
            "identity": "derivative of the identity: 1",
            "softmax": "quotient rule and the derivative of the exponential",
        }.get(act.name, f"derivative of the activation {act.name} (SymPy's diff)")
    if step.kind == "sum":
        return "sum rule and the derivative of the exponential"
    if step.kind == "net":
        if v in prog.params:
            pname, _ = prog.params[v]
            if pname.endswith(".bias"):
                return "the net input is linear in the bias: its derivative is 1"
            return "the net input is linear in the weight: the derivative of w·a with respect to w is a"
        return "the net input is linear in the previous output: the derivative of w·a with respect to a is w"
    return "chain rule through the expression (SymPy's diff)"

