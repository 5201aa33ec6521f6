"""Network building blocks shared by every model.

Layers that meta-learning needs to run with adapted ("fast") weights take an optional
``params`` mapping from parameter name (as in ``layer.named_parameters()``) to tensor; any name
missing from the mapping uses the layer's own parameter. This keeps one implementation for the
ordinary and the fast-weight forward pass.
"""
import math

import numpy as np

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.autograd import PyLayer


def _param(layer, name, params, prefix=""):
    """The tensor to use for ``layer.<name>``: the fast weight if given, else the parameter."""
    if params is not None:
        fast = params.get(prefix + name)
        if fast is not None:
            return fast
    return getattr(layer, name)


def sub_params(params, prefix):
    """The part of a ``params`` mapping under ``prefix.``, with the prefix removed."""
    if params is None:
        return None
    prefix = prefix + "."
    return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}


def expanded(*tensors):
    """The tensors expanded (views, no copy) to their common broadcast shape. paddle's CPU
    elementwise kernels are fast when the operands have one shape and slow when they broadcast:
    [1024, 13, 1] * [1, 13, 16] takes 2.5 ms, 0.36 once both are expanded (6.4 against 1.5 with
    the backward pass); [1024, 256] + [1, 256] 2.6 against 0.1. Same values and gradients.
    Traced into a static graph (export) the shapes hold -1: the operands stay as they are."""
    if not paddle.in_dynamic_mode():
        return list(tensors)
    shape = list(np.broadcast_shapes(*[tuple(t.shape) for t in tensors]))
    return [t if list(t.shape) == shape else t.expand(shape) for t in tensors]


def add_bias(x, bias):
    """``x [..., B, out] + bias [out]`` (or ``[..., out]`` per leading index), computed as
    ``x + ones[..., B, 1] @ bias[..., 1, out]``: the same sum (1 x b is exact), but its bias
    gradient is a matmul instead of a broadcast reduction, which paddle's CPU kernels do much
    slower - measured 3x for MetaHeac's [8, 1024, 64] expert layer, 1.4x for its [1024, 512] one,
    forward + backward, and as much with a second-order pass."""
    if not paddle.is_grad_enabled() or bias.stop_gradient:  # no bias gradient to speed up
        return paddle.add(*expanded(x, bias.unsqueeze(-2)))
    ones = paddle.ones(x.shape[:-1] + [1], dtype=x.dtype)
    return x + paddle.matmul(ones, bias.unsqueeze(-2))


class _SplitViews(PyLayer):
    @staticmethod
    def forward(ctx, x, sizes, axis):
        ctx.axis, ctx.dtype = axis, x.dtype
        ctx.shapes = []
        parts, start = [], 0
        for size in sizes:
            parts.append(x[(slice(None),) * axis + (slice(start, start + size),)])
            ctx.shapes.append(parts[-1].shape)
            start += size
        return tuple(parts)

    @staticmethod
    def backward(ctx, *grads):
        grads = [g if g is not None else paddle.zeros(shape, dtype=ctx.dtype) for g, shape in zip(grads, ctx.shapes)]
        return paddle.concat(grads, axis=ctx.axis)


def split_views(x, sizes, axis=-1):
    """``x`` cut along ``axis`` into parts of ``sizes``: views (no copy), whose gradients are joined
    by one concat. The same values and gradient as slices, whose gradients paddle's CPU kernels
    zero-fill, pad and add (11 ms against 2.6 for DeepFM's [1024, 26, 1 + 16] rows cut into 1 and
    16 columns); paddle.split copies in the forward pass instead. Traced into an inference graph
    (export: no backward pass; ONNX has no PyLayer) it is paddle.split."""
    axis = axis % x.ndim
    if len(sizes) == 1:
        return [x]
    if not paddle.in_dynamic_mode():
        return paddle.split(x, list(sizes), axis=axis)
    return list(_SplitViews.apply(x, list(sizes), axis))


def l2_normalize(x, epsilon=1e-12):
    """``x / max(||x||_2, epsilon)`` over the last axis, as F.normalize, from elementwise ops: paddle's
    p_norm gradient is 5x slower on CPU (3.7 ms against 0.7 for [1024, 3, 16], forward + backward).
    Within float rounding of F.normalize."""
    # rsqrt of the clipped square: a zero vector gets F.normalize's gradient (1 / epsilon), not
    # the NaN of sqrt's gradient at 0
    squared = paddle.clip(paddle.sum(x * x, axis=-1, keepdim=True), min=epsilon * epsilon)
    return paddle.multiply(*expanded(x, paddle.rsqrt(squared)))


_ACTIVATIONS = {
    "relu": F.relu,
    "sigmoid": F.sigmoid,
    "tanh": F.tanh,
    "none": lambda x: x,
}


class MLP(nn.Layer):
    """Stack of Linear -> activation (-> dropout) layers.

    ``dims`` lists the output size of each layer. ``last_activation`` says whether the final layer
    is followed by the activation too (PaddleRec's towers usually end with a plain Linear).
    ``init``: ``"normal"`` - weights normal(0, 1/sqrt(fan_in)), zero bias (PaddleRec's choice for
    DeepFM); ``"torch"`` - PyTorch's nn.Linear default, weight and bias uniform(+-1/sqrt(fan_in))
    (kaiming-uniform with a=sqrt(5) gives exactly that bound).
    """

    def __init__(self, input_dim, dims, activation="relu", dropout=0.0, last_activation=True, init="normal"):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"MLP activation {activation!r} unknown; expected one of {sorted(_ACTIVATIONS)}")
        self.activation = _ACTIVATIONS[activation]
        self.dropout = dropout
        self.last_activation = last_activation
        if init not in ("normal", "torch"):
            raise ValueError(f"MLP init {init!r} unknown; expected 'normal' or 'torch'")
        self.linears = nn.LayerList()
        for out_dim in dims:
            bound = 1.0 / math.sqrt(input_dim)
            if init == "torch":
                uniform = nn.initializer.Uniform(low=-bound, high=bound)
                attrs = dict(weight_attr=paddle.ParamAttr(initializer=uniform),
                             bias_attr=paddle.ParamAttr(initializer=nn.initializer.Uniform(low=-bound, high=bound)))
            else:
                attrs = dict(weight_attr=paddle.ParamAttr(initializer=nn.initializer.Normal(std=bound)))
            self.linears.append(nn.Linear(input_dim, out_dim, **attrs))
            input_dim = out_dim
        self.output_dim = input_dim

    def forward(self, x, params=None, projected=False):
        """``projected``: ``x`` is already the first layer's product ``input @ weight`` (which a caller
        may compute in parts, without joining the input), so only its bias and activation remain."""
        last = len(self.linears) - 1
        for i, linear in enumerate(self.linears):
            if not (projected and i == 0):
                x = paddle.matmul(x, _param(linear, "weight", params, f"linears.{i}."))
            x = add_bias(x, _param(linear, "bias", params, f"linears.{i}."))
            if i < last or self.last_activation:
                x = self.activation(x)
                if self.dropout > 0 and self.training:
                    x = dropout(x, self.dropout)
        return x


class ExpertBank(nn.Layer):
    """``num_expert`` parallel MLPs of the same shape (``MLP(input_dim, dims, activation)`` each)
    computed together: x [B, input_dim] -> [B, num_expert, dims[-1]].

    Layer i keeps the experts' weights in one parameter ``weight_i`` [E, in, out] and biases in
    ``bias_i`` [E, out]. The first layer (all experts read the same input) is one wide matmul
    x @ [in, E * out]; later layers are one batched matmul over the experts. The math is that of
    E separate MLPs, and so is the initialisation: the weights are drawn expert by expert, layer by
    layer, from paddle's generator exactly as E ``MLP`` layers would draw them.
    """

    def __init__(self, num_expert, input_dim, dims, activation="relu", dropout=0.0, last_activation=True,
                 init="normal"):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"ExpertBank activation {activation!r} unknown; expected one of {sorted(_ACTIVATIONS)}")
        if init not in ("normal", "torch"):
            raise ValueError(f"ExpertBank init {init!r} unknown; expected 'normal' or 'torch'")
        self.num_expert = num_expert
        self.activation = _ACTIVATIONS[activation]
        self.dropout = dropout
        self.last_activation = last_activation
        self.dims = list(dims)
        shapes, fan_in = [], input_dim
        for out_dim in dims:
            shapes.append((fan_in, out_dim))
            fan_in = out_dim
        self.output_dim = fan_in
        def draw(i, o):  # (weight, bias) of one expert's layer, as MLP's init draws them
            bound = 1.0 / math.sqrt(i)
            if init == "torch":  # torch's nn.Linear default: weight and bias U(-1/sqrt(in), 1/sqrt(in))
                return paddle.uniform([i, o], min=-bound, max=bound), paddle.uniform([o], min=-bound, max=bound)
            return paddle.normal(0.0, bound, [i, o]), paddle.zeros([o])

        draws = [[draw(i, o) for i, o in shapes] for _ in range(num_expert)]
        for layer, (i, o) in enumerate(shapes):
            weight = self.create_parameter([num_expert, i, o], default_initializer=nn.initializer.Constant(0.0))
            weight.set_value(paddle.stack([draws[e][layer][0] for e in range(num_expert)]))  # not Assign: no list copy
            bias = self.create_parameter([num_expert, o], is_bias=True,
                                         default_initializer=nn.initializer.Constant(0.0))
            bias.set_value(paddle.stack([draws[e][layer][1] for e in range(num_expert)]))
            setattr(self, f"weight_{layer}", weight)
            setattr(self, f"bias_{layer}", bias)

    def first_weight(self, params=None):
        """Layer 0's weights as one [in, E * out] matrix (expert e's outputs in columns e * out ..)."""
        weight = _param(self, "weight_0", params)
        return paddle.transpose(weight, [1, 0, 2]).reshape([weight.shape[1], -1])

    def forward(self, x, params=None, projected=False):
        """``projected``: ``x`` is already ``input @ first_weight()`` (a caller's wider matmul, which
        computes more columns from the same input, included it)."""
        batch, experts = x.shape[0], self.num_expert
        last = len(self.dims) - 1
        for layer, out_dim in enumerate(self.dims):
            bias = _param(self, f"bias_{layer}", params)
            if layer == 0:  # [B, in] @ [in, E * out] -> [B, E, out]
                if not projected:
                    x = paddle.matmul(x, self.first_weight(params))
                x = add_bias(x, bias.reshape([-1])).reshape([batch, experts, out_dim])
                if last > 0:  # [E, B, out] for the batched matmuls of the later layers
                    x = paddle.transpose(x, [1, 0, 2])
            else:  # [E, B, in] @ [E, in, out]
                x = add_bias(paddle.matmul(x, _param(self, f"weight_{layer}", params)), bias)
            if layer < last or self.last_activation:
                x = self.activation(x)
                if self.dropout > 0 and self.training:
                    x = dropout(x, self.dropout)
        return x if last == 0 else paddle.transpose(x, [1, 0, 2])  # [B, E, out]


def dropout(x, p):
    """Inverted dropout as a mask multiply: the same expectation as F.dropout, but twice
    differentiable (paddle's dropout_grad has no gradient of its own, so second-order MAML
    through F.dropout fails). The mask comes from paddle's generator (paddle.seed)."""
    keep = (paddle.rand(x.shape, dtype=x.dtype) >= p).astype(x.dtype)
    return x * keep / (1.0 - p)


class FMInteraction(nn.Layer):
    """Factorization-machine terms over per-field embeddings.

    first order:  sum_i w_i              (w: [batch, fields, 1])
    second order: 0.5 * sum_k ((sum_i v_ik)^2 - sum_i v_ik^2)   (v: [batch, fields, dim])
    Both return [batch, 1].
    """

    @staticmethod
    def first_order(weights):
        return paddle.sum(weights, axis=1)

    @staticmethod
    def second_order(embeddings):
        return FMInteraction.pairwise(*FMInteraction.field_sums(embeddings))

    @staticmethod
    def field_sums(embeddings):
        """[B, F, dim] -> (sum over the fields, sum of the squares over the fields), [B, dim] each."""
        # Sums over the fields as [1, F] @ [B, F, dim]: paddle's reduction over a middle axis is 4x
        # slower on CPU (0.63 against 0.16 ms for [1024, 39, 16]).
        ones = paddle.ones([1, embeddings.shape[1]], dtype=embeddings.dtype)
        return paddle.matmul(ones, embeddings).squeeze(1), paddle.matmul(ones, embeddings * embeddings).squeeze(1)

    @staticmethod
    def pairwise(summed, sum_of_squares):
        """The second-order term from ``field_sums``' two [B, dim] sums."""
        return 0.5 * paddle.sum(summed * summed - sum_of_squares, axis=1, keepdim=True)


class DeepFMHead(nn.Layer):
    """DeepFM's prediction from per-field embeddings (Guo et al., IJCAI 2017), for models whose
    fields are embedded elsewhere (models.common.embedding):

        logit = bias [+ sum_i w_i] + FM second order(v) + DNN(concat(v))

    ``forward(embeddings [B, F, dim], first_order=None or [B, F, 1])`` -> logit [B, 1]. Every op has
    a second derivative, so meta-learning can differentiate through an inner step on an input
    embedding (MetaEmb)."""

    def __init__(self, num_fields, dim, layer_sizes, activation="relu", init="normal"):
        super().__init__()
        self.dnn = MLP(num_fields * dim, layer_sizes, activation=activation, init=init)
        self.dnn_out = MLP(self.dnn.output_dim, [1], last_activation=False, init=init)
        self.bias = self.create_parameter([1], default_initializer=nn.initializer.Constant(0.0))

    def forward(self, embeddings, first_order=None):
        flat = embeddings.reshape([embeddings.shape[0], -1])  # reshape, not flatten: flatten has no double grad
        logit = FMInteraction.second_order(embeddings) + self.dnn_out(self.dnn(flat))
        if first_order is not None:
            logit = logit + FMInteraction.first_order(first_order)
        return logit + self.bias


class CrossNetV2(nn.Layer):
    """DCN-v2's cross network (Wang et al., WWW 2021, Eq. 1), ``num_layers`` layers over x0 [B, d]:

        x_{l+1} = x0 * (x_l W_l + b_l) + x_l        W_l: a full [d, d] matrix, b_l [d]

    (paddle's [in, out] layout: x W is the paper's W x). Layer l makes the polynomial degree l + 2
    and keeps the lower ones through the residual. W_l starts He-normal and b_l at zero, as the paper."""

    def __init__(self, input_dim, num_layers):
        super().__init__()
        self.output_dim = input_dim
        for layer in range(num_layers):
            setattr(self, f"weight_{layer}", self.create_parameter(
                [input_dim, input_dim], default_initializer=nn.initializer.KaimingNormal(fan_in=input_dim)))
            setattr(self, f"bias_{layer}", self.create_parameter(
                [input_dim], is_bias=True, default_initializer=nn.initializer.Constant(0.0)))
        self.num_layers = num_layers

    def forward(self, x0):
        x = x0
        for layer in range(self.num_layers):
            x = x0 * add_bias(paddle.matmul(x, getattr(self, f"weight_{layer}")), getattr(self, f"bias_{layer}")) + x
        return x
