"""tf.distribute for the train command: the strategy, synchronized batch norm and
where each worker writes."""

import os

import keras
import tensorflow as tf

from keras_shiftinv.app.train_config import STRATEGIES
from keras_shiftinv.validation import standardize_choice


def make_strategy(name):
    """The `tf.distribute` strategy for `--strategy name`.

    "mirrored" uses every visible GPU, or every logical CPU device when there is no
    GPU. "multiworker" needs the TF_CONFIG environment variable describing the cluster
    and this process' task, and must be created before any other TensorFlow op.
    """
    standardize_choice(name, "strategy", STRATEGIES)
    if name == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError(
                "--strategy multiworker needs the TF_CONFIG environment variable "
                '(e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, '
                '"task": {"type": "worker", "index": 0}}) on every worker.'
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    # Listing logical devices starts the TensorFlow runtime: only now is it allowed.
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored":
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "auto" and len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def batch_norm_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            yield layer
        elif hasattr(layer, "layers"):
            yield from batch_norm_layers(layer)


def synchronize_batch_norm(model, synchronized=True):
    """Sets `synchronized` on every BatchNormalization layer of `model`.

    Over several replicas, synchronized batch norm normalises with the statistics of
    the global batch, so every replica keeps the same moving statistics (and the same
    weights) as one device would. The flag only works on TensorFlow, so it is cleared
    again before a model is saved for good.
    """
    for layer in batch_norm_layers(model):
        layer.synchronized = synchronized


def worker_dir(run_dir, strategy):
    """Where this process writes: the run folder for the chief (and single-process
    runs), `run_dir/worker-<index>` for the other workers of a multi-worker run."""
    if strategy.extended.should_checkpoint:
        return run_dir
    return os.path.join(run_dir, f"worker-{strategy.cluster_resolver.task_id}")
