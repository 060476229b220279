"""NumPy versions of the metrics' shifts, for tests that recompute reported numbers
from a model's predictions."""

import numpy as np


def shifted(images, shifts, mode="circular"):
    """`[N * S, H, W, C]`: image n of `images` shifted by each `(dy, dx)` of
    `shifts[n]` (`[N, S, 2]`, entries in `[0, P]`): the window at `(P - dy, P - dx)`
    of the image padded by P on the top and left, circularly ("circular") or by
    reflection ("crop", the metrics' default padding)."""
    pad = int(np.max(shifts))
    padded = np.pad(
        images,
        [(0, 0), (pad, 0), (pad, 0), (0, 0)],
        mode="wrap" if mode == "circular" else "reflect",
    )
    h, w = images.shape[1:3]
    return np.stack(
        [
            padded[n, pad - dy : pad - dy + h, pad - dx : pad - dx + w]
            for n, image_shifts in enumerate(shifts)
            for dy, dx in image_shifts
        ]
    )


def predictions(model, images, shifts, mode="circular"):
    """`[N, S, outputs]`: the model's outputs on the shifted images."""
    out = model.predict(shifted(images, shifts, mode), verbose=0)
    return out.reshape(*np.shape(shifts)[:2], -1)


def grid(count, max_shift):
    """`[count, max_shift**2, 2]`: every shift in `[0, max_shift)**2`, per image."""
    shifts = np.stack(np.meshgrid(range(max_shift), range(max_shift)), -1)
    return np.broadcast_to(shifts.reshape(1, -1, 2), (count, max_shift**2, 2))
