"""The options of the train command, checked before any data loads."""

import dataclasses
import os
import re

from keras_shiftinv.schedules import DEFAULT_LR, OPTIMIZERS, SCHEDULES
from keras_shiftinv.validation import (
    CONV_PAD_MODES,
    standardize_choice,
    standardize_int,
    standardize_number,
)
from keras_shiftinv.variants import VariantPolicy

STRATEGIES = ("auto", "mirrored", "multiworker", "default")
AUGMENTS = ("none", "crop_flip")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass
class TrainConfig:
    """Options of a training run; the defaults are the quick Fashion-MNIST run.

    Args:
        model: a name from `zoo.list_models()`.
        variant: a name from `zoo.VARIANTS`.
        dataset: "fashion_mnist", "mnist", "folder" (with `data_dir`) or a
            tensorflow-datasets name.
        data_dir: where the data set is (None: its default place).
        epochs: number of epochs.
        batch_size: global batch size (split over the replicas).
        optimizer: "sgd" (momentum 0.9) or "adam".
        lr: peak learning rate; None: 0.1 for SGD, 1e-3 for Adam.
        schedule: "cyclic" (one triangle: linear warm-up over the first
            `warmup_fraction` of the steps, then linear decay to 0), "cosine",
            "step" (divided by 10 at 50% and 75% of the steps) or "constant".
        warmup_fraction: where the cyclic schedule peaks, as a fraction of all steps.
        weight_decay: decoupled weight decay of the optimizer (Keras applies it to
            the weights directly, scaled by the learning rate).
        augment: "none" or "crop_flip" (random crop with padding, horizontal flip).
        width_multiplier, filt_size, padding, polyphase_order, placement,
            module_initializer: passed to the model (`padding` as its `pad_mode`;
            the last two for the "group"/"conv3d" variants).
        module_lowpass_penalty: passed to the model ("group"/"conv3d" only;
            `train --lowpass-penalty`): every module adds this weight times the
            high-frequency share of its effective filters to the training loss
            (0: none).
        image_size: resize images to this size (needed when their sizes differ);
            28x28 images (Fashion-MNIST, MNIST) are zero-padded to 32x32 otherwise.
        mixed_precision: "float32", "mixed_float16" or "mixed_bfloat16".
        seed: random seed of weights, shuffling and augmentation.
        out: the run folder; None: `runs/<model>-<variant>-<dataset>`.
        strategy: "auto" (MirroredStrategy when more than one GPU is visible),
            "mirrored", "multiworker" (reads TF_CONFIG) or "default".
        validation_split: fraction of the training split held out for validation
            (best-model selection and the consistency callback); the test split is
            only used for the final summary.
        test_split: the split of the final evaluation ("validation" for data sets
            without a test split); not the training split nor a slice of it, which
            training and validation use whole.
        train_subset: use only this many training examples (None or 0: all).
        test_subset: evaluate on only this many test examples (None or 0: all).
        consistency_images: validation images the per-epoch consistency uses.
        consistency_samples: random shift pairs per image for consistency.
        max_shift: shifts are drawn from [0, max_shift) pixels per axis.
        install_data: on a machine without Fashion-MNIST, install Debian's
            dataset-fashion-mnist when allowed (root with apt-get).
        verbose: Keras verbosity of fit and evaluate (1: progress bars).
    """

    model: str = "resnet18"
    variant: str = "blur"
    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    epochs: int = 3
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float | None = None
    schedule: str = "cyclic"
    warmup_fraction: float = 0.25
    weight_decay: float = 5e-5
    augment: str = "crop_flip"
    width_multiplier: float = 0.25
    filt_size: int = 4
    padding: str = "zero"
    polyphase_order: str = "fixed"
    placement: str = "replace"
    module_initializer: str | None = None
    module_lowpass_penalty: float = 0.0
    image_size: int | None = None
    mixed_precision: str = "float32"
    seed: int = 0
    out: str | None = None
    strategy: str = "auto"
    validation_split: float = 0.1
    test_split: str = "test"
    train_subset: int | None = 12000
    test_subset: int | None = None
    consistency_images: int = 1000
    consistency_samples: int = 1
    max_shift: int = 8
    install_data: bool = True
    verbose: int = 1

    def __post_init__(self):
        import zoo

        # The model's options first: a typo must not wait for the data to load.
        standardize_choice(self.model, "model", zoo.list_models())
        standardize_choice(self.variant, "variant", zoo.VARIANTS)
        standardize_choice(self.padding, "padding", CONV_PAD_MODES)
        self.module_lowpass_penalty = self.policy.module_lowpass_penalty
        standardize_choice(self.optimizer, "optimizer", OPTIMIZERS)
        standardize_choice(self.schedule, "schedule", SCHEDULES)
        standardize_choice(self.augment, "augment", AUGMENTS)
        standardize_choice(self.mixed_precision, "mixed_precision", PRECISIONS)
        standardize_choice(self.strategy, "strategy", STRATEGIES)
        for name in (
            "epochs",
            "batch_size",
            "consistency_images",
            "consistency_samples",
            "max_shift",
        ):
            standardize_int(getattr(self, name), name)
        standardize_int(self.seed, "seed", minimum=0)
        for name in ("train_subset", "test_subset"):
            # 0 means "all", like None.
            if getattr(self, name) is not None:
                standardize_int(getattr(self, name), name, minimum=0)
                setattr(self, name, getattr(self, name) or None)
        if self.image_size is not None:
            standardize_int(self.image_size, "image_size")
        standardize_number(self.validation_split, "validation_split", 0, 1)
        standardize_number(self.warmup_fraction, "warmup_fraction", 0, 1)
        standardize_number(self.weight_decay, "weight_decay", 0, closed=True)
        standardize_number(self.width_multiplier, "width_multiplier", 0)
        if self.lr is not None:
            standardize_number(self.lr, "lr", 0)
        if str(self.test_split).split("[")[0] == "train":
            raise ValueError(
                "The test split may not be the training split, which training and "
                f"validation use whole. Received: --test-split {self.test_split}; "
                "use 'test' or 'validation' (an image folder without split folders "
                "has both)."
            )
        if self.dataset == "folder" and not self.data_dir:
            raise ValueError(
                "`dataset='folder'` needs `data_dir`, a folder with "
                "one sub-folder of images per class."
            )

    @property
    def policy(self):
        """The `VariantPolicy` of the model's options (checks them together)."""
        return VariantPolicy.create(
            self.variant, self.filt_size, self.padding, self.polyphase_order,
            self.placement, self.module_initializer, self.module_lowpass_penalty,
            pad_modes=CONV_PAD_MODES,
        )  # fmt: skip

    @property
    def peak_lr(self):
        return DEFAULT_LR[self.optimizer] if self.lr is None else self.lr

    @property
    def run_dir(self):
        dataset = re.sub(r"[^\w.-]", "_", self.dataset)  # "tfds:x/y" -> "tfds_x_y"
        return self.out or os.path.join(
            "runs", f"{self.model}-{self.variant}-{dataset}"
        )
