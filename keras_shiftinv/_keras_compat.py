"""The one module of keras_shiftinv that touches private Keras API.

Keras 3 has no public way to walk a model's layer graph call by call, or to work
around its MultiWorkerMirroredStrategy bugs, so the package reads a few private
attributes of Keras objects and patches one private function. They are all here,
behind small accessors: when a Keras release renames one, the error names it and
this module is the only place to adapt.
"""

import contextlib
import re

import keras


def _unsupported(obj, name, purpose):
    return RuntimeError(
        f"keras_shiftinv reads {purpose} from the private Keras attribute "
        f"`{type(obj).__name__}.{name}`, which Keras {keras.version()} does not "
        "have. keras_shiftinv/_keras_compat.py needs updating for this Keras "
        "version (or install a Keras 3 release up to 3.15)."
    )


def _private(obj, name, purpose):
    try:
        return getattr(obj, name)
    except AttributeError:
        raise _unsupported(obj, name, purpose) from None


def is_functional(layer):
    """Whether `layer` is a functional model (a graph of layers that can be read)."""
    return isinstance(layer, keras.Model) and hasattr(layer, "_nodes_by_depth")


def producer(tensor):
    """The layer (or operation) whose output the symbolic `tensor` is."""
    return _private(tensor, "_keras_history", "the layer of a tensor").operation


def producing_node(tensor):
    """The node (one call of a layer) that output the symbolic `tensor`: its
    `operation`, `input_tensors` and `outputs`."""
    operation, node_index, _ = _private(
        tensor, "_keras_history", "the layer call of a tensor"
    )
    return inbound_nodes(operation)[node_index]


def inbound_nodes(layer):
    """The nodes of `layer`: one per call on symbolic inputs, in call order."""
    return _private(layer, "_inbound_nodes", "the calls of a layer")


def nodes_by_depth(model):
    """The nodes of a functional `model`'s graph as a dict `{depth: [node, ...]}`:
    depth 0 holds the nodes of the outputs, the deepest the input nodes."""
    return _private(model, "_nodes_by_depth", "the layer graph of a model")


def sequential_graph(model):
    """The functional model a `keras.Sequential` runs, or None before it is built."""
    return _private(model, "_functional", "the layer graph of a Sequential model")


def sublayers(layer):
    """Every layer tracked inside `layer`, at any depth, `layer` itself excluded."""
    flatten = _private(layer, "_flatten_layers", "the layers inside a layer")
    return list(flatten(include_self=False))


# keras-team/keras#20585 (tensorflow/tensorflow#72388): open in every Keras 3
# release up to 3.15.1, the newest one tested. A later release is left alone: it
# may have fixed the bugs or changed the functions this patch replaces.
_MULTIWORKER_BUGS = ((3, 0, 0), (3, 15, 1))


def _has_multiworker_bugs():
    # "3.15.1", or "3.16.0.dev2026..." for a nightly.
    release = re.match(r"(\d+)\.(\d+)\.(\d+)", keras.version())
    if release is None:
        return False
    first, last = _MULTIWORKER_BUGS
    return first <= tuple(map(int, release.groups())) <= last


@contextlib.contextmanager
def multiworker_fit(model):
    """Works around Keras 3's two MultiWorkerMirroredStrategy bugs in `model.fit`
    while the context is open, and undoes the change on exit.

    Keras builds metrics and optimizer state from the first batch by averaging the
    distributed batch with a collective outside any `tf.function` (which fails: a
    local replica's batch has the right shapes), and averages the per-step logs,
    which are scalars, with `strategy.reduce(..., axis=0)` (which fails: scalars
    are averaged over the replicas with `axis=None`). Only multi-worker strategies
    take these paths, so for any other strategy of `model`, and on Keras versions
    without the bugs, this does nothing.

    Example:

    ```python
    with strategy.scope():
        model = build_and_compile()
    with multiworker_fit(model):
        model.fit(train_ds, epochs=10)
    ```
    """
    import tensorflow as tf

    strategy = model.distribute_strategy
    if not (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and _has_multiworker_bugs()
    ):
        yield
        return
    from keras.src.backend.tensorflow import trainer

    symbolic_build = _private(model, "_symbolic_build", "the model's build step")
    reduce_per_replica = _private(
        trainer, "reduce_per_replica", "the reduction of the step logs"
    )
    # The override below works only while fit calls this method.
    _private(model, "_maybe_symbolic_build", "the model's build step")
    # An instance attribute overrides the method for `model` only.
    overridden = vars(model).get("_maybe_symbolic_build")

    def first_replica(value):
        return strategy.experimental_local_results(value)[0]

    def local_symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = keras.tree.map_structure(first_replica, next(batches))
                break
        with strategy.scope():
            symbolic_build(data_batch=data_batch)

    def reduce_scalars_too(values, strategy, reduction):
        if reduction in ("auto", "mean") and isinstance(
            strategy, tf.distribute.MultiWorkerMirroredStrategy
        ):
            return keras.tree.map_structure(
                lambda v: strategy.reduce("MEAN", v, axis=None), values
            )
        return reduce_per_replica(values, strategy, reduction)

    # Past Layer.__setattr__: Keras' attribute tracking must not see the function.
    object.__setattr__(model, "_maybe_symbolic_build", local_symbolic_build)
    trainer.reduce_per_replica = reduce_scalars_too
    try:
        yield
    finally:
        trainer.reduce_per_replica = reduce_per_replica
        if overridden is None:
            object.__delattr__(model, "_maybe_symbolic_build")
        else:
            object.__setattr__(model, "_maybe_symbolic_build", overridden)


def _tf_in_xla_context():
    """Whether TensorFlow traces now for XLA (inside a `tf.function(jit_compile=
    True)`, as Keras' `compile(jit_compile=True)` makes, and as Keras does for
    TensorFlow on a GPU by default): only TensorFlow's private API shows the XLA
    control-flow context. None when this TensorFlow lacks that API."""
    try:
        from tensorflow.python.framework import ops as tf_ops
        from tensorflow.python.ops import control_flow_util
    except ImportError:
        return None
    in_xla = getattr(control_flow_util, "GraphOrParentsInXlaContext", None)
    get_graph = getattr(tf_ops, "get_default_graph", None)
    if in_xla is None or get_graph is None:
        return None
    return bool(in_xla(get_graph()))


def compiling_with_xla():
    """Whether the ops being traced now will be compiled by XLA: always on JAX;
    on TensorFlow, inside an XLA-compiled `tf.function`. Used to choose between
    formulations that compute the same values, so when this TensorFlow lacks the
    private API the answer is False: the formulation for TensorFlow without XLA."""
    backend = keras.backend.backend()
    if backend == "jax":
        return True
    return backend == "tensorflow" and bool(_tf_in_xla_context())


def tf_may_update_in_place():
    """Whether TensorFlow code being run or traced now may use ops that only
    TensorFlow's own runtime executes (`tf.raw_ops.InplaceAdd`): a gradient tape
    records, as in a training step (Keras' `export` formats and its inference
    functions are traced without one, so their graphs never hold such ops), and no
    enclosing `tf.function` compiles with XLA, which rejects them. Both tests read
    private TensorFlow modules; without them the answer is False (portable ops)."""
    try:
        from tensorflow.python.eager import record
    except ImportError:
        return False
    if not record.could_possibly_record():
        return False
    return _tf_in_xla_context() is False
