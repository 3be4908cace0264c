"""The trained part of semcat: a softmax (multinomial logistic regression) head on frozen features.

scikit-learn style: ``__init__`` stores hyperparameters, ``fit`` learns ``classes_``, ``coef_``,
``intercept_``, ``n_features_in_`` (and ``mean_``/``scale_`` when standardising) and returns self.
Implemented in torch (float32, CPU) with two solvers:

- ``"lbfgs"`` (default): full-batch L-BFGS (history 20, Armijo backtracking) on the convex,
  L2-regularised cross-entropy. Zero initialisation, no sampling, so it is deterministic.
  Chosen as the default by measurement (``benchmarks/head.py``): equal or better accuracy than
  Adam on bottleneck features in less time, and no learning rate to tune.
- ``"adam"``: minibatch Adam, as the paper's retraining of the last layer; the seed fixes the
  minibatch order.

With a validation set the head is evaluated after each round (one epoch for Adam, ten L-BFGS
iterations) and the parameters with the lowest validation loss are kept (early stopping).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from semcat._validation import (
    check_consistent_length,
    check_features,
    check_is_fitted,
    check_labels,
)

# torch is imported only to fit: predicting is NumPy, and a process that only classifies (a Spark
# executor, `semcat classify`) saves torch's start-up and ~480 MiB of memory.
if TYPE_CHECKING:
    import torch

__all__ = ["SoftmaxHead"]

_SOLVERS = ("lbfgs", "adam")
_DEFAULT_EPOCHS = {"lbfgs": 300, "adam": 60}
_DEFAULT_LR = {"lbfgs": 1.0, "adam": 1e-2}
_LBFGS_ROUND = 10


class SoftmaxHead:
    """Linear softmax classifier on feature vectors.

    Parameters
    ----------
    solver : {"lbfgs", "adam"}
        Full-batch L-BFGS (default) or minibatch Adam.
    weight_decay : float
        L2 penalty ``0.5 * weight_decay * ||W||^2`` added to the mean cross-entropy.
    lr : float or None
        Adam step size (None = 1e-2); for L-BFGS the first trial step of each line search (None = 1.0).
    epochs : int or None
        Adam: passes over the training set. L-BFGS: maximum iterations (each is one full pass).
        None = 300 for L-BFGS, 60 for Adam.
    batch_size : int
        Adam minibatch size (ignored by L-BFGS).
    class_weight : {None, "balanced"}
        "balanced" weights each class by ``n_samples / (n_classes * count)`` so rare classes count.
    early_stopping : bool
        With ``X_val``/``y_val``, keep the parameters of the round with the lowest validation loss.
    patience : int
        Rounds without validation improvement before stopping.
    seed : int
        Fixes the minibatch order (Adam); L-BFGS is deterministic anyway.
    standardize : bool
        Centre and scale each feature with training statistics (``mean_``, ``scale_``); ``coef_``
        then applies to standardised features.
    classes : sequence of labels or None
        Fix the class order (e.g. the NFFA order); None = sorted unique training labels.
    tol : float
        L-BFGS stops when the loss changes less than this between iterations.
    n_threads : int or None
        torch threads while fitting (None = torch's default). 1 by default: a head's matrices are
        small, and on a busy machine two threads measured up to 80x slower than one.
    """

    def __init__(
        self,
        *,
        solver: str = "lbfgs",
        weight_decay: float = 1e-3,
        lr: float | None = None,
        epochs: int | None = None,
        batch_size: int = 128,
        class_weight: str | None = None,
        early_stopping: bool = True,
        patience: int = 5,
        seed: int = 0,
        standardize: bool = True,
        classes: list | tuple | None = None,
        tol: float = 1e-7,
        n_threads: int | None = 1,
    ) -> None:
        self.solver = solver
        self.weight_decay = weight_decay
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.class_weight = class_weight
        self.early_stopping = early_stopping
        self.patience = patience
        self.seed = seed
        self.standardize = standardize
        self.classes = classes
        self.tol = tol
        self.n_threads = n_threads

    # -- parameters ---------------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """Hyperparameters as a JSON-safe dict (saved in the model artifact)."""
        params = {k: getattr(self, k) for k in _PARAM_NAMES}
        if params["classes"] is not None:
            params["classes"] = [str(c) for c in params["classes"]]
        return params

    def set_params(self, **params: Any) -> SoftmaxHead:
        """Change hyperparameters (unknown names are refused); returns self."""
        for k, v in params.items():
            if k not in _PARAM_NAMES:
                raise ValueError(f"SoftmaxHead has no parameter {k!r}; valid: {', '.join(_PARAM_NAMES)}.")
            setattr(self, k, v)
        return self

    def _check_params(self) -> None:
        if self.solver not in _SOLVERS:
            raise ValueError(f"The 'solver' parameter of SoftmaxHead must be one of {_SOLVERS}. Got {self.solver!r} instead.")
        if self.class_weight not in (None, "balanced"):
            raise ValueError(f"The 'class_weight' parameter of SoftmaxHead must be None or 'balanced'. Got {self.class_weight!r} instead.")
        if not self.weight_decay >= 0:
            raise ValueError(f"The 'weight_decay' parameter of SoftmaxHead must be >= 0. Got {self.weight_decay!r} instead.")
        if self.epochs is not None and int(self.epochs) < 1:
            raise ValueError(f"The 'epochs' parameter of SoftmaxHead must be >= 1. Got {self.epochs!r} instead.")
        if int(self.batch_size) < 1:
            raise ValueError(f"The 'batch_size' parameter of SoftmaxHead must be >= 1. Got {self.batch_size!r} instead.")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"The 'lr' parameter of SoftmaxHead must be > 0. Got {self.lr!r} instead.")

    # -- training -----------------------------------------------------------------------------
    def fit(self, X: object, y: object, X_val: object | None = None, y_val: object | None = None) -> SoftmaxHead:
        """Learn the head from features ``X`` (n, d) and labels ``y`` (n,); forgets earlier fits."""
        self._check_params()
        X = check_features(X, name="X", min_samples=2)
        y = check_labels(y, name="y")
        check_consistent_length(X=X, y=y)
        classes = np.asarray(self.classes) if self.classes is not None else np.unique(y)
        if len(classes) < 2:
            raise ValueError(f"training needs at least 2 classes; got {len(classes)} ({list(classes)}). Add images of other classes.")
        yi = _encode(y, classes, "y")
        has_val = X_val is not None and y_val is not None
        if has_val:
            X_val = check_features(X_val, name="X_val", n_features=X.shape[1])
            y_val = check_labels(y_val, name="y_val")
            check_consistent_length(X_val=X_val, y_val=y_val)
            yv = _encode(y_val, classes, "y_val")

        for attr in ("coef_", "intercept_", "mean_", "scale_", "n_iter_", "val_loss_"):
            self.__dict__.pop(attr, None)
        if self.standardize:
            mean = X.mean(axis=0, dtype=np.float64).astype(np.float32)
            scale = X.std(axis=0, dtype=np.float64).astype(np.float32)
            scale[scale < 1e-8] = 1.0
        else:
            mean = np.zeros(X.shape[1], np.float32)
            scale = np.ones(X.shape[1], np.float32)

        import torch

        k, d = len(classes), X.shape[1]
        Xt = torch.from_numpy((X - mean) / scale)
        yt = torch.from_numpy(yi)
        weight = None
        if self.class_weight == "balanced":
            counts = np.bincount(yi, minlength=k).astype(np.float32)
            w = np.where(counts > 0, len(yi) / (k * np.maximum(counts, 1)), 0.0).astype(np.float32)
            weight = torch.from_numpy(w)
        val = (torch.from_numpy((X_val - mean) / scale), torch.from_numpy(yv)) if has_val and self.early_stopping else None

        W = torch.zeros(k, d, dtype=torch.float32, requires_grad=True)
        b = torch.zeros(k, dtype=torch.float32, requires_grad=True)
        epochs = int(self.epochs or _DEFAULT_EPOCHS[self.solver])
        lr = float(self.lr or _DEFAULT_LR[self.solver])
        fit = _fit_lbfgs if self.solver == "lbfgs" else _fit_adam
        threads = torch.get_num_threads()
        if self.n_threads:
            torch.set_num_threads(int(self.n_threads))
        try:
            n_iter, val_loss = fit(self, W, b, Xt, yt, weight, val, epochs, lr)
        finally:
            torch.set_num_threads(threads)

        self.classes_ = classes
        self.n_features_in_ = d
        self.coef_ = W.detach().numpy().copy()
        self.intercept_ = b.detach().numpy().copy()
        if self.standardize:
            self.mean_, self.scale_ = mean, scale
        self.n_iter_ = n_iter
        self.val_loss_ = val_loss
        return self

    def _loss(self, W: torch.Tensor, b: torch.Tensor, X: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        import torch.nn.functional as F

        loss = F.cross_entropy(X @ W.T + b, y, weight=weight)
        if self.weight_decay:
            loss = loss + 0.5 * float(self.weight_decay) * (W * W).sum()
        return loss

    # -- prediction ---------------------------------------------------------------------------
    def decision_function(self, X: object) -> np.ndarray:
        """Logits, shape (n_samples, n_classes), float32."""
        check_is_fitted(self)
        X = check_features(X, n_features=self.n_features_in_)
        if self.standardize:
            X = (X - self.mean_) / self.scale_
        return (X @ self.coef_.T + self.intercept_).astype(np.float32, copy=False)

    def predict_proba(self, X: object) -> np.ndarray:
        """Softmax probabilities, shape (n_samples, n_classes); rows sum to 1."""
        return softmax(self.decision_function(X))

    def predict(self, X: object) -> np.ndarray:
        """The most probable class label of each row."""
        logits = self.decision_function(X)
        return self.classes_[np.argmax(logits, axis=1)]


_PARAM_NAMES = (
    "solver", "weight_decay", "lr", "epochs", "batch_size", "class_weight", "early_stopping",
    "patience", "seed", "standardize", "classes", "tol", "n_threads",
)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable row-wise softmax in float32."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z, dtype=np.float32)
    return e / e.sum(axis=1, keepdims=True)


def _encode(y: np.ndarray, classes: np.ndarray, name: str) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes.tolist())}
    try:
        return np.fromiter((index[v] for v in y.tolist()), dtype=np.int64, count=len(y))
    except KeyError as exc:
        raise ValueError(
            f"{name} contains the label {exc.args[0]!r}, which is not one of the classes "
            f"{list(index)}; fix the label or add it to `classes`."
        ) from None


class _Best:
    """Keeps the parameters of the round with the lowest validation loss."""

    def __init__(self, head: SoftmaxHead, val: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        self.head, self.val = head, val
        self.loss = float("inf")
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None
        self.bad_rounds = 0

    def update(self, W: torch.Tensor, b: torch.Tensor) -> bool:
        """Record this round; True when patience is exhausted."""
        if self.val is None:
            return False
        import torch
        import torch.nn.functional as F

        with torch.no_grad():
            loss = float(F.cross_entropy(self.val[0] @ W.T + b, self.val[1]))
        if loss < self.loss - 1e-6:
            self.loss, self.state, self.bad_rounds = loss, (W.detach().clone(), b.detach().clone()), 0
        else:
            self.bad_rounds += 1
        return self.bad_rounds >= self.head.patience

    def restore(self, W: torch.Tensor, b: torch.Tensor) -> float | None:
        if self.state is not None:
            import torch

            with torch.no_grad():
                W.copy_(self.state[0])
                b.copy_(self.state[1])
        return None if self.val is None else self.loss


def _fit_lbfgs(head, W, b, X, y, weight, val, epochs, lr):  # type: ignore[no-untyped-def]
    """Full-batch L-BFGS (two-loop recursion, Armijo backtracking) on torch gradients.

    Written out because torch.optim imports torch._dynamo (seconds of start-up, more than the
    whole fit) and scipy's L-BFGS-B runs BLAS threads that crawl on a busy machine.
    """
    import torch

    k, d = W.shape
    n_params = k * (d + 1)

    def split(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return t[: k * d].view(k, d), t[k * d:]

    def value_grad(t: torch.Tensor) -> tuple[float, torch.Tensor]:
        p = t.detach().requires_grad_(True)
        loss = head._loss(*split(p), X, y, weight)
        (g,) = torch.autograd.grad(loss, p)
        return float(loss.detach()), g

    theta = torch.zeros(n_params, dtype=torch.float32)
    f, g = value_grad(theta)
    S: list[torch.Tensor] = []
    Y: list[torch.Tensor] = []
    best, n_iter = _Best(head, val), 0
    while n_iter < epochs and float(g.abs().max()) > 1e-6:
        q, alphas = -g, []
        for s_i, y_i in zip(reversed(S), reversed(Y)):
            rho = 1.0 / float(y_i @ s_i)
            a = rho * float(s_i @ q)
            alphas.append((a, rho))
            q = q - a * y_i
        q = q * (float(S[-1] @ Y[-1]) / float(Y[-1] @ Y[-1]) if S else 1.0 / max(1.0, float(g.norm())))
        for (s_i, y_i), (a, rho) in zip(zip(S, Y), reversed(alphas)):
            q = q + (a - rho * float(y_i @ q)) * s_i
        slope = float(g @ q)
        if slope >= 0:  # not a descent direction (numerical trouble): fall back to the gradient
            q, slope, S, Y = -g, -float(g @ g), [], []
        step = lr
        while True:
            f_new, g_new = value_grad(theta + step * q)
            if f_new <= f + 1e-4 * step * slope or step < 1e-10:
                break
            step *= 0.5
        s_new, y_new = step * q, g_new - g
        if float(s_new @ y_new) > 1e-10:
            S, Y = (S + [s_new])[-20:], (Y + [y_new])[-20:]
        theta, n_iter = theta + s_new, n_iter + 1
        converged = abs(f - f_new) <= float(head.tol) * max(1.0, abs(f))
        f, g = f_new, g_new
        if (n_iter % _LBFGS_ROUND == 0 or converged) and best.update(*split(theta)):
            break
        if converged:
            break
    with torch.no_grad():
        W.copy_(split(theta)[0])
        b.copy_(split(theta)[1])
    best.update(W, b)
    return n_iter, best.restore(W, b)


def _fit_adam(head, W, b, X, y, weight, val, epochs, lr):  # type: ignore[no-untyped-def]
    """Minibatch Adam (Kingma & Ba), written out: torch.optim's import costs seconds."""
    import torch

    gen = torch.Generator().manual_seed(int(head.seed))
    n, bs = X.shape[0], int(head.batch_size)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in (W, b)]
    best, n_iter, step = _Best(head, val), 0, 0
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, bs):
            idx = order[start:start + bs]
            W.grad = b.grad = None
            head._loss(W, b, X[idx], y[idx], weight).backward()
            step += 1
            with torch.no_grad():
                for p, (m, v) in zip((W, b), moments):
                    m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                    v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                    denom = (v / (1 - beta2 ** step)).sqrt_().add_(eps)
                    p.addcdiv_(m, denom, value=-lr / (1 - beta1 ** step))
        n_iter += 1
        if best.update(W, b):
            break
    return n_iter, best.restore(W, b)
