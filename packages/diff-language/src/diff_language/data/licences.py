"""Licence metadata of installed Python distributions, for the Python-source corpus.

Each ``.py`` file of site-packages belongs to the distribution whose ``RECORD`` lists it; its licence is read
from that distribution's metadata, in this order: the SPDX ``License-Expression`` (PEP 639), the
``License :: OSI Approved :: ...`` trove classifiers, the free-text ``License`` field. The result is one
licence name and a *family*: ``permissive`` (MIT, BSD, Apache, PSF, ISC, ...), ``copyleft`` (GPL, LGPL,
AGPL, MPL, EPL) or ``unknown`` (no recognisable statement). The CPython standard library is under the PSF
License Agreement (``PSF-2.0``, permissive).

This is metadata, not legal advice: a distribution may hold files under other terms than it declares.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

__all__ = ["PERMISSIVE", "Licence", "distribution_licence", "licence_family", "site_packages_owners"]

PERMISSIVE = (
    "MIT",
    "BSD",
    "Apache",
    "PSF",
    "Python",
    "ISC",
    "Unlicense",
    "Zlib",
    "HPND",
    "0BSD",
    "CC0",
    "MIT-CMU",
    "CNRI-Python",
)
"""Names (or prefixes of SPDX identifiers) of permissive licences."""
_COPYLEFT = ("GPL", "LGPL", "AGPL", "MPL", "Mozilla", "EPL", "Eclipse", "CDDL", "EUPL")
_TEXT_PATTERNS = (  # free-text ``License`` fields: (regex, name), first match wins
    (r"\bapache\b", "Apache-2.0"),
    (r"\bmit\b", "MIT"),
    (r"\bbsd\b", "BSD"),
    (r"python software foundation|\bpsf\b", "PSF-2.0"),
    (r"\bisc\b", "ISC"),
    (r"unlicense", "Unlicense"),
    (r"\blgpl|lesser general public", "LGPL"),
    (r"\bagpl|affero", "AGPL"),
    (r"\bgpl|general public license", "GPL"),
    (r"\bmpl\b|mozilla", "MPL-2.0"),
)


@dataclass(frozen=True)
class Licence:
    """A distribution's declared licence: ``name`` (SPDX-like), ``family`` and where it was read (``source``)."""

    name: str
    family: str
    source: str


def licence_family(name: str) -> str:
    """``permissive``, ``copyleft`` or ``unknown`` for a licence name or SPDX expression.

    An ``OR`` expression is permissive when one alternative is; an ``AND`` expression when all are.
    """
    if " OR " in name:
        families = {licence_family(part.strip("() ")) for part in name.split(" OR ")}
        return "permissive" if "permissive" in families else min(families)
    if " AND " in name:
        families = {licence_family(part.strip("() ")) for part in name.split(" AND ")}
        return families.pop() if len(families) == 1 else ("copyleft" if "copyleft" in families else "unknown")
    if any(name.upper().startswith(c.upper()) or f" {c.upper()}" in name.upper() for c in _COPYLEFT):
        return "copyleft"
    if any(name.upper().startswith(p.upper()) for p in PERMISSIVE):
        return "permissive"
    return "unknown"


def _classifier_name(classifier: str) -> str:
    tail = classifier.split("::")[-1].strip()
    table = {
        "MIT License": "MIT",
        "BSD License": "BSD",
        "Apache Software License": "Apache-2.0",
        "Python Software Foundation License": "PSF-2.0",
        "ISC License (ISCL)": "ISC",
        "The Unlicense (Unlicense)": "Unlicense",
        "zlib/libpng License": "Zlib",
        "Historical Permission Notice and Disclaimer (HPND)": "HPND",
        "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    }
    if tail in table:
        return table[tail]
    if "Lesser General Public" in tail or "LGPL" in tail:
        return "LGPL"
    if "Affero" in tail:
        return "AGPL"
    if "General Public License" in tail or "GPL" in tail:
        return "GPL"
    return tail


def distribution_licence(dist: metadata.Distribution) -> Licence:
    """The licence ``dist``'s metadata declares (expression, then classifiers, then the ``License`` text)."""
    meta = dist.metadata
    expression = (meta.get("License-Expression") or "").strip()
    if expression:
        return Licence(expression, licence_family(expression), "License-Expression")
    names = [
        _classifier_name(c)
        for c in meta.get_all("Classifier") or []
        if c.startswith("License :: OSI Approved")
    ]
    names = [n for n in names if n != "OSI Approved"]
    if names:
        name = " OR ".join(sorted(set(names)))
        return Licence(name, licence_family(name), "classifier")
    text = (meta.get("License") or "").strip()
    first = text.lower()[:400]
    for pattern, name in _TEXT_PATTERNS:
        if re.search(pattern, first):
            return Licence(name, licence_family(name), "License")
    return Licence(text.splitlines()[0][:80] if text else "unknown", "unknown", "License" if text else "none")


def site_packages_owners(site_dir: Path) -> dict[Path, tuple[str, str, Licence]]:
    """Every ``.py`` file of ``site_dir`` that an installed distribution's RECORD lists, resolved, mapped to
    ``(distribution name, version, licence)``."""
    owners: dict[Path, tuple[str, str, Licence]] = {}
    for dist in sorted(metadata.distributions(path=[str(site_dir)]), key=lambda d: d.metadata["Name"] or ""):
        files = dist.files or []
        py = [f for f in files if f.suffix == ".py"]
        if not py:
            continue
        licence = distribution_licence(dist)
        name, version = dist.metadata["Name"] or "unknown", dist.version
        for f in py:
            path = Path(str(dist.locate_file(f))).resolve()
            owners.setdefault(path, (name, version, licence))
    return owners
