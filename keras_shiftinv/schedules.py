"""Learning-rate schedules (Keras serializable, so saved models reload them) and
the optimizers of the train command."""

import keras

from keras_shiftinv.validation import (
    standardize_choice,
    standardize_int,
    standardize_number,
)

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cyclic", "cosine", "step", "constant")
DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3}


@keras.saving.register_keras_serializable(package="keras_shiftinv")
class CyclicLR(keras.optimizers.schedules.LearningRateSchedule):
    """One triangular learning-rate cycle (the "one-cycle" schedule).

    The rate rises linearly from `peak_lr / (warmup_steps + 1)` to `peak_lr` over the
    first `warmup_steps` steps, then falls linearly to 0 at `total_steps` (and stays
    there). The schedule of the shift-invariant-module paper (SGD, peak 0.5, 16
    epochs on ImageNet) and of fast ResNet training recipes.

    Args:
        peak_lr: the largest learning rate, reached after `warmup_steps` steps.
        total_steps: steps of the whole run; the rate is 0 from then on.
        warmup_steps: steps of the rising half, in [0, total_steps).

    Example:

    >>> schedule = CyclicLR(peak_lr=0.1, total_steps=100, warmup_steps=25)
    >>> optimizer = keras.optimizers.SGD(schedule, momentum=0.9)
    """

    def __init__(self, peak_lr, total_steps, warmup_steps):
        standardize_number(peak_lr, "peak_lr", 0)
        standardize_int(total_steps, "total_steps")
        standardize_int(warmup_steps, "warmup_steps", minimum=0)
        if warmup_steps >= total_steps:
            raise ValueError(
                "`warmup_steps` must be smaller than `total_steps`. Received: "
                f"warmup_steps={warmup_steps}, total_steps={total_steps}"
            )
        self.peak_lr = peak_lr
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps

    def __call__(self, step):
        # Counting from step + 1 keeps the very first update from having rate 0.
        t = keras.ops.cast(step, "float32") + 1.0
        rise = t / (self.warmup_steps + 1.0)
        fall = (self.total_steps - t + 1.0) / (self.total_steps - self.warmup_steps)
        fraction = keras.ops.clip(keras.ops.minimum(rise, fall), 0.0, 1.0)
        return self.peak_lr * fraction

    def get_config(self):
        return {
            "peak_lr": self.peak_lr,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
        }


def make_schedule(name, lr, total_steps, warmup_fraction=0.25):
    """The learning-rate schedule `name` over `total_steps` steps, peaking at `lr`."""
    standardize_choice(name, "schedule", SCHEDULES)
    if name == "cyclic":
        warmup = min(round(warmup_fraction * total_steps), total_steps - 1)
        return CyclicLR(lr, total_steps, warmup)
    if name == "cosine":
        return keras.optimizers.schedules.CosineDecay(lr, total_steps)
    if name == "step":
        boundaries = [max(1, total_steps // 2), max(2, (3 * total_steps) // 4)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            boundaries, [lr, lr / 10, lr / 100]
        )
    return lr


def make_optimizer(name, learning_rate, weight_decay):
    """SGD with momentum 0.9 (the papers' choice) or Adam, with weight decay."""
    standardize_choice(name, "optimizer", OPTIMIZERS)
    if name == "sgd":
        return keras.optimizers.SGD(
            learning_rate, momentum=0.9, weight_decay=weight_decay or None
        )
    return keras.optimizers.Adam(learning_rate, weight_decay=weight_decay or None)
