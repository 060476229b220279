"""Every layer of the package in every pad mode, grouped, for the tests that
compile or export them all (XLA, the deployment formats)."""

from keras_shiftinv.layers import (
    BlurPool2D,
    CircularPadding2D,
    MaxBlurPool2D,
    OffsetSubsample,
    PolyphaseDown2D,
    ShiftInvariantDown,
)
from keras_shiftinv.validation import CONV_PAD_MODES, PAD_MODES, POLYPHASE_ORDERS


def layer_cases():
    """{group: {name: layer factory}}: a group is compiled as one function."""
    groups = {}
    for mode in PAD_MODES:
        groups[mode] = {
            f"BlurPool2D-{mode}": lambda m=mode: BlurPool2D(pad_mode=m),
            f"BlurPool2D-3-s1-{mode}": lambda m=mode: BlurPool2D(3, 1, m),
            f"MaxBlurPool2D-{mode}": lambda m=mode: MaxBlurPool2D(pad_mode=m),
            f"OffsetSubsample-{mode}": lambda m=mode: OffsetSubsample(pad_mode=m),
            f"PolyphaseDown2D-{mode}": lambda m=mode: PolyphaseDown2D(
                filt_size=3, pad_mode=m
            ),
        }
    groups["circular"]["CircularPadding2D"] = lambda: CircularPadding2D(2)
    groups["ShiftInvariantDown"] = {
        f"ShiftInvariantDown-{b}-{o}-{m}": (
            lambda b=b, o=o, m=m: ShiftInvariantDown(
                6, b, polyphase_order=o, pad_mode=m
            )
        )
        for b in ("group", "conv3d")
        for o in POLYPHASE_ORDERS
        for m in CONV_PAD_MODES
    }
    return groups


LAYER_GROUPS = layer_cases()
