"""The static C helpers (templates/c/symgrad_math.h, symgrad_gemm.h, symgrad_conv.h, symgrad_rnn.h): the sections a
generated source calls.

A section runs from a comment ``@helper <name> [needs <name> ...]`` to a comment ``@end``; a helper comes after
the helpers it needs (in its own file, or in a file listed before it in FILES), so the files' order is a
dependency order.
"""

import functools
import re

from symgrad.render import template_text

MATH = "c/symgrad_math.h"
GEMM = "c/symgrad_gemm.h"
CONV = "c/symgrad_conv.h"
RNN = "c/symgrad_rnn.h"
FILES = (MATH, GEMM, CONV, RNN)
_SECTION = re.compile(r"^/\* @helper (\w+)((?: needs(?: \w+)+)?) \*/\n(.*?)^/\* @end \*/$", re.M | re.S)


@functools.cache
def sections(name):
    """{helper: (the helpers it needs, its C text)} of templates/<name>, in file order."""
    before = set()
    for earlier in FILES[:FILES.index(name)] if name in FILES else ():
        before.update(sections(earlier))
    out = {}
    for m in _SECTION.finditer(template_text(name)):
        needs = tuple(m.group(2).split()[1:])
        missing = [n for n in needs if n not in out and n not in before]
        if missing:
            raise ValueError(f"{name}: {m.group(1)} needs {', '.join(missing)}, which must come before it")
        out[m.group(1)] = (needs, m.group(3).rstrip("\n"))
    return out


def select(used):
    """({helper: C text} of symgrad_math.h, the same of symgrad_gemm.h, of symgrad_conv.h, of symgrad_rnn.h): the
    helpers in ``used`` and those they need, in file order."""
    tables = [sections(name) for name in FILES]
    unknown = set(used) - set().union(*tables)
    if unknown:
        raise KeyError(f"no static C helper {', '.join(sorted(unknown))} in {', '.join(FILES)}")
    wanted = set(used)
    for table in reversed(tables):  # a helper's needs come before it: one backward pass closes the set
        for helper in reversed(table):
            if helper in wanted:
                wanted.update(table[helper][0])
    return tuple({helper: text for helper, (_, text) in table.items() if helper in wanted} for table in tables)
