"""A contact sheet: one labelled frame per traversal, to look at the conditions."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def contact_sheet(root: Path, frame_fraction: float = 0.33) -> bytes:
    """PNG bytes of a grid (2 columns) with frame ``frame_fraction * N`` of each traversal of ``root``.

    Each tile is labelled with the traversal name and its conditions, drawn
    with PIL's built-in bitmap font (deterministic, no font files needed).
    """
    import io

    from PIL import Image, ImageDraw

    from ..data.native import open_dataset
    ds = open_dataset(root)
    w, h = ds.camera["width"], ds.camera["height"]
    cols = 2
    rows = (len(ds.traversals) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * w, rows * (h + 14)), (0, 0, 0))
    draw = ImageDraw.Draw(sheet)
    for k, name in enumerate(ds.traversals):
        tr = ds.traversal(name)
        i = int(np.clip(round(frame_fraction * (len(tr) - 1)), 0, len(tr) - 1))
        x, y = (k % cols) * w, (k // cols) * (h + 14)
        sheet.paste(Image.fromarray(tr.load_image(i)), (x, y + 14))
        c = tr.conditions
        draw.text((x + 2, y + 1), f"{name} [{tr.role}] {c['time_of_day']}/{c['weather']}/{c['season']} #{i}",
                  fill=(255, 255, 255))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()
