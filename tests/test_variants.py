"""The variant policy: one object decides for the zoo, antialias() and the train
options, so each rule and its message exists once."""

import pathlib
import re

import keras
import pytest

import zoo
from keras_shiftinv import antialias
from keras_shiftinv.layers import ShiftInvariantDown
from keras_shiftinv.variants import MODULE_VARIANTS, VariantPolicy

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"variant": "none"}, "`variant` must be one of"),
        ({"variant": "blur", "polyphase_order": "aps"}, "applies to the variants"),
        ({"variant": "aps", "placement": "dense"}, "apply to the variants"),
        (
            {"variant": "group", "placement": "dense", "polyphase_order": "aps"},
            "`placement='dense'` needs polyphase_order='fixed'",
        ),
        ({"variant": "group", "pad_mode": "reflect"}, "`pad_mode` must be one of"),
        ({"variant": "blur", "filt_size": 0}, "`filt_size` must be an integer"),
    ],
)
def test_each_rule_raises_the_same_error_in_every_caller(kwargs, message):
    model = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, strides=2)]
    )
    options = {k: v for k, v in kwargs.items() if k != "variant"}
    callers = [
        lambda: VariantPolicy.create(kwargs["variant"], **options),
        lambda: antialias(model, variant=kwargs["variant"], **options),
    ]
    if kwargs["variant"] != "none" and options.get("pad_mode") != "reflect":
        callers.append(
            lambda: zoo.create_model("vgg11", variant=kwargs["variant"], **options)
        )
    for call in callers:
        with pytest.raises(ValueError, match=re.escape(message)):
            call()


def test_defaults_by_variant():
    assert VariantPolicy.create("blur", pad_mode=None).pad_mode == "reflect"
    assert VariantPolicy.create("group", pad_mode=None).pad_mode == "zero"
    assert VariantPolicy.create("blur").module_options() == {}
    policy = VariantPolicy.create("conv3d", placement="dense")
    assert policy.module_options() == {
        "placement": "dense",
        "module_initializer": None,
        "module_lowpass_penalty": 0.0,
    }
    assert not policy.replaces and policy.uses_modules and policy.keeps_components


@pytest.mark.parametrize("variant", MODULE_VARIANTS)
def test_zoo_and_antialias_make_the_same_module(variant):
    # A strided 3x3 conv without bias, as the zoo's: both callers put the same
    # ShiftInvariantDown in its place (the low-pass start of 3 taps included).
    options = {"variant": variant, "filt_size": 3, "module_initializer": "lowpass"}
    conv = keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)
    model = keras.Sequential([keras.Input((16, 16, 4)), conv])
    converted = antialias(model, **options).layers[0]
    built = VariantPolicy.create(**options).shift_invariant_down(
        8, 3, strides=2, use_bias=False, name=conv.name
    )
    assert isinstance(converted, ShiftInvariantDown)
    ignore = ("name", "dtype")
    assert {k: v for k, v in converted.get_config().items() if k not in ignore} == {
        k: v for k, v in built.get_config().items() if k not in ignore
    }


def test_variant_rules_are_written_once():
    # The sets of variants, the modules' low-pass start and the module options'
    # rule live in keras_shiftinv/variants.py (ShiftInvariantDown's branches in
    # ops.py); no other module of the package or the zoo spells one out.
    rules = re.compile(
        r"""\(\s*["'](group|blur)["']\s*,\s*["'](conv3d|aps)["']"""
        r"|min\(self\.filt_size, 2\)|def check_module_options"
    )
    allowed = {"keras_shiftinv/variants.py", "keras_shiftinv/ops.py"}
    offenders = [
        str(path.relative_to(ROOT))
        for path in [*ROOT.glob("keras_shiftinv/**/*.py"), *ROOT.glob("zoo/*.py")]
        if str(path.relative_to(ROOT)) not in allowed and rules.search(path.read_text())
    ]
    assert not offenders, offenders
