"""NumPy references written independently of the package (loops and np.pad)."""

import math

import numpy as np

NP_PAD_MODE = {
    "reflect": "reflect",
    "replicate": "edge",
    "zero": "constant",
    "circular": "wrap",
}


def to_last(x, data_format):
    return x if data_format == "channels_last" else np.transpose(x, (0, 2, 3, 1))


def to_format(x, data_format):
    return x if data_format == "channels_last" else np.transpose(x, (0, 3, 1, 2))


def blur_pool(x, filt_size, strides, pad_mode):
    """channels_last reference of BlurPool2D."""
    sy, sx = (strides, strides) if isinstance(strides, int) else strides
    taps = np.array([math.comb(filt_size - 1, i) for i in range(filt_size)], float)
    kernel = np.outer(taps, taps) / taps.sum() ** 2
    before, after = (filt_size - 1) // 2, filt_size - 1 - (filt_size - 1) // 2
    xp = np.pad(
        x.astype(float),
        ((0, 0), (before, after), (before, after), (0, 0)),
        NP_PAD_MODE[pad_mode],
    )
    n, h, w, c = x.shape
    out = np.zeros((n, -(-h // sy), -(-w // sx), c))
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            window = xp[:, i * sy : i * sy + filt_size, j * sx : j * sx + filt_size, :]
            out[:, i, j, :] = np.einsum("nuvc,uv->nc", window, kernel)
    return out


def max_pool_dense(x, pool_size):
    py, px = (pool_size, pool_size) if isinstance(pool_size, int) else pool_size
    n, h, w, c = x.shape
    out = np.full((n, h - py + 1, w - px + 1, c), -np.inf)
    for u in range(py):
        for v in range(px):
            out = np.maximum(out, x[:, u : u + h - py + 1, v : v + w - px + 1, :])
    return out


def high_frequency_share(kernel):
    """The energy share of `kernel` (kh, kw, ...) outside |wy|, |wx| < pi/2, the
    trailing axes' energies added: the autocorrelation (by DFT, zero-padded so it
    does not wrap) weighted by the band's Fourier coefficients sin(pi k/2)/(pi k)."""
    kernel = np.asarray(kernel, float)
    kh, kw = kernel.shape[:2]
    kernel = kernel.reshape(kh, kw, -1)
    power = np.sum(np.abs(np.fft.fft2(kernel, (2 * kh, 2 * kw), axes=(0, 1))) ** 2, -1)
    autocorrelation = np.real(np.fft.ifft2(power))
    total = autocorrelation[0, 0]
    if total == 0:
        return 0.0

    def band(n, size):
        # Lags 0..n-1 then -(n-1)..-1 in the DFT's order (and the unused lag -n).
        lags = np.fft.fftfreq(size, 1 / size)
        coefficients = np.array(
            [0.5 if k == 0 else math.sin(math.pi * k / 2) / (math.pi * k) for k in lags]
        )
        return np.where(np.abs(lags) < n, coefficients, 0.0)

    low = band(kh, 2 * kh) @ autocorrelation @ band(kw, 2 * kw)
    return 1.0 - low / total
