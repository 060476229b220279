"""NumPy references of the polyphase layers, written from the definitions with
loops and np.pad (channels_last), independently of keras_shiftinv.ops."""

import numpy as np

from tests.layers.reference import NP_PAD_MODE, blur_pool


def pairs(strides):
    return (strides, strides) if isinstance(strides, int) else tuple(strides)


def pad_to_multiple(x, strides, pad_mode):
    sy, sx = pairs(strides)
    _, h, w, _ = x.shape
    widths = ((0, 0), (0, -h % sy), (0, -w % sx), (0, 0))
    return np.pad(x, widths, NP_PAD_MODE[pad_mode])


def offset_subsample(x, strides, pad_mode="zero"):
    sy, sx = pairs(strides)
    x = pad_to_multiple(x, strides, pad_mode)
    n, h, w, c = x.shape
    out = np.zeros((n, h // sy, w // sx, c * sy * sx), x.dtype)
    for ch in range(c):
        for dy in range(sy):
            for dx in range(sx):
                out[..., ch * sy * sx + dy * sx + dx] = x[:, dy::sy, dx::sx, ch]
    return out


def conv2d_same(x, kernel, pad_mode):
    """Stride-1 "same" convolution (cross-correlation) with padding
    (k - 1) // 2 before and k // 2 after, filled with `pad_mode`."""
    kh, kw, _, cout = kernel.shape
    n, h, w, _ = x.shape
    xp = np.pad(
        x.astype(float),
        ((0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)),
        NP_PAD_MODE[pad_mode],
    )
    out = np.zeros((n, h, w, cout))
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("nhwc,cf->nhwf", xp[:, i : i + h, j : j + w], kernel[i, j])
    return out


def group_conv(x, kernel, groups, pad_mode):
    """Grouped convolution, one group at a time (Keras kernel layout)."""
    cin = x.shape[-1] // groups
    cout = kernel.shape[-1] // groups
    return np.concatenate(
        [
            conv2d_same(
                x[..., g * cin : (g + 1) * cin],
                kernel[..., g * cout : (g + 1) * cout],
                pad_mode,
            )
            for g in range(groups)
        ],
        axis=-1,
    )


def conv3d(x, kernel, pad_mode):
    """x (n, depth, h, w, c), kernel (kd, kh, kw, c, f): valid along the depth,
    "same" spatially; every output element summed explicitly."""
    kd, kh, kw, _, f = kernel.shape
    n, depth, h, w, _ = x.shape
    xp = np.pad(
        x.astype(float),
        ((0, 0), (0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)),
        NP_PAD_MODE[pad_mode],
    )
    out = np.zeros((n, depth - kd + 1, h, w, f))
    for d in range(depth - kd + 1):
        for a in range(kd):
            for i in range(kh):
                for j in range(kw):
                    window = xp[:, d + a, i : i + h, j : j + w]
                    out[:, d] += np.einsum("nhwc,cf->nhwf", window, kernel[a, i, j])
    return out


def norms(x, strides, criterion):
    """(n, S) norms of the polyphase components, index dy * sx + dx."""
    sy, sx = pairs(strides)
    fn = {
        "l2": lambda c: np.sqrt((c.astype(float) ** 2).sum()),
        "l1": lambda c: np.abs(c.astype(float)).sum(),
        "linf": lambda c: np.abs(c).max(),
    }[criterion]
    return np.array(
        [
            [fn(sample[dy::sy, dx::sx]) for dy in range(sy) for dx in range(sx)]
            for sample in x
        ]
    )


def polyphase_down(x, strides, criterion, filt_size, pad_mode):
    """Returns (y, index) of adaptive polyphase sampling."""
    sy, sx = pairs(strides)
    x = blur_pool(x, filt_size, 1, pad_mode)
    x = pad_to_multiple(x, strides, pad_mode)
    index = norms(x, strides, criterion).argmax(axis=1)
    y = np.stack(
        [s[i // sx :: sy, i % sx :: sx] for s, i in zip(x, index, strict=True)]
    )
    return y, index


def shift_invariant_down(x, kernel, pointwise, bias, branch, strides, order, pad_mode):
    """The module of the paper, stage by stage, from the layer's weights."""
    sy, sx = pairs(strides)
    c = x.shape[-1]
    x = pad_to_multiple(x, strides, pad_mode)
    if order == "aps":
        index = norms(x, strides, "l2").argmax(axis=1)
        x = np.stack(
            [
                np.roll(s, (-(i // sx), -(i % sx)), axis=(0, 1))
                for s, i in zip(x, index, strict=True)
            ]
        )
    stacked = offset_subsample(x, strides)
    if branch == "group":
        features = group_conv(stacked, kernel, c, pad_mode)
    else:
        n, h, w, _ = stacked.shape
        volume = stacked.reshape(n, h, w, c, 4).transpose(0, 4, 1, 2, 3)
        out = conv3d(volume, kernel, pad_mode)  # (n, 2, h, w, filters)
        features = out.transpose(0, 2, 3, 4, 1).reshape(n, h, w, -1)
    y = np.einsum("nhwl,lf->nhwf", features, pointwise[0, 0])
    return y if bias is None else y + bias
