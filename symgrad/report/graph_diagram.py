"""The drawing of a graph network: one box per layer (name, kind, shape), arrows from each layer to those that read it.

Boxes stand in columns by depth (the longest path from the input x), so a fork shows as one box with
several arrows leaving it and a merge (add, concat) as one box with several arrows entering it; an
arrow that skips columns (a residual connection) is drawn as an arc above the boxes it passes.
"""

from symgrad.escape import html as escape
from symgrad.escape import latex
from symgrad.ops.tensor import show

DX, DY, W, H, TOP = 160, 80, 128, 54, 30
GAP = DX - W  # the free space between columns
FITS = 18  # characters of a label that fit in a box at 12px; longer ones ("avgpool2d, leaky_relu") are squeezed in


def boxes(model):
    """[(name, [label lines], column, row)] for the input and every layer, the edges [(from, to)], the row count."""
    depth = {"x": 0}
    for node in model.nodes:
        depth[node.name] = 1 + max(depth[s] for s in node.inputs)
    rows = {0: 1}
    out = [("x", ["x", "input", show(model.input_shape)], 0, 0)]
    for node in model.nodes:
        col = depth[node.name]
        act = node.activation
        kind = node.kind + (f", {act.name}" if act is not None and act.name != "identity" else "")
        out.append((node.name, [node.name, kind, show(node.shape)], col, rows.get(col, 0)))
        rows[col] = rows.get(col, 0) + 1
    edges = [(s, n.name) for n in model.nodes for s in n.inputs]
    return out, edges, max(rows.values())


def graph_diagram(model):
    """(SVG text, TikZ text) of a GraphNetwork."""
    items, edges, height = boxes(model)
    place = {name: (col, row) for name, _, col, row in items}
    pos = {name: (30 + col * DX, TOP + row * DY) for name, (col, row) in place.items()}  # top-left corners
    paths = [_route(pos, place, a, b) for a, b in edges]
    width = 60 + max(c for c, _ in place.values()) * DX + W
    return _svg(items, paths, pos, width, TOP + height * DY), _tikz(items, paths, pos)


def _route(pos, place, a, b):
    """The edge a -> b as points and curves: ("M", p), ("L", p), ("C", c1, c2, p).

    Between neighbouring columns a straight line; an edge that skips columns leaves its box, runs along the
    gap above the lower of the two rows (above its own row when both are the same) and enters the target box.
    """
    (x1, y1), (x2, y2) = pos[a], pos[b]
    x1, y1, y2 = x1 + W, y1 + H / 2, y2 + H / 2
    if place[b][0] - place[a][0] <= 1:
        return [("M", (x1, y1)), ("L", (x2, y2))]
    lane = TOP + max(place[a][1], place[b][1]) * DY - (DY - H) / 2
    return [("M", (x1, y1)), ("C", (x1 + GAP / 2, y1), (x1 + GAP / 2, lane), (x1 + GAP, lane)),
            ("L", (x2 - GAP, lane)), ("C", (x2 - GAP / 2, lane), (x2 - GAP / 2, y2), (x2, y2))]


def _svg(items, paths, pos, w, h):
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
           'style="max-width:100%;height:auto" font-family="sans-serif" font-size="12" role="img" '
           'aria-label="graph network diagram">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>']
    for path in paths:
        d = " ".join(f"{op} " + ", ".join(f"{x:g} {y:g}" for x, y in pts) for op, *pts in path)
        out.append(f'<path d="{d}" fill="none" stroke="#555" marker-end="url(#arrow)"/>')
    for name, lines, _, _ in items:
        x, y = pos[name]
        out.append(f'<rect x="{x}" y="{y}" width="{W}" height="{H}" rx="6" fill="#f3f6fb" stroke="#333"/>')
        for k, text in enumerate(lines):
            weight = ' font-weight="bold"' if k == 0 else ""
            fit = f' textLength="{W - 8}" lengthAdjust="spacingAndGlyphs"' if len(text) > FITS else ""
            out.append(f'<text x="{x + W / 2:g}" y="{y + 16 + 15 * k}" text-anchor="middle"{weight}{fit}>'
                       f'{escape(text)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _tikz(items, paths, pos):
    sc = 1 / 40

    def pt(p):
        return f"({p[0] * sc:.2f},{p[1] * sc:.2f})"

    out = [r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",  # shrunk to the text width
           r"\begin{tikzpicture}[x=1cm,y=-1cm,every node/.style={font=\small}]"]
    for name, lines, _, _ in items:
        x, y = pos[name]
        label = r"\textbf{%s}\\ %s\\ %s" % tuple(latex(t) for t in lines)
        out.append(rf"\node[draw,rounded corners,fill=blue!5,align=center,minimum width={W * sc:.2f}cm,"
                   rf"minimum height={H * sc:.2f}cm] at {pt((x + W / 2, y + H / 2))} {{{label}}};")
    for path in paths:
        parts = []
        for op, *pts in path:
            if op == "M":
                parts.append(pt(pts[0]))
            elif op == "L":
                parts.append("-- " + pt(pts[0]))
            else:
                parts.append(f".. controls {pt(pts[0])} and {pt(pts[1])} .. {pt(pts[2])}")
        out.append(r"\draw[->,gray] " + " ".join(parts) + ";")
    out.append(r"\end{tikzpicture}}")
    return "\n".join(out)
