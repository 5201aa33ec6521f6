"""Meta-learning (MAML-style) building blocks: fast weights for huge embedding tables and the
inner SGD step.

A fast-weight pass over a whole embedding table (W' = W - lr * dW for a 263k x 64 table) costs a
dense write of every row although one support batch touches a few hundred of them. Here a task
works on a *row subset* instead:

    rows  = W[U]                     U: unique ids of the task's support + query batches
    local = position of each id in U (so rows[local] == W[ids])

The inner step updates ``rows`` only; rows the support batch did not use have zero gradient and
stay equal to W's rows, so ``rows' [local]`` equals ``W'[ids]`` of the dense update exactly.
``rows`` comes from a row-sparse lookup, so the meta-gradient reaching W is row-sparse too
(``compact_ids`` and ``gather_rows``, models.common.embedding).

Lookups inside the task go through ``lookup`` (a gather), which - unlike paddle's embedding op -
has a second derivative, so second-order MAML works through the inner step.
"""
import paddle


def lookup(rows, ids):
    """rows[ids] for ids of any shape -> [..., dim]; twice differentiable (gather)."""
    out = paddle.gather(rows, ids.reshape([-1]))
    return out.reshape(list(ids.shape) + [rows.shape[-1]])


def inner_sgd_step(loss, params, lr, first_order=False):
    """One SGD step on ``loss`` over ``params`` ({name: tensor}) -> new {name: fast tensor}.

    Second order (default): the gradient keeps its graph, so a later loss on the fast weights
    differentiates through the step (MAML). First order: the gradient is a constant and the fast
    weights depend on the slow ones through the identity only (FOMAML).
    Tensors that ``loss`` does not depend on are returned unchanged.
    """
    names = list(params)
    # retain_graph: the query loss later back-propagates through tensors this graph shares
    # (e.g. the gathered table rows).
    grads = paddle.grad(loss, [params[n] for n in names], create_graph=not first_order, retain_graph=True,
                        allow_unused=True)
    fast = {}
    for name, grad in zip(names, grads):
        if grad is None:
            fast[name] = params[name]
        else:
            fast[name] = params[name] - lr * (grad.detach() if first_order else grad)
    return fast


# Paddle has no second derivative for its softmax, mean-reduction and BCE kernels; these
# equivalents are built from ops that have one, so second-order MAML can go through them.
def softmax(x, axis=-1):
    shifted = x - paddle.max(x, axis=axis, keepdim=True).detach()  # shift-invariant: detaching is exact
    e = paddle.exp(shifted)
    return e / paddle.sum(e, axis=axis, keepdim=True)


def binary_cross_entropy(pred, label, eps=1e-7):
    """Mean BCE of probabilities ``pred`` against 0/1 ``label`` (same shape after flattening)."""
    pred = paddle.clip(pred.reshape([-1]), eps, 1.0 - eps)
    label = label.astype(pred.dtype).reshape([-1])
    return -paddle.sum(label * paddle.log(pred) + (1.0 - label) * paddle.log(1.0 - pred)) / pred.shape[0]
