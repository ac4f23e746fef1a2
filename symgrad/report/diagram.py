"""The network drawing: neurons in columns, edges labelled with weight names (SVG and TikZ).

Layers with more than MAX_UNITS units are drawn as one box labelled with their size.
"""

from symgrad.escape import html as escape
from symgrad.escape import latex

MAX_UNITS = 8
DX, DY, R = 170, 70, 22


def _columns(model):
    """[(title, [neuron labels] or None for a box, size)] from the inputs to the outputs."""
    cols = [("input", list(model.inputs) if model.n_inputs <= MAX_UNITS else None, model.n_inputs)]
    for k, layer in enumerate(model.layers):
        last = k == len(model.layers) - 1
        names = list(model.outputs) if last else list(layer.neurons)
        title = f"{layer.name} ({layer.kind if getattr(layer, 'is_layer', False) else layer.activation.name})"
        cols.append((title, names if layer.units <= MAX_UNITS else None, layer.units))
    return cols


def _positions(cols):
    height = max(len(c[1]) if c[1] else 3 for c in cols)
    pos = []
    for ci, (_, names, n) in enumerate(cols):
        count = len(names) if names else 1
        top = (height - count) * DY / 2 + 60
        pos.append([(60 + ci * DX, top + r * DY) for r in range(count)])
    return pos, height


def _edge_labels(model, ci):
    """Weight names of the edges into column ci (row-major: unit j, input i), or None (a parameter-free layer)."""
    wp, _ = model.layer_params(ci - 1)
    return None if wp is None else wp.scalar_names


def diagram(model):
    """(SVG text, TikZ text) of a Network."""
    cols = _columns(model)
    pos, height = _positions(cols)
    return _svg(model, cols, pos, height), _tikz(model, cols, pos)


def _svg(model, cols, pos, height):
    w = 120 + (len(cols) - 1) * DX
    h = 100 + height * DY
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
           'font-family="sans-serif" font-size="12" role="img" aria-label="network diagram">']
    for ci in range(1, len(cols)):
        names = _edge_labels(model, ci)
        small = cols[ci][1] and cols[ci - 1][1] and names
        for j, (x2, y2) in enumerate(pos[ci]):
            for i, (x1, y1) in enumerate(pos[ci - 1]):
                out.append(f'<line x1="{x1 + R}" y1="{y1}" x2="{x2 - R}" y2="{y2}" stroke="#888"/>')
                if small:
                    t = 0.3 if j % 2 == 0 else 0.55
                    lx, ly = x1 + R + (x2 - x1 - 2 * R) * t, y1 + (y2 - y1) * t - 3
                    out.append(f'<text x="{lx:.0f}" y="{ly:.0f}" fill="#1a4f8b">{escape(names[j * len(pos[ci - 1]) + i])}</text>')
    for ci, (title, names, n) in enumerate(cols):
        x0 = pos[ci][0][0]
        out.append(f'<text x="{x0}" y="25" text-anchor="middle" font-weight="bold">{escape(title)}</text>')
        for r, (x, y) in enumerate(pos[ci]):
            if names:
                out.append(f'<circle cx="{x}" cy="{y}" r="{R}" fill="#f3f6fb" stroke="#333"/>')
                out.append(f'<text x="{x}" y="{y + 4}" text-anchor="middle">{escape(names[r])}</text>')
            else:
                out.append(f'<rect x="{x - 35}" y="{y - 60}" width="70" height="120" fill="#f3f6fb" stroke="#333"/>')
                out.append(f'<text x="{x}" y="{y + 4}" text-anchor="middle">{n} units</text>')
    out.append("</svg>")
    return "\n".join(out)


def _tikz(model, cols, pos):
    sc = 1 / 40
    out = [r"\begin{tikzpicture}[x=1cm,y=-1cm,every node/.style={font=\small}]"]
    for ci, (title, names, n) in enumerate(cols):
        x0 = pos[ci][0][0] * sc
        out.append(rf"\node[font=\small\bfseries] at ({x0:.2f},0.3) {{{latex(title)}}};")
        for r, (x, y) in enumerate(pos[ci]):
            label = latex(names[r]) if names else f"{n} units"
            shape = "circle,minimum size=0.75cm" if names else "rectangle,minimum width=1.2cm,minimum height=2cm"
            out.append(rf"\node[draw,{shape},fill=blue!5] (n{ci}_{r}) at ({x * sc:.2f},{y * sc:.2f}) {{{label}}};")
    for ci in range(1, len(cols)):
        names = _edge_labels(model, ci)
        small = cols[ci][1] and cols[ci - 1][1] and names
        for j in range(len(pos[ci])):
            for i in range(len(pos[ci - 1])):
                lab = ""
                if small:
                    where = "near start" if j % 2 == 0 else "pos=0.55"
                    lab = rf" node[{where},above,sloped,font=\scriptsize] {{{latex(names[j * len(pos[ci - 1]) + i])}}}"
                out.append(rf"\draw[->,gray] (n{ci - 1}_{i}) --{lab} (n{ci}_{j});")
    out.append(r"\end{tikzpicture}")
    return "\n".join(out)
