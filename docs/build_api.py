"""Build the API reference (HTML, from the docstrings) with pdoc, offline: python docs/build_api.py [OUT].

Google-style sections (``Args:``, ``Returns:``, ``Raises:``) are parsed; modules and members whose names start
with ``_``, and members whose docstring says ``@private`` (internal methods other modules of the package call),
are left out.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys


def modules() -> list[str]:
    import converters
    import qdrant_compat

    names = ["qdrant_compat", "converters"]
    for pkg in (qdrant_compat, converters):
        for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            if not m.name.rsplit(".", 1)[-1].startswith("_") and m.name not in names:
                names.append(m.name)
    return names


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "site"
    sys.exit(subprocess.call([sys.executable, "-m", "pdoc", "-d", "google", "-o", out, *modules()], stderr=subprocess.DEVNULL))
