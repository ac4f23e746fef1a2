"""Every error type symgrad raises: bad specs (file, key, line), refused expressions, missing tools."""


def printable(text):
    """``text`` with control and other unprintable characters written as escapes (\\x1b, \\n, \\u2028)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


class SpecError(ValueError):
    """A problem in a spec: ``file: key (line N): message``."""

    def __init__(self, message, key=None, file=None, line=None):
        self.message = message
        self.key = key
        self.file = file
        self.line = line
        super().__init__(self._text())

    def _text(self):
        where = [str(self.file)] if self.file else []
        if self.key:
            what = f"option {self.key}" if str(self.key).startswith("--") else f"key '{self.key}'"
            where.append(what + (f" (line {self.line})" if self.line else ""))
        elif self.line:
            where.append(f"line {self.line}")
        return printable((": ".join(where) + ": " if where else "") + self.message)

    def located(self, file=None, line=None):
        """The same error with the file (and line) filled in."""
        return SpecError(self.message, self.key, self.file or file, self.line or line)

    def __str__(self):
        return self._text()


class ExpressionError(ValueError):
    """An expression (activation, loss, output) that is refused, with the reason; the spec loader locates it."""


class ToolError(RuntimeError):
    """A missing external tool (compiler, pdflatex) or a failed build."""
