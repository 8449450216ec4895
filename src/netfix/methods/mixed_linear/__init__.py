"""Mixed-privacy forgetting (Golatkar et al., CVPR 2021; docs/methods.md §4): a mixed-linear model whose user data can be
deleted exactly and fast, with a computable bound on what remains.

A *core* network f(·; w_c), trained on data that never needs forgetting, is frozen (BatchNorm in eval mode). User
data trains only *user weights* w_u for a chosen set of late modules, through the first-order expansion around the
core:

    f_ML(x) = f(x; w_c) + J(x)·w_u,        J(x) = ∂f(x; w)/∂w_lin at w_c,

computed with one forward-mode pass (``torch.func.jvp``: the primal is the core's output, the tangent is J(x)·w_u).
The core's features below the linearised modules are computed once per input and cached (the same cut as
:class:`~netfix.models.split.FrozenSplit`). The user loss is quadratic in w_u,

    L(w_u) = 1/(N·K) Σ_i ½‖f_ML(x_i) − s·onehot(y_i)‖² + λ/2 ‖w_u‖²        (s = 5, λ = 5e-4),

so forgetting a subset is one exact Newton step on the remaining user data D_r,

    w_u ← w_u − H_r⁻¹ ∇L_r(w_u),      H_r v = 1/(|D_r|·K) Σ J_iᵀ(J_i v) + λ v,

solved by conjugate gradient on Gauss–Newton products (a JVP, then a VJP; H is exactly the Gauss–Newton matrix
here). By λ-strong convexity the result is within ‖∇L_r(w_u')‖/λ of the retrained optimum, and with Gaussian noise of
std σ added to w_u', the KL divergence between the forgotten and the retrained weight distributions is at most
‖∇L_r(w_u')‖² / (2σ²λ²) nats — the bound every forget reports. Removing *all* user data is exact: w_u = 0.

One idea per file: ``model.py`` (:class:`MixedLinear`: the linearisation, the quadratic, the preconditioner),
``fit.py`` (training and forgetting the user weights), ``pipeline.py`` (:func:`train_mixed_linear`: core, then
user weights, from scratch), ``method.py`` (the registered ``mixed-linear`` method); the conjugate-gradient and
Lanczos solvers are :mod:`netfix.solvers`. ``netfix.mixed`` is a compatibility alias of this package.

Example:
    >>> from netfix.methods.mixed_linear import MixedLinear
    >>> ml = MixedLinear(core_model, linearize=["body.3", "fc"])
    >>> ml = ml.fit_user(user_data).model
    >>> out = ml.forget(user_data.subset(forget_idx), user_data.subset(keep_idx), sigma=1e-3)
    >>> out.model, out.distance_bound, out.kl_bound
"""

from .fit import FitOutcome, ForgetOutcome, UserTraining
from .method import MixedLinearConfig  # registers the method "mixed-linear", once
from .model import MixedLinear
from .pipeline import MixedLinearTraining, core_user_split, remaining_user_data, train_mixed_linear

__all__ = ["MixedLinear", "UserTraining", "FitOutcome", "ForgetOutcome", "MixedLinearConfig", "MixedLinearTraining",
           "core_user_split", "train_mixed_linear", "remaining_user_data"]
