"""The variants of shift-invariant downsampling and the one policy that decides
what each makes, in the manner of timm's `create_aa`: the zoo builders
(`zoo.blocks.Builder`), `antialias()` and the train options all ask a
`VariantPolicy`, so each rule and its error message exists once, here.

Where a network subsamples (a strided conv, a strided pool, a strided shortcut, the
stem), the variant decides what stands there:

    baseline  the strided layer as it is
    blur      the layer at stride 1, then `BlurPool2D` (`MaxBlurPool2D` for a max
              pool): Zhang (2019)
    group     `ShiftInvariantDown(branch="group")` in place of the strided layer
              (placement "replace"), or after the layer run at stride 1 ("dense")
    conv3d    the same with `branch="conv3d"`
    aps       the layer at stride 1, then `PolyphaseDown2D` (Chaman & Dokmanic,
              2021); a shortcut samples the component its block chose
"""

import dataclasses

from keras_shiftinv import layers as si_layers
from keras_shiftinv.initializers import LowPass
from keras_shiftinv.ops import SHIFT_INVARIANT_BRANCHES
from keras_shiftinv.validation import (
    CONV_PAD_MODES,
    PAD_MODES,
    POLYPHASE_ORDERS,
    standardize_choice,
    standardize_filt_size,
    standardize_weight,
)

VARIANTS = ("baseline", "blur", "group", "conv3d", "aps")
# What antialias() turns a model into: every variant but the baseline.
ANTIALIAS_VARIANTS = ("blur", "aps", "group", "conv3d")
# The variants whose downsampling is a ShiftInvariantDown module, each named
# after the module's branch.
MODULE_VARIANTS = SHIFT_INVARIANT_BRANCHES
# The variants that keep or choose whole polyphase components: with circular
# padding their exact invariance needs sizes that are multiples of the stride.
POLYPHASE_VARIANTS = ("group", "conv3d", "aps")
# Where ShiftInvariantDown goes, and how it starts.
PLACEMENTS = ("replace", "dense")
MODULE_INITIALIZERS = (None, "lowpass")


def check_module_options(variant, **options):
    """Raises unless `variant` downsamples with `ShiftInvariantDown` modules or
    every option of the modules (name -> (value, default)) keeps its default."""
    if variant in MODULE_VARIANTS:
        return
    changed = {
        name: value for name, (value, default) in options.items() if value != default
    }
    if changed:
        names = ", ".join(f"`{name}`" for name in options)
        received = ", ".join(f"{name}={value!r}" for name, value in changed.items())
        raise ValueError(
            f"{names} apply to the variants "
            f"{' and '.join(map(repr, MODULE_VARIANTS))} (ShiftInvariantDown "
            f"modules). Received: variant={variant!r}, {received}"
        )


@dataclasses.dataclass(frozen=True)
class VariantPolicy:
    """A variant and its options, checked together; the layers it puts in.

    Build it with `VariantPolicy.create(...)`, which standardises and checks every
    option (a `ValueError` names the option and its value).

    Attributes:
        variant: one of `VARIANTS`.
        filt_size: blur taps of "blur" and "aps", and the low-pass start of the
            modules (1: no blur).
        pad_mode: border mode of the layers put in.
        polyphase_order: "fixed" or "aps", the offset order of the modules
            ("group" and "conv3d" only).
        placement: "replace" (the module stands for the strided layer) or
            "dense" (the layer runs at stride 1, the module subsamples).
        module_initializer: None ("he_normal") or "lowpass" (the modules start
            as `BlurPool2D(filt_size)`).
        module_lowpass_penalty: every module's `lowpass_penalty`.
    """

    variant: str
    filt_size: int = 4
    pad_mode: str = "zero"
    polyphase_order: str = "fixed"
    placement: str = "replace"
    module_initializer: str | None = None
    module_lowpass_penalty: float = 0.0

    @classmethod
    def create(
        cls,
        variant,
        filt_size=4,
        pad_mode="zero",
        polyphase_order="fixed",
        placement="replace",
        module_initializer=None,
        module_lowpass_penalty=0.0,
        variants=VARIANTS,
        pad_modes=None,
    ):
        """The checked policy.

        Args:
            variants: the variants the caller makes (antialias() has no
                baseline).
            pad_mode: None: "zero" for the modules, "reflect" for the blurs.
            pad_modes: the border modes the caller takes; None: those of the
                layers put in (every mode of `BlurPool2D` for "blur" and "aps",
                zeros or wrap-around for the modules).
        """
        variant = standardize_choice(variant, "variant", variants)
        if pad_mode is None:
            # antialias()'s default: the blurs reflect (Zhang, 2019), the
            # modules' convolutions pad with zeros.
            pad_mode = "zero" if variant in MODULE_VARIANTS else "reflect"
        if pad_modes is None:
            pad_modes = CONV_PAD_MODES if variant in MODULE_VARIANTS else PAD_MODES
        return cls(
            variant=variant,
            pad_mode=standardize_choice(pad_mode, "pad_mode", pad_modes),
            filt_size=standardize_filt_size(filt_size),
            polyphase_order=standardize_choice(
                polyphase_order, "polyphase_order", POLYPHASE_ORDERS
            ),
            placement=standardize_choice(placement, "placement", PLACEMENTS),
            module_initializer=standardize_choice(
                module_initializer, "module_initializer", MODULE_INITIALIZERS
            ),
            module_lowpass_penalty=standardize_weight(
                module_lowpass_penalty, "module_lowpass_penalty"
            ),
        )

    def __post_init__(self):
        # The rules that tie the options together.
        if self.polyphase_order == "aps" and not self.uses_modules:
            raise ValueError(
                "`polyphase_order='aps'` applies to the variants 'group' and "
                f"'conv3d'. Received: variant={self.variant!r}"
            )
        check_module_options(
            self.variant,
            placement=(self.placement, "replace"),
            module_initializer=(self.module_initializer, None),
            module_lowpass_penalty=(self.module_lowpass_penalty, 0.0),
        )
        if self.placement == "dense" and self.polyphase_order == "aps":
            # A dense block conv and its shortcut would see different maps, so
            # their modules could pick different components.
            raise ValueError(
                "`placement='dense'` needs polyphase_order='fixed': a block and its "
                "shortcut would pick their components on different maps. "
                "Received: polyphase_order='aps'"
            )

    @property
    def uses_modules(self):
        """Whether the downsampling is `ShiftInvariantDown`."""
        return self.variant in MODULE_VARIANTS

    @property
    def replaces(self):
        """Whether a module takes the place of the strided layer itself."""
        return self.uses_modules and self.placement == "replace"

    @property
    def adaptive(self):
        """Whether every downsampling picks its sampling grid from the data."""
        return self.variant == "aps" or self.polyphase_order == "aps"

    @property
    def keeps_components(self):
        """Whether the downsampling keeps or chooses whole polyphase components
        (see `POLYPHASE_VARIANTS`)."""
        return self.variant in POLYPHASE_VARIANTS

    def module_options(self):
        """The options of the modules, by name, where they apply (empty for the
        other variants, whose options stay as they were)."""
        if not self.uses_modules:
            return {}
        return {
            "placement": self.placement,
            "module_initializer": self.module_initializer,
            "module_lowpass_penalty": self.module_lowpass_penalty,
        }

    def module_kernel_initializer(self, kernel_size):
        """A module's kernel initializer: a low-pass start takes the blur's taps,
        or the 2 a 1x1 module holds."""
        if self.module_initializer is None:
            return "he_normal"
        return LowPass(self.filt_size if kernel_size > 1 else min(self.filt_size, 2))

    def shift_invariant_down(self, filters, kernel_size, **kwargs):
        """The module of "group" / "conv3d" (`kwargs`: strides, use_bias,
        data_format, name, ... of `ShiftInvariantDown`)."""
        return si_layers.ShiftInvariantDown(
            filters,
            branch=self.variant,
            kernel_size=kernel_size,
            polyphase_order=self.polyphase_order,
            pad_mode=self.pad_mode,
            kernel_initializer=self.module_kernel_initializer(kernel_size),
            lowpass_penalty=self.module_lowpass_penalty,
            **kwargs,
        )

    def blur_pool(self, strides, pad_mode=None, **kwargs):
        """The blur of "blur" (and of "aps" at stride 1)."""
        return si_layers.BlurPool2D(
            self.filt_size,
            strides=strides,
            pad_mode=pad_mode or self.pad_mode,
            **kwargs,
        )

    def max_blur_pool(self, pool_size, pad_mode=None, **kwargs):
        """What "blur" puts for a max pool."""
        return si_layers.MaxBlurPool2D(
            pool_size,
            filt_size=self.filt_size,
            pad_mode=pad_mode or self.pad_mode,
            **kwargs,
        )

    def polyphase_down(self, strides, **kwargs):
        """The sampling of "aps"."""
        return si_layers.PolyphaseDown2D(
            strides, filt_size=self.filt_size, pad_mode=self.pad_mode, **kwargs
        )
