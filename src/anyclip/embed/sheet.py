"""An HTML contact sheet of search hits: one self-contained file, thumbnails embedded as JPEG data URIs.

Example:
    >>> html = contact_sheet_html("a red circle", [0.31], [{"id": 0, "path": "missing.png"}])
    >>> "a red circle" in html and "0.310" in html
    True
"""

from __future__ import annotations

import base64
import html
import io
import os
import tarfile
from pathlib import Path

THUMB = 192


def _image_bytes(name: str) -> bytes | None:
    if os.path.isfile(name):
        return Path(name).read_bytes()
    shard, sep, key = name.rpartition(":")  # a WebDataset sample: shard.tar:key
    if sep and shard.endswith(".tar") and os.path.isfile(shard):
        from ..data.common import is_image_file
        with tarfile.open(shard, "r:") as tar:
            for member in tar:
                folder, _, base = member.name.rpartition("/")
                stem = base.partition(".")[0]
                if member.isfile() and (f"{folder}/{stem}" if folder else stem) == key and is_image_file(base):
                    return tar.extractfile(member).read()
    return None


def thumbnail_uri(name: str, size: int = THUMB) -> str | None:
    """A ``data:image/jpeg;base64,...`` thumbnail of an image path (or ``shard.tar:key``), ``None`` if unreadable.

    Example:
        >>> thumbnail_uri("missing.jpg") is None
        True
    """
    from ..transforms.host import load_image
    data = _image_bytes(name)
    if data is None:
        return None
    try:
        image = load_image(data)
        image.thumbnail((size, size))
        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="JPEG", quality=85)
    except (ValueError, OSError):  # load_image's ImageLoadError (a bomb too) is a ValueError
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def contact_sheet_html(query: str, scores, hits: list[dict]) -> str:
    """The page: the query, then one cell per hit (thumbnail or text, score, path)."""
    cells = []
    for rank, (score, hit) in enumerate(zip(scores, hits), 1):
        name = str(hit.get("path", hit.get("text", hit.get("id"))))
        uri = thumbnail_uri(name) if "path" in hit else None
        body = f'<img src="{uri}" alt="{html.escape(name)}">' if uri else \
            f'<div class="txt">{html.escape(name)}</div>'
        cells.append(f'<figure>{body}<figcaption>#{rank} &middot; {float(score):.3f}<br>'
                     f'<span>{html.escape(name)}</span></figcaption></figure>')
    return ("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>anyclip search</title><style>"
            "body{font-family:sans-serif;margin:1em}figure{display:inline-block;width:200px;margin:6px;"
            "vertical-align:top}img{max-width:192px;max-height:192px}figcaption{font-size:12px}"
            "span{color:#666;word-break:break-all}.txt{width:192px;min-height:60px;border:1px solid #ccc;"
            "padding:4px;font-size:13px}</style></head><body>\n"
            f"<h2>{html.escape(query)}</h2>\n" + "\n".join(cells) + "\n</body></html>\n")


__all__ = ["contact_sheet_html", "thumbnail_uri"]
