"""Where the data shipped inside the package lives (categories, catalog, groups, samples).

Found through :mod:`importlib.resources`, so it works the same from a wheel, an editable
install and a checkout.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: The package's ``data`` folder (a real directory: edgebnn is never imported from a zip).
PACKAGE_DATA = Path(str(resources.files("edgebnn").joinpath("data")))
#: The sample photos ``edgebnn demo`` classifies.
SAMPLES_DIR = PACKAGE_DATA / "samples"


def read_text(name: str) -> str:
    """A text file from the package's ``data`` folder, e.g. ``read_text("categories.txt")``."""
    return (PACKAGE_DATA / name).read_text("utf-8")
