"""The network drawing (SVG and TikZ): neurons in columns with their forward values and biases, edges labelled
with the weight's name, value and gradient.

Every label is placed once, on a free spot along its edge (tried from the middle outwards, away from the
neurons, the other labels and the texts already placed), so both formats draw the same layout and labels
do not collide where edges cross. Layers with more than MAX_UNITS units are drawn as one box labelled
with their size.
"""

import math
from dataclasses import dataclass, field

from symgrad.escape import html as escape
from symgrad.escape import latex
from symgrad.report.numbers import fmt

MAX_UNITS = 8
R = 22
CHAR, LINE = 6.2, 13  # width of a character and height of a line of the 11px labels, in px
TRIES = [0.3, 0.7, 0.22, 0.78, 0.38, 0.62, 0.5, 0.26, 0.74, 0.34, 0.66, 0.44, 0.56]  # the middle last: edges cross there


@dataclass
class Values:
    """What the drawing shows besides names: {(column, row): forward value}, {scalar: value}, {scalar: gradient}."""

    neurons: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    grads: dict = field(default_factory=dict)


@dataclass
class _Label:
    x: float
    y: float  # centre
    lines: list
    kind: str  # edge | value | bias
    angle: float = 0.0  # degrees, clockwise on screen: an edge label runs along its edge


def _columns(model):
    """[(title, [neuron labels] or None for a box, size, layer or None)] from the inputs to the outputs."""
    cols = [("input", list(model.inputs) if model.n_inputs <= MAX_UNITS else None, model.n_inputs, None)]
    for k, layer in enumerate(model.layers):
        last = k == len(model.layers) - 1
        names = list(model.outputs) if last else list(layer.neurons)
        title = f"{layer.name} ({layer.kind if getattr(layer, 'is_layer', False) else layer.activation.name})"
        cols.append((title, names if layer.units <= MAX_UNITS else None, layer.units, k))
    return cols


def _geometry(cols, labelled):
    """(column spacing, row spacing, {(column, row): (x, y)}, height)."""
    dx, dy = (250, 110) if labelled else (170, 70)
    height = max(len(c[1]) if c[1] else 3 for c in cols)
    pos = {}
    for ci, (_, names, n, _) in enumerate(cols):
        count = len(names) if names else 1
        top = (height - count) * dy / 2 + (80 if labelled else 60)
        for r in range(count):
            pos[ci, r] = (60 + ci * dx, top + r * dy)
    return dx, dy, pos, height


def _box(label):
    """The corners of the label's (rotated) rectangle."""
    w = CHAR * max(len(s) for s in label.lines) + 4
    h = LINE * len(label.lines)
    c, s = math.cos(math.radians(label.angle)), math.sin(math.radians(label.angle))
    return [(label.x + u * c - v * s, label.y + u * s + v * c) for u, v in
            ((-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2))]


def _square(x0, y0, x1, y1):
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _overlap(a, b):
    """Whether two convex polygons overlap (no separating axis among their edges' normals)."""
    for poly in (a, b):
        for (x1, y1), (x2, y2) in zip(poly, poly[1:] + poly[:1]):
            nx, ny = y1 - y2, x2 - x1
            pa = [nx * x + ny * y for x, y in a]
            pb = [nx * x + ny * y for x, y in b]
            if max(pa) <= min(pb) or max(pb) <= min(pa):
                return False
    return True


def _place(lines, p, q, taken):
    """A label on the segment p-q where it overlaps nothing in ``taken``, or None."""
    best = None
    angle = math.degrees(math.atan2(q[1] - p[1], q[0] - p[0]))
    for t in TRIES:
        label = _Label(p[0] + (q[0] - p[0]) * t, p[1] + (q[1] - p[1]) * t, lines, "edge", angle)
        cost = sum(_overlap(_box(label), b) for b in taken)  # how many things it would cover
        if best is None or cost < best[0]:
            best = (cost, label)
        if cost == 0:
            taken.append(_box(label))
            return label
    return None


def _layout(model, values):
    """(columns, positions, size, edges [(p, q)], labels) of the drawing."""
    cols = _columns(model)
    labelled = values is not None
    dx, dy, pos, height = _geometry(cols, labelled)
    boxes = any(not c[1] for c in cols)
    size = (120 + (len(cols) - 1) * dx, max(y for _, y in pos.values()) + (60 if boxes else R) + (30 if labelled else 18))
    taken = [_square(x - R, y - R, x + R, y + R) for x, y in pos.values()] + [_square(0, 0, size[0], 35)]
    labels, edges = [], []
    if labelled:
        for (ci, r), (x, y) in pos.items():
            if cols[ci][1] and (ci, r) in values.neurons:
                labels.append(_Label(x, y + R + 9, [fmt(values.neurons[ci, r], 4)], "value"))
            bias = _bias_name(model, cols[ci][3], r) if cols[ci][1] else None
            if bias is not None:
                text = f"{bias} = {fmt(values.params[bias], 4)}" if bias in values.params else bias
                labels.append(_Label(x, y - R - 8, [text], "bias"))
        taken += [_box(lab) for lab in labels]
    for ci in range(1, len(cols)):
        names = _weight_names(model, cols[ci][3])
        n_in = len(cols[ci - 1][1]) if cols[ci - 1][1] else 1
        n_out = len(cols[ci][1]) if cols[ci][1] else 1
        ends = [((pos[ci - 1, i][0] + R, pos[ci - 1, i][1]), (pos[ci, j][0] - R, pos[ci, j][1]))
                for j in range(n_out) for i in range(n_in)]
        edges += ends
        if cols[ci][1] and cols[ci - 1][1] and names:
            labels += _edge_labels(names, values, ends, taken)
    return cols, pos, size, edges, labels


def _edge_labels(names, values, ends, taken):
    """Labels of the edges between two columns: name, value and gradient where all fit without touching, else the
    names alone, else none (the tables hold the numbers)."""
    for full in (True, False):
        trial, placed = list(taken), []
        for name, (p, q) in zip(names, ends):
            label = _place(_edge_lines(name, values if full else None), p, q, trial)
            if label is None:
                break
            placed.append(label)
        else:
            taken[:] = trial
            return placed
    return []


def _edge_lines(name, values):
    if values is None:
        return [name]
    lines = [f"{name} = {fmt(values.params[name], 4)}" if name in values.params else name]
    if name in values.grads:
        lines.append(f"grad {fmt(values.grads[name], 4)}")
    return lines


def _weight_names(model, k):
    """Weight names of layer k (row-major: unit j, input i), or None (a parameter-free layer)."""
    wp, _ = model.layer_params(k)
    return None if wp is None else wp.scalar_names


def _bias_name(model, k, r):
    """The scalar name of unit r's bias in layer k (shared: the layer's one bias), or None."""
    if k is None:
        return None
    _, bp = model.layer_params(k)
    if bp is None:
        return None
    return bp.scalar_names[0] if bp.shape == () else bp.scalar_names[r]


def diagram(model, values=None):
    """(SVG text, TikZ text) of a Network; with ``values`` (a Values) the numbers are drawn too."""
    layout = _layout(model, values)
    return _svg(*layout), _tikz(*layout)


COLORS = {"edge": "#1a4f8b", "value": "#333", "bias": "#8b1a1a"}


def _svg(cols, pos, size, edges, labels):
    w, h = size
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h:.0f}" viewBox="0 0 {w} {h:.0f}" '
           'font-family="sans-serif" font-size="12" role="img" aria-label="network diagram">']
    out += [f'<line x1="{p[0]:.0f}" y1="{p[1]:.1f}" x2="{q[0]:.0f}" y2="{q[1]:.1f}" stroke="#888"/>' for p, q in edges]
    for ci, (title, names, n, _) in enumerate(cols):
        out.append(f'<text x="{pos[ci, 0][0]}" y="25" text-anchor="middle" font-weight="bold">{escape(title)}</text>')
        for r in range(len(names) if names else 1):
            x, y = pos[ci, r]
            if names:
                out.append(f'<circle cx="{x}" cy="{y:.1f}" r="{R}" fill="#f3f6fb" stroke="#333"/>')
                out.append(f'<text x="{x}" y="{y + 4:.1f}" text-anchor="middle">{escape(names[r])}</text>')
            else:
                out.append(f'<rect x="{x - 35}" y="{y - 60:.1f}" width="70" height="120" fill="#f3f6fb" stroke="#333"/>')
                out.append(f'<text x="{x}" y="{y + 4:.1f}" text-anchor="middle">{n} units</text>')
    for lab in labels:
        top = lab.y - LINE * (len(lab.lines) - 1) / 2 + 4
        spans = "".join(f'<tspan x="{lab.x:.0f}" y="{top + k * LINE:.1f}">{escape(s)}</tspan>' for k, s in enumerate(lab.lines))
        turn = f' transform="rotate({lab.angle:.1f} {lab.x:.0f} {lab.y:.1f})"' if lab.angle else ""
        out.append(f'<text text-anchor="middle" font-size="11" fill="{COLORS[lab.kind]}" stroke="white" stroke-width="3" '
                   f'paint-order="stroke"{turn}>{spans}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _tikz(cols, pos, size, edges, labels):
    sc = 1 / 40

    def at(x, y):
        return f"({x * sc:.2f},{y * sc:.2f})"

    out = [r"\begin{tikzpicture}[x=1cm,y=-1cm,every node/.style={font=\small}]"]
    out += [rf"\draw[->,gray] {at(*p)} -- {at(*q)};" for p, q in edges]
    for ci, (title, names, n, _) in enumerate(cols):
        out.append(rf"\node[font=\small\bfseries] at {at(pos[ci, 0][0], 12)} {{{latex(title)}}};")
        for r in range(len(names) if names else 1):
            label = latex(names[r]) if names else f"{n} units"
            shape = "circle,minimum size=1.1cm" if names else "rectangle,minimum width=1.75cm,minimum height=3cm"
            out.append(rf"\node[draw,{shape},fill=blue!5] at {at(*pos[ci, r])} {{{label}}};")
    for lab in labels:
        text = r"\\".join(latex(s) for s in lab.lines)
        color = {"edge": "blue!60!black", "value": "black", "bias": "red!50!black"}[lab.kind]
        turn = f",rotate={-lab.angle:.1f}" if lab.angle else ""
        out.append(rf"\node[fill=white,inner sep=0.5pt,align=center,font=\scriptsize,text={color}{turn}] at {at(lab.x, lab.y)} "
                   rf"{{{text}}};")
    out.append(r"\end{tikzpicture}")
    return "\n".join(out)
