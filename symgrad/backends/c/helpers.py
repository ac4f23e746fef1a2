"""The static C helpers (templates/c/symgrad_math.h, symgrad_gemm.h): the sections a generated source calls.

A section runs from a comment ``@helper <name> [needs <name> ...]`` to a comment ``@end``; a helper comes after
the helpers it needs, so the file's order is a dependency order.
"""

import functools
import re

from symgrad.render import template_text

MATH = "c/symgrad_math.h"
GEMM = "c/symgrad_gemm.h"
_SECTION = re.compile(r"^/\* @helper (\w+)((?: needs(?: \w+)+)?) \*/\n(.*?)^/\* @end \*/$", re.M | re.S)


@functools.cache
def sections(name):
    """{helper: (the helpers it needs, its C text)} of templates/<name>, in file order."""
    out = {}
    for m in _SECTION.finditer(template_text(name)):
        needs = tuple(m.group(2).split()[1:])
        missing = [n for n in needs if n not in out]
        if missing:
            raise ValueError(f"{name}: {m.group(1)} needs {', '.join(missing)}, which must come before it")
        out[m.group(1)] = (needs, m.group(3).rstrip("\n"))
    return out


def select(used):
    """({helper: C text} of symgrad_math.h, the same of symgrad_gemm.h): the helpers in ``used`` and those they
    need, in file order."""
    unknown = set(used) - set(sections(MATH)) - set(sections(GEMM))
    if unknown:
        raise KeyError(f"no static C helper {', '.join(sorted(unknown))} in {MATH} or {GEMM}")
    return _closure(MATH, used), _closure(GEMM, used)


def _closure(name, used):
    """{helper: C text} of the helpers of templates/<name> in ``used`` and those they need, in file order."""
    table = sections(name)
    wanted = set(used) & set(table)
    for helper in reversed(table):  # a helper's needs come before it: one backward pass closes the set
        if helper in wanted:
            wanted.update(table[helper][0])
    return {helper: text for helper, (_, text) in table.items() if helper in wanted}
