"""A loss curve as a PNG, with no plotting library: white canvas, axes with ticks, a blue polyline."""

import struct
import zlib

import numpy as np

FONT = {  # 3x5 digits and signs, rows top to bottom
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001001001",
    "8": "111101111101111", "9": "111101111001111", ".": "000000000000010", "-": "000000111000000",
    "e": "000111101110011", "+": "000010111010000", " ": "000000000000000", "(": "010100100100010",
    ")": "010001001001010", "p": "000111101111100", "o": "000111101101111", "c": "000111100100111",
    "h": "100100111101101", "l": "110010010010111", "s": "000111110011111", "g": "000111101111001",
}


def loss_png(losses, width=640, height=400):
    """PNG bytes of loss against epoch (log scale when the loss spans more than two decades)."""
    losses = np.asarray(losses, dtype=float)
    img = np.full((height, width, 3), 255, dtype=np.uint8)
    left, right, top, bottom = 84, width - 20, 34, height - 40
    positive = bool(np.all(losses > 0))
    log = positive and losses.max() / losses.min() > 100
    vals = np.log10(losses) if log else losses
    lo, hi = float(vals.min()), float(vals.max())
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    n = len(losses)
    xs = left + (np.arange(n) / max(n - 1, 1)) * (right - left)
    ys = bottom - (vals - lo) / (hi - lo) * (bottom - top)
    black, grey, blue = (0, 0, 0), (200, 200, 200), (31, 119, 180)
    for f in np.linspace(0, 1, 5):
        y = int(round(bottom - f * (bottom - top)))
        img[y, left:right + 1] = grey
        img[y, left - 5:left] = black
        label = 10 ** (lo + f * (hi - lo)) if log else lo + f * (hi - lo)
        _text(img, f"{label:.2e}", left - 8, y - 2, align="right")
        x = int(round(left + f * (right - left)))
        img[bottom:bottom + 5, x] = black
        _text(img, str(int(round(1 + f * (n - 1)))), x, bottom + 9, align="center")
    _text(img, "loss (log)" if log else "loss", left, top - 20, align="center")
    _text(img, "epoch", (left + right) // 2, bottom + 27, align="center")
    img[top:bottom + 1, left] = black
    img[bottom, left:right + 1] = black
    for i in range(max(n - 1, 0)):
        _line(img, xs[i], ys[i], xs[i + 1], ys[i + 1], blue)
    if n == 1:
        img[int(ys[0]) - 1:int(ys[0]) + 2, int(xs[0]) - 1:int(xs[0]) + 2] = blue
    return _png(img)


def _line(img, x0, y0, x1, y1, color):
    steps = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
    for s in np.linspace(0, 1, steps + 1):
        x, y = int(round(x0 + s * (x1 - x0))), int(round(y0 + s * (y1 - y0)))
        img[max(y - 1, 0):y + 1, max(x - 1, 0):x + 1] = color


def _text(img, text, x, y, align="left", scale=2):
    w = len(text) * 4 * scale
    x0 = x - w if align == "right" else x - w // 2 if align == "center" else x
    for i, ch in enumerate(text):
        bits = FONT.get(ch, FONT[" "])
        for r in range(5):
            for c in range(3):
                if bits[3 * r + c] == "1":
                    px, py = x0 + (4 * i + c) * scale, y + r * scale - 4
                    if 0 <= py and py + scale <= img.shape[0] and 0 <= px and px + scale <= img.shape[1]:
                        img[py:py + scale, px:px + scale] = 0


def _png(img):
    """Encode an (h, w, 3) uint8 array as PNG bytes (8-bit RGB, no filtering)."""
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
