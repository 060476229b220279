"""`antialias(model)`: rewrite the downsampling layers of an existing Keras model.

The rewrite walks the layer graph of a functional or Sequential model node by node and
rebuilds it on new inputs. Every layer is cloned from its config and gets the original
weights back; only the layers that subsample are changed (rules in `antialias`).
"""

import collections
import dataclasses
import warnings

import keras

from keras_shiftinv import layers as si_layers
from keras_shiftinv._keras_compat import (
    is_functional,
    nodes_by_depth,
    producer,
    producing_node,
    sequential_graph,
    sublayers,
)
from keras_shiftinv.validation import (
    channel_axis,
    renamed_argument,
    spatial_axes,
    standardize_choice,
    standardize_int,
)
from keras_shiftinv.variants import ANTIALIAS_VARIANTS, VariantPolicy

_CONVS = (
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
)
_POOLS = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
_NONLINEAR = (
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.PReLU,
    keras.layers.ELU,
    keras.layers.Softmax,
)
_PADDINGS = (keras.layers.ZeroPadding2D, si_layers.CircularPadding2D)
# Layers that act on each pixel on its own: the subsampling of a linear strided conv
# moves past them to the first nonlinearity, where Zhang puts the blur.
_PER_PIXEL = _NONLINEAR + (
    keras.layers.Activation,
    keras.layers.BatchNormalization,
    keras.layers.Dropout,
)


@dataclasses.dataclass(frozen=True)
class Change:
    """One line of the report of `antialias`: what happened to one layer (to
    each of its calls, for a shared layer whose calls changed differently).

    Attributes:
        layer: name of the original layer; "outer/inner" inside a nested model.
        kind: class name of the original layer.
        action: what was done, in words.
        new_layers: names of the layers that now stand in its place.
    """

    layer: str
    kind: str
    action: str
    new_layers: tuple = ()

    def __str__(self):
        new = f" [{', '.join(self.new_layers)}]" if self.new_layers else ""
        return f"{self.layer} ({self.kind}): {self.action}{new}"


def antialias(
    model,
    variant=None,
    filt_size=4,
    pad_mode=None,
    polyphase_order="fixed",
    exclude=(),
    on_unsupported="raise",
    return_report=False,
    verbose=False,
    placement="replace",
    module_initializer=None,
    max_pool_size=None,
    module_lowpass_penalty=0.0,
    *,
    method=None,
):
    """Rewrites the downsampling layers of a Keras model to make it shift-invariant.

    Returns a new model with the same inputs and output shapes; the input model is
    not changed. Each layer is cloned from its config and every weight that still
    fits is copied, so a trained model keeps its weights (fine-tune it afterwards:
    the function it computes changes). What changes, for `variant="blur"` (Zhang,
    2019):

    - a strided `Conv2D`, `DepthwiseConv2D` or `SeparableConv2D` runs at stride 1
      and a `BlurPool2D` subsamples after its nonlinearity: after the layer itself
      when it has an activation; otherwise after the first nonlinear layer of the
      chain of per-pixel layers (`BatchNormalization`, `Activation`, `ReLU`, ...,
      `Dropout`) that are the sole consumers of its output, as in ResNet and
      MobileNet (conv, batch norm, ReLU, blur). With no nonlinearity in that chain
      (a projection shortcut: conv, batch norm, add) a 1x1 conv is blurred on its
      input, as in Zhang's ResNets (a 1x1 conv commutes with a per-channel blur,
      up to the bias at the border with pad_mode "zero", so this is the same
      function at a quarter of the conv's cost), and a larger one on its output.
    - a strided `MaxPooling2D` becomes `MaxBlurPool2D` (its padding "valid"), or a
      stride-1 `MaxPooling2D` with padding "same" then `BlurPool2D`. With
      `max_pool_size=m` it becomes `MaxBlurPool2D(m)` reading the pool's input
      before any padding layers, as in antialiased-cnns' ResNets, whose 2x2 max
      at stride 1 on the unpadded map replaces torchvision's 3x3 pool padded by 1
      (the output shape must stay the same, or a `ValueError` names the pool).
    - a strided `AveragePooling2D` becomes the same pooling at stride 1, then
      `BlurPool2D`: a box filter times a binomial one.

    Output shapes are unchanged: a layer at stride 1 followed by a subsampling to
    `ceil(size / stride)` gives `floor((size - k) / stride) + 1` for "valid" padding
    and `ceil(size / stride)` for "same", as before (so `ZeroPadding2D` followed by
    a "valid" strided conv, as in `keras.applications`, keeps its shape).

    The other variants put another subsampling layer in the same place:

    - "aps": `PolyphaseDown2D(strides, filt_size=filt_size, pad_mode=pad_mode)`
      (adaptive polyphase sampling, Chaman and Dokmanic 2021). Strided layers that
      read the same tensor (directly or through `ZeroPadding2D` /
      `CircularPadding2D`) with the same strides, like a residual block and its
      shortcut, share the chosen polyphase component: the first one to subsample
      chooses it, the others sample it with `PolyphaseGather2D` after the same
      blur. With circular padding everywhere (`CircularPadding2D` before "valid"
      layers, `pad_mode="circular"`) the converted model is then exactly
      invariant to circular shifts by any number of pixels.
    - "group" / "conv3d": a strided `Conv2D` (groups 1, square kernel) becomes a
      `ShiftInvariantDown(filters, branch=variant, kernel_size, strides,
      polyphase_order, pad_mode)` followed by the conv's activation, and a strided
      pool a `ShiftInvariantDown` with as many filters as channels and kernel size
      3 (as in the seed paper's ResNet-18 and the zoo). A "valid" layer with a
      window k > 1 is cropped by k - 1 rows and columns first, so its output shape
      is kept. These modules have new weights: train the model.
      `DepthwiseConv2D` and `SeparableConv2D` have no such module and are
      unsupported. That is `placement="replace"` (the seed paper's text);
      `placement="dense"` (its slides) keeps every layer and its weights as
      "blur" does (the layer at stride 1, its nonlinearity) and subsamples with
      `ShiftInvariantDown(channels, kernel_size=3, strides)` where "blur" puts
      its `BlurPool2D` (before a linear 1x1 conv, after the nonlinearity
      otherwise); depthwise and separable convs then convert too.
      `module_initializer="lowpass"` starts every module as
      `BlurPool2D(filt_size)` (see `keras_shiftinv.initializers.LowPass`), so
      with `placement="dense"` the converted model starts out computing what
      `variant="blur"` computes. `module_lowpass_penalty=w` gives every module
      `lowpass_penalty=w`: while training it adds `w` times the high-frequency
      share of its effective filters to the loss.

    Unsupported: strided layers of any other kind (`Conv1D`, `Conv3D`, 1D/3D
    pooling, strided `Conv2DTranspose`, custom layers with `strides`), and strided
    layers inside a nested layer or model that is not functional or Sequential
    (functional and Sequential nested models are rewritten recursively). Such a
    layer raises a `ValueError` naming it, or, with `on_unsupported="warn"`, is kept
    as it is with a warning. Layers of this package are kept as they are. Other
    subsampling (a strided slice in a `Lambda`, `Resizing`) is not detected.

    Args:
        model: a functional or a built Sequential `keras.Model`.
        variant: "blur" (the default), "aps", "group" or "conv3d"; the zoo's
            variants of the same names.
        filt_size: blur taps per axis for "blur" and "aps" (see `BlurPool2D`);
            1 is plain subsampling ("aps" without a low-pass filter).
        pad_mode: border mode of the inserted layers. "blur" and "aps": the
            blur's, "reflect" (default), "replicate", "zero" or "circular";
            "group" and "conv3d": `ShiftInvariantDown`'s, "zero" (default) or
            "circular".
        polyphase_order: "fixed" or "aps", passed to `ShiftInvariantDown`.
        placement: "replace" or "dense", for "group" and "conv3d" (see above).
        module_initializer: None (`ShiftInvariantDown`'s "he_normal") or
            "lowpass", for "group" and "conv3d".
        exclude: names of layers to keep as they are (for instance the stem conv).
        on_unsupported: "raise" or "warn" (keep the layer, warn).
        return_report: also return the list of `Change`s.
        verbose: print the changes.
        max_pool_size: with "blur", the max window of the `MaxBlurPool2D` that
            replaces each strided `MaxPooling2D`, on its unpadded input (None:
            the pool's own window and input).
        module_lowpass_penalty: the `lowpass_penalty` of every
            `ShiftInvariantDown`, a float >= 0 (0: none), for "group" and
            "conv3d".
        method: deprecated name of `variant` (a `DeprecationWarning`).

    Returns:
        The new model (functional, or Sequential for a Sequential model;
        compiled as the input model was, with a new optimizer), or
        `(model, report)` with `return_report=True`.

    Example:

    >>> base = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3))
    >>> model = keras_shiftinv.antialias(base, exclude=["conv1_conv"])
    >>> model.output_shape == base.output_shape
    True

    Reference:
        - [Zhang, Making Convolutional Networks Shift-Invariant Again,
          ICML 2019](https://arxiv.org/abs/1904.11486)
        - [Chaman and Dokmanic, Truly Shift-Invariant Convolutional Neural
          Networks, CVPR 2021](https://arxiv.org/abs/2011.14214)
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"antialias() takes a keras.Model. Received: model={model!r}")
    variant = renamed_argument("method", method, "variant", variant, "blur")
    policy = VariantPolicy.create(
        variant, filt_size, pad_mode, polyphase_order, placement,
        module_initializer, module_lowpass_penalty, variants=ANTIALIAS_VARIANTS,
    )  # fmt: skip
    converter = _Converter(
        policy,
        exclude=_standardize_names(exclude, model),
        on_unsupported=standardize_choice(
            on_unsupported, "on_unsupported", ("raise", "warn")
        ),
        taken=set(_layer_names(model)),
        max_pool_size=_standardize_max_pool_size(max_pool_size, variant),
    )
    new_model = converter.convert_model(model, prefix="")
    converter.copy_weights()
    if model.compiled:
        new_model.compile_from_config(model.get_compile_config())
    if verbose:
        for change in converter.report:
            print(change)
    return (new_model, converter.report) if return_report else new_model


def _standardize_max_pool_size(max_pool_size, variant):
    if max_pool_size is None:
        return None
    if variant != "blur":
        raise ValueError(
            "`max_pool_size` applies to variant='blur'. "
            f"Received: variant={variant!r}, max_pool_size={max_pool_size!r}"
        )
    return standardize_int(max_pool_size, "max_pool_size")


def _is_layer(op):
    return isinstance(op, keras.layers.Layer)


def _is_graph_model(op):
    return isinstance(op, keras.Sequential) or is_functional(op)


def _layer_names(model):
    for layer in model.layers:
        yield layer.name
        if _is_graph_model(layer):
            yield from _layer_names(layer)


def _standardize_names(exclude, model):
    names = (exclude,) if isinstance(exclude, str) else tuple(exclude)
    unknown = sorted(set(names) - set(_layer_names(model)))
    if unknown:
        raise ValueError(
            "`exclude` names layers that are not in the model. "
            f"Received: exclude={exclude!r}; not found: {unknown}"
        )
    return frozenset(names)


def _strides(layer):
    """The strides of a layer that subsamples, else None."""
    strides = getattr(layer, "strides", None)
    if strides is None:
        return None
    strides = (strides, strides) if isinstance(strides, int) else tuple(strides)
    return strides if max(strides) > 1 else None


def _is_linear(activation):
    return activation is keras.activations.linear


def _is_nonlinear_layer(layer):
    if isinstance(layer, keras.layers.Activation):
        return not _is_linear(layer.activation)
    return isinstance(layer, _NONLINEAR)


def _is_ours(layer):
    return type(layer).__module__.startswith("keras_shiftinv.")


def _nonlinearity_after(node, consumers, model_outputs):
    """The first nonlinear node of the chain of per-pixel layers that are the sole
    consumers of `node`'s output, or None."""
    while True:
        (x,) = node.outputs
        users = consumers[id(x)]
        if id(x) in model_outputs or len(users) != 1:
            return None
        node = users[0]
        if not isinstance(node.operation, _PER_PIXEL) or len(node.outputs) != 1:
            return None
        if _is_nonlinear_layer(node.operation):
            return node


def _unpadded(x):
    """The tensor that padding layers turned into `x` (or `x`): strided layers
    reading the same unpadded tensor subsample the same grid."""
    while True:
        node = producing_node(x)
        if not isinstance(node.operation, _PADDINGS):
            return x
        x = node.input_tensors[0]


def _shift_invariant_down_misfit(conv):
    """Why a strided conv has no ShiftInvariantDown equivalent, or None."""
    if not isinstance(conv, keras.layers.Conv2D):
        return (
            "ShiftInvariantDown stands for a full strided conv and has no "
            f"{type(conv).__name__} form"
        )
    if conv.groups != 1:
        return f"ShiftInvariantDown has no grouped form (groups={conv.groups})"
    if conv.kernel_size[0] != conv.kernel_size[1]:
        return (
            f"ShiftInvariantDown needs a square kernel (kernel_size={conv.kernel_size})"
        )
    return None


# Inserted layers that pad their input: a symbolic call does not check that the
# padding fits the map (reflect needs a map larger than the padding), a call on
# zeros of the map's shape does.
_PADDING_LAYERS = (
    si_layers.BlurPool2D,
    si_layers.MaxBlurPool2D,
    si_layers.PolyphaseDown2D,
    si_layers.ShiftInvariantDown,
)


def _call_new(layer, source, *args, **kwargs):
    """Calls a layer put in for `source`; a failure names `source`, and a layer
    whose padding does not fit the map fails here, not when the model runs."""
    try:
        outputs = layer(*args, **kwargs)
        shape = tuple(args[0].shape) if hasattr(args[0], "shape") else ()
        if isinstance(layer, _PADDING_LAYERS) and None not in shape[1:]:
            layer.call(keras.ops.zeros((1, *shape[1:]), layer.compute_dtype))
        return outputs
    except ValueError as error:
        raise ValueError(
            f"antialias(): {type(layer).__name__} {layer.name!r}, put in for "
            f"{source.name!r} ({type(source).__name__}), fails on its input "
            f"{tuple(args[0].shape)}: {error} Or pass exclude=[{source.name!r}]."
        ) from error


@dataclasses.dataclass(frozen=True)
class _Rewrite:
    """What replaces a strided layer: `layers`, called in its place in order, and
    whether each call owes a subsampling layer (placed by `_Converter._plan`)."""

    layers: tuple
    action: str
    subsample: bool
    unpadded: bool = False


@dataclasses.dataclass(frozen=True)
class _Subsample:
    """The subsampling owed by one call (`node`) of the strided layer `source`.

    `where` says where it goes, for the report; calls with the same `tie` share
    their polyphase choice ("aps").
    """

    source: keras.layers.Layer
    node: object
    where: str
    tie: tuple | None


@dataclasses.dataclass
class _GraphState:
    """Per rebuilt graph: the name prefix of nested models, the layers called in
    order (to rebuild a Sequential) and the polyphase choices made so far."""

    prefix: str
    called: list = dataclasses.field(default_factory=list)
    ties: dict = dataclasses.field(default_factory=dict)


class _Converter:
    """Rebuilds a model with the layers `policy` (a `VariantPolicy`) puts in."""

    def __init__(self, policy, exclude, on_unsupported, taken, max_pool_size=None):
        self.max_pool_size = max_pool_size
        self.policy = policy
        self.variant = policy.variant
        self.exclude = exclude
        self.on_unsupported = on_unsupported
        self.taken = taken
        self.report = []
        self._models = {}
        self._rewrites = {}
        self._clones = {}
        self._subsamplers = {}

    def convert_model(self, model, prefix):
        if id(model) in self._models:
            return self._models[id(model)]
        if isinstance(model, keras.Sequential):
            graph = sequential_graph(model)
            if graph is None:
                raise ValueError(
                    f"antialias() needs a built Sequential model: {model.name!r} has "
                    "no input shape. Start it with keras.Input(shape) or call "
                    "model.build(input_shape) first."
                )
            inputs, _, called = self._rewrite_graph(graph, prefix)
            new = keras.Sequential([inputs[0], *called], name=model.name)
        elif _is_graph_model(model):
            inputs, outputs, _ = self._rewrite_graph(model, prefix)
            inputs = keras.tree.pack_sequence_as(model.input, inputs)
            new = keras.Model(inputs, outputs, name=model.name)
        else:
            raise ValueError(
                "antialias() rewrites functional and Sequential models; "
                f"{model.name!r} is a subclassed {type(model).__name__} whose layer "
                "graph is not known. Build it with the functional API, or put "
                "keras_shiftinv layers in it by hand."
            )
        self._models[id(model)] = new
        return new

    def copy_weights(self):
        for layer, clone in self._clones.values():
            clone.set_weights(layer.get_weights())

    def _rewrite_graph(self, graph, prefix):
        """Calls the new layers on new inputs, node by node (inputs first)."""
        by_depth = nodes_by_depth(graph)
        nodes = [
            node
            for depth in sorted(by_depth, reverse=True)
            for node in by_depth[depth]
            if not node.is_input
        ]
        state = _GraphState(prefix)
        before, after = self._plan(graph, nodes, state)
        inputs = [
            keras.Input(
                batch_shape=x.shape,
                dtype=x.dtype,
                name=producer(x).name,
            )
            for x in graph.inputs
        ]
        tensors = {id(x): y for x, y in zip(graph.inputs, inputs, strict=True)}
        for node in nodes:
            args, kwargs = node.arguments.fill_in(tensors)
            if id(node) in before:
                args = (self._subsample(before[id(node)], args[0], state), *args[1:])
            outputs = self._call(node.operation, args, kwargs, state)
            for spec in after.get(id(node), ()):
                outputs = self._subsample(spec, outputs, state)
            for x, y in zip(node.outputs, keras.tree.flatten(outputs), strict=True):
                tensors[id(x)] = y
        outputs = keras.tree.pack_sequence_as(
            graph.output, [tensors[id(x)] for x in graph.outputs]
        )
        return inputs, outputs, state.called

    def _plan(self, graph, nodes, state):
        """Where each strided call subsamples: on its input (`before`, by node) or
        after the output of a node (`after`, by node)."""
        consumers = collections.defaultdict(list)
        for node in nodes:
            for x in node.input_tensors:
                consumers[id(x)].append(node)
        model_outputs = {id(x) for x in graph.outputs}
        anchored = []
        for node in nodes:
            layer = node.operation
            if not _is_layer(layer) or _is_graph_model(layer):
                continue
            rewrite = self._rewrite(layer, state.prefix)
            if rewrite is None or not rewrite.subsample:
                continue
            anchor, where = node, "after it"
            if isinstance(layer, _CONVS) and _is_linear(layer.activation):
                anchor = _nonlinearity_after(node, consumers, model_outputs)
                if anchor is not None:
                    where = f"after {anchor.operation.name!r}"
                elif layer.kernel_size == (1, 1):
                    where = "before it (a linear 1x1 conv commutes with it)"
                else:
                    anchor = node
            tie = (id(_unpadded(node.input_tensors[0])), _strides(layer))
            anchored.append((anchor, _Subsample(layer, node, where, tie)))
        ties = collections.Counter(spec.tie for _, spec in anchored)
        before, after = {}, collections.defaultdict(list)
        for anchor, spec in anchored:
            if self.variant != "aps" or ties[spec.tie] < 2:
                spec = dataclasses.replace(spec, tie=None)
            if anchor is None:
                before[id(spec.node)] = spec
            else:
                after[id(anchor)].append(spec)
        return before, after

    def _call(self, op, args, kwargs, state):
        if not _is_layer(op):
            # A keras.ops operation of the graph: stateless, so it can be shared.
            return op(*args, **kwargs)
        rewrite = None if _is_graph_model(op) else self._rewrite(op, state.prefix)
        if rewrite is None:
            if _is_graph_model(op):
                new = self.convert_model(op, f"{state.prefix}{op.name}/")
            else:
                new = self._clone(op)
            state.called.append(new)
            return new(*args, **kwargs)
        if not rewrite.subsample:
            self._record(op, state.prefix, rewrite.action, rewrite.layers)
        if rewrite.unpadded:
            expected = op.compute_output_shape(args[0].shape)
            x = args[0]
            args = (_unpadded(x), *args[1:])
            # A rebuilt Sequential must not call the padding layers skipped here.
            while x is not args[0]:
                node = producing_node(x)
                if node.operation in state.called:
                    state.called.remove(node.operation)
                x = node.input_tensors[0]
        outputs = _call_new(rewrite.layers[0], op, *args, **kwargs)
        for layer in rewrite.layers[1:]:
            outputs = _call_new(layer, op, outputs)
        if rewrite.unpadded and tuple(outputs.shape) != tuple(expected):
            raise ValueError(
                f"antialias(max_pool_size={self.max_pool_size}) would change the "
                f"output shape of {state.prefix + op.name!r} from {tuple(expected)} to "
                f"{tuple(outputs.shape)}: leave max_pool_size=None or exclude it."
            )
        state.called.extend(rewrite.layers)
        return outputs

    def _record(self, layer, prefix, action, new_layers=()):
        change = Change(
            f"{prefix}{layer.name}",
            type(layer).__name__,
            action,
            tuple(new.name for new in new_layers),
        )
        # A shared layer's calls that changed alike are one line.
        if change not in self.report:
            self.report.append(change)

    # Decisions, layer by layer (a shared layer is decided once).

    def _rewrite(self, layer, prefix):
        if id(layer) not in self._rewrites:
            self._rewrites[id(layer)] = self._decide(layer, prefix)
        return self._rewrites[id(layer)]

    def _decide(self, layer, prefix):
        strides = _strides(layer)
        if _is_ours(layer):
            return None
        if layer.name in self.exclude:
            if strides:
                self._record(layer, prefix, "kept unchanged (excluded)")
            return None
        reason = self._unsupported(layer, strides)
        if reason:
            message = (
                f"antialias(variant={self.variant!r}) cannot convert layer "
                f"{prefix + layer.name!r} ({type(layer).__name__}): {reason}. Pass "
                f"exclude=[{layer.name!r}] or on_unsupported='warn' to keep it as "
                "it is."
            )
            if self.on_unsupported == "raise":
                raise ValueError(message)
            warnings.warn(message, stacklevel=4)
            self._record(layer, prefix, f"kept unchanged: {reason}")
            return None
        if not strides:
            return None
        return self._replacement(layer, strides)

    def _unsupported(self, layer, strides):
        if isinstance(layer, _POOLS) or (isinstance(layer, _CONVS) and not strides):
            return None
        if isinstance(layer, _CONVS):
            if not self.policy.replaces:
                return None
            return _shift_invariant_down_misfit(layer)
        if strides:
            return (
                f"it subsamples (strides={strides}) but is not a layer antialias() "
                "rewrites (Conv2D, DepthwiseConv2D, SeparableConv2D, MaxPooling2D, "
                "AveragePooling2D)"
            )
        inner = [sub for sub in sublayers(layer) if _strides(sub) and not _is_ours(sub)]
        if inner:
            return (
                f"it holds the strided layer {inner[0].name!r} "
                f"({type(inner[0]).__name__}), which is out of reach: only nested "
                "functional and Sequential models are rewritten"
            )
        return None

    def _replacement(self, layer, strides):
        dtype = layer.dtype_policy
        if self.policy.replaces:
            return self._shift_invariant_down(layer, strides)
        resized = self.max_pool_size is not None
        if (
            self.variant == "blur"
            and isinstance(layer, keras.layers.MaxPooling2D)
            and (layer.padding == "valid" or resized)
        ):
            new = self.policy.max_blur_pool(
                self.max_pool_size if resized else layer.pool_size,
                strides=strides,
                data_format=layer.data_format,
                name=layer.name,
                dtype=dtype,
            )
            if resized:
                action = f"-> MaxBlurPool2D({self.max_pool_size}) on the unpadded input"
                return _Rewrite((new,), action, subsample=False, unpadded=True)
            return _Rewrite((new,), "-> MaxBlurPool2D", subsample=False)
        return _Rewrite(
            (self._clone(layer, strides=1),),
            f"strides {strides} -> 1",
            subsample=True,
        )

    def _shift_invariant_down(self, layer, strides):
        """ShiftInvariantDown for a strided conv (its filters, kernel size, bias
        and activation) or pool (as many filters as channels, kernel size 3)."""
        if isinstance(layer, _POOLS):
            window = layer.pool_size
            filters = layer.input.shape[channel_axis(layer.data_format)]
            kernel_size, use_bias, regularizer = 3, True, None
            activation = keras.activations.linear
        else:
            window = layer.kernel_size
            filters, kernel_size = layer.filters, layer.kernel_size[0]
            use_bias, regularizer = layer.use_bias, layer.kernel_regularizer
            activation = layer.activation
        new = []
        if layer.padding == "valid" and max(window) > 1:
            # ShiftInvariantDown keeps ceil(size / s) rows; cropping k - 1 first
            # gives the valid layer's floor((size - k) / s) + 1.
            new.append(
                keras.layers.Cropping2D(
                    tuple(((k - 1) // 2, k // 2) for k in window),
                    data_format=layer.data_format,
                    name=self._fresh_name(f"{layer.name}_crop"),
                    dtype=layer.dtype_policy,
                )
            )
        new.append(
            self.policy.shift_invariant_down(
                filters,
                kernel_size,
                strides=strides,
                use_bias=use_bias,
                kernel_regularizer=regularizer,
                data_format=layer.data_format,
                name=layer.name,
                dtype=layer.dtype_policy,
            )
        )
        if not _is_linear(activation):
            new.append(
                keras.layers.Activation(
                    activation,
                    name=self._fresh_name(f"{layer.name}_activation"),
                    dtype=layer.dtype_policy,
                )
            )
        return _Rewrite(
            tuple(new),
            f"-> ShiftInvariantDown(branch={self.variant!r}), new weights",
            subsample=False,
        )

    def _clone(self, layer, **changes):
        if id(layer) in self._clones:
            return self._clones[id(layer)][1]
        try:
            config = layer.get_config()
            config.update(changes)
            if isinstance(layer, keras.layers.Lambda):
                # The function is a live object of this process, not file data.
                clone = keras.layers.Lambda.from_config(config, safe_mode=False)
            else:
                clone = type(layer).from_config(config)
        except (NotImplementedError, TypeError) as error:
            raise ValueError(
                f"antialias() clones every layer from its config and cannot clone "
                f"{layer.name!r} ({type(layer).__name__}): {error}"
            ) from error
        self._clones[id(layer)] = (layer, clone)
        return clone

    # Subsampling layers, one set per strided layer (shared with its calls).

    def _fresh_name(self, name):
        candidate, i = name, 0
        while candidate in self.taken:
            i += 1
            candidate = f"{name}_{i}"
        self.taken.add(candidate)
        return candidate

    def _subsampler(self, source, role, factory, **kwargs):
        key = (id(source), role)
        if key not in self._subsamplers:
            self._subsamplers[key] = factory(
                data_format=source.data_format,
                name=self._fresh_name(f"{source.name}_{role}"),
                dtype=source.dtype_policy,
                **kwargs,
            )
        return self._subsamplers[key]

    def _subsample(self, spec, x, state):
        source = spec.source
        strides = _strides(source)
        if self.variant == "blur":
            new = [
                self._subsampler(
                    source, "blurpool", self.policy.blur_pool, strides=strides
                )
            ]
            y = _call_new(new[0], source, x)
        elif self.policy.uses_modules:
            new = [
                self._subsampler(
                    source,
                    "shift_invariant_down",
                    self.policy.shift_invariant_down,
                    filters=x.shape[channel_axis(source.data_format)],
                    kernel_size=3,
                    strides=strides,
                )
            ]
            y = _call_new(new[0], source, x)
        else:
            new, y = self._polyphase(spec, x, state, strides)
        rewrite = self._rewrites[id(source)]
        action = f"{rewrite.action}; {type(new[-1]).__name__} {spec.where}"
        self._record(source, state.prefix, action, rewrite.layers + tuple(new))
        state.called.extend(new)
        return y

    def _polyphase(self, spec, x, state, strides):
        """PolyphaseDown2D, or the polyphase component a tied call chose."""
        source = spec.source
        size = tuple(x.shape[axis] for axis in spatial_axes(source.data_format))
        chosen = state.ties.get(spec.tie)
        if chosen is not None and chosen[1] == size:
            new = [
                self._subsampler(
                    source,
                    "polyphase_gather",
                    si_layers.PolyphaseGather2D,
                    strides=strides,
                )
            ]
            if self.policy.filt_size > 1:
                new.insert(
                    0,
                    self._subsampler(source, "blur", self.policy.blur_pool, strides=1),
                )
                x = _call_new(new[0], source, x)
            return new, _call_new(new[-1], source, [x, chosen[0]])
        choose = spec.tie is not None and chosen is None
        role = "polyphase_down_choose" if choose else "polyphase_down"
        new = [
            self._subsampler(
                source,
                role,
                self.policy.polyphase_down,
                strides=strides,
                return_indices=choose,
            )
        ]
        y = _call_new(new[0], source, x)
        if choose:
            y, index = y
            state.ties[spec.tie] = (index, size)
        return new, y
