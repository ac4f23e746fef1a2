"""What a PyTorch module's forward computes, traced with torch.fx: whether from_torch may read its children in order.

from_torch converts the children of a module in their order; that is the forward's computation only when the
forward is one chain of those children (reshapes and a recurrent layer's outputs aside). A trace tells: a fork or a
join (a residual block), a computation outside the children (``torch.relu(...)``) or children called out of order
are refused, and which steps of a recurrent child the forward hands on is read off its indexing.
"""

import operator

from symgrad.errors import SpecError


def check_chain(module, torch, recurrent_kinds, children):
    """{recurrent child: "last" | "every"} as the forward reads them, after refusing a forward that is not the chain of
    ``children`` ((path, module) in order): a fork or join, a computation outside the children, children out of
    order. A forward torch.fx cannot trace is taken to run its children in order."""
    if type(module) is torch.nn.Sequential or isinstance(module, recurrent_kinds):
        return {}
    try:
        graph = torch.fx.symbolic_trace(module).graph
    except Exception:  # data-dependent control flow and the like: nothing to check against
        return {}
    modules = dict(module.named_modules())
    meta = set()  # sizes and what is computed from them only (x.view(x.size(0), -1) reads x's values once)
    called = []  # the children the forward calls, in order
    steps = {}  # recurrent child -> "last" or "every": which of its steps the forward hands on
    for node in graph.nodes:
        if node.op in ("output", "get_attr"):
            continue
        args = []  # every value among the arguments, as often as it occurs (x + x joins x with itself)
        torch.fx.node.map_arg((node.args, node.kwargs), lambda a: args.append(a) if a.op != "get_attr" else None)
        if node.op == "call_method" and node.target in ("size", "dim", "numel") or node.op == "call_function" and (
                node.target is getattr and node.args[1] in ("shape", "ndim", "dtype", "device")
                or args and all(a in meta for a in args)):
            meta.add(node)
            continue
        read = [a.name for a in args if a not in meta]
        readers = [u.name for u in node.users if not (u.op == "call_method" and u.target in ("size", "dim", "numel")
                                                      or u.op == "call_function" and u.target is getattr)
                   and _live(u)]  # an unused part of an unpacked tuple reads nothing
        tuple_out = node.op == "call_module" and isinstance(modules.get(node.target), recurrent_kinds)  # (out, state)
        what = f"{node.name!r} joins {' and '.join(map(repr, read))}" if len(read) > 1 else \
            f"the value {node.name!r} is read by {' and '.join(map(repr, readers))}" if len(readers) > 1 and not tuple_out \
            else None
        if what:
            raise SpecError(f"{type(module).__name__}.forward is not a chain of its children: {what} (a residual "
                            "connection or a fork and join of branches). from_torch reads the children in order, which "
                            "cannot say that; write the network as a spec with an add or concat layer (they take an "
                            "activation, as relu(a + b)), or export it with torch.onnx.export and read it with "
                            "symgrad.from_onnx", "module")
        if node.op == "call_module":
            called.append(node.target)
            if tuple_out:
                steps[node.target] = _steps_read(node)
        elif node.op != "placeholder" and not _reshapes(node, torch):
            op = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
            raise SpecError(f"{type(module).__name__}.forward computes {op!r} ({node.name!r}) outside its children: "
                            "from_torch reads child modules only, so the converted model would leave it out; make it a "
                            "child module (nn.ReLU() rather than torch.relu)", "module")
    nn = torch.nn
    order = [path for path, child in children if type(child) not in (nn.Identity, nn.Dropout)]
    called = [path for path in called if type(modules.get(path)) not in (nn.Identity, nn.Dropout)]
    if called != order:
        raise SpecError(f"{type(module).__name__}.forward calls its children as {called}, not in their order "
                        f"{order}: from_torch reads the children in order", "module")
    return steps


def _steps_read(node):
    """"last" when the forward reads a recurrent child's last step (out[:, -1], or its final state h_n), "every" when
    it hands on the whole output sequence, None when the trace does not say."""
    parts = [u for u in node.users if u.op == "call_function" and u.target is operator.getitem and _live(u)]
    if any(u.args[1] != 0 for u in parts):
        return "last"  # (h_n, c_n): the final state
    for seq in parts:
        for u in seq.users:
            index = u.args[1] if u.op == "call_function" and u.target is operator.getitem else None
            if isinstance(index, tuple) and len(index) > 1 and index[1] == -1:
                return "last"
            if index is None:
                return "every"
    return None


def _reshapes(node, torch):
    """Whether a traced step only reshapes a batch (a flatten, the recurrent output's parts, a time/feature transpose)."""
    if node.op == "call_function":
        return node.target is operator.getitem or node.target is torch.flatten
    return node.op == "call_method" and node.target in ("view", "reshape", "flatten", "transpose", "contiguous")


def _live(node):
    """Whether a traced value reaches the forward's output."""
    return node.op == "output" or any(_live(u) for u in node.users)
