"""Make `pip check` accept the installed decord 0.6.0: its wheel's metadata names the wrong tag.

decord's wheels are named ``decord-0.6.0-py3-none-<platform>.whl`` (one wheel for every Python 3:
the library is loaded with ctypes, there is no extension module), but the ``WHEEL`` file inside
says ``Tag: cp36-cp36m-<platform>``, so `pip check` reports "decord 0.6.0 is not supported on
this platform" under any Python but 3.6. This rewrites the installed ``WHEEL`` to the tag its
file name carries (``py3-none-<platform>``) and updates that file's line in ``RECORD``. It changes
no code; it is idempotent; it does nothing where decord is not installed.

    python scripts/fix_decord_tag.py        # prints what it changed
"""

from __future__ import annotations

import base64
import hashlib
import re
import sys
from pathlib import Path

_TAG = re.compile(r"^Tag: (cp3\d+)-(cp3\d+m?)-(\S+)$", re.M)


def fix(dist_info: Path) -> list[str]:
    """Rewrite the ``Tag:`` lines of ``dist_info/WHEEL`` to ``py3-none-<platform>`` and the
    ``WHEEL`` line of ``RECORD``; the tags changed, [] when there was nothing to do."""
    wheel = dist_info / "WHEEL"
    text = wheel.read_text()
    changed = [m.group(0)[5:] for m in _TAG.finditer(text)]
    if not changed:
        return []
    new = _TAG.sub(lambda m: f"Tag: py3-none-{m.group(3)}", text)
    wheel.write_text(new)
    data = new.encode()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record = dist_info / "RECORD"
    if record.is_file():
        name = f"{dist_info.name}/WHEEL"
        lines = [f"{name},sha256={digest},{len(data)}" if ln.split(",")[0] == name else ln
                 for ln in record.read_text().splitlines()]
        record.write_text("\n".join(lines) + "\n")
    return changed


def main() -> int:
    from importlib import metadata

    try:
        dist = metadata.distribution("decord")
    except metadata.PackageNotFoundError:
        print("decord is not installed: nothing to fix")
        return 0
    dist_info = Path(dist.locate_file(f"decord-{dist.version}.dist-info"))
    changed = fix(dist_info)
    print(f"{dist_info}: tag {', '.join(changed)} -> py3-none-*" if changed
          else f"{dist_info}: tags already fine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
