"""Muon for a GPT's block matrices, AdamW for the rest, as one optimizer (`--optimizer muon`).

Muon (K. Jordan et al. 2024, "Muon: an optimizer for hidden layers in neural networks"; the
modded-nanogpt speedruns) keeps a Nesterov momentum of each matrix's gradient and steps along
its orthogonalised form: U V^T of the momentum's SVD U S V^T, approximated by five steps of a
quintic Newton-Schulz iteration in bf16 (coefficients 3.4445, -4.7750, 2.0315, which push every
singular value towards 1 fast rather than exactly). Every direction of the update then moves by
about the same amount, so the rare directions that plain momentum leaves small learn as fast as
the common ones. The update is scaled by sqrt(max(1, rows / cols)) (Jordan's scaling) and the
fused query-key-value matrix is orthogonalised as its three square blocks.

The embeddings (wte, tied with the head; wpe), norms and biases are not hidden matrices: AdamW
steps them, written out here with the same formulas as torch's (decoupled weight decay, bias-
corrected moments). torch.optim.Muon exists, but it reads its learning rate as a Python number
each step, so it cannot run inside the trainer's CUDA graph: here every hyperparameter that
changes during a run (the learning rate) may be a device tensor, filled in place.

The schedule sets one learning rate for every group (lr_at, set_learning_rate); the Muon group
steps at that times lr_scale = muon_lr / lr. Weight decay shrinks a decayed matrix by (schedule's
lr) x weight_decay each step, for both kinds, so --weight-decay means the same thing with either
optimizer.
"""

from __future__ import annotations

import torch

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5
MOMENTUM = 0.95


def orthogonalise(g: torch.Tensor, steps: int = NS_STEPS) -> torch.Tensor:
    """Approximately U V^T for each matrix of g (..., rows, cols), in bf16: Newton-Schulz on the
    wide orientation (the Gram matrix is the smaller one), the input scaled to spectral norm <= 1
    by its Frobenius norm."""
    a, b, c = NS_COEFFICIENTS
    x = g.bfloat16()
    tall = g.size(-2) > g.size(-1)
    if tall:
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        gram = x @ x.mT  # (..., r, r), r = min(rows, cols)
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.mT if tall else x


def is_block_matrix(name: str, p: torch.Tensor) -> bool:
    """A weight matrix inside a transformer block (attention, MLP): Muon's. Not the embeddings,
    the head tied to wte, norms or biases."""
    return p.dim() == 2 and ".h." in f".{name}"


class MuonAdamW(torch.optim.Optimizer):
    """Groups of kind "muon" (block matrices) and "adamw" (the rest); see the module's docstring.
    `blocks` maps a parameter to how many square blocks it stacks (3 for c_attn's q, k, v)."""

    def __init__(self, named_params, lr, muon_lr: float, weight_decay: float, betas=(0.9, 0.99), eps: float = 1e-8):
        named = [(n, p) for n, p in named_params if p.requires_grad]
        muon = [p for n, p in named if is_block_matrix(n, p)]
        matrices = [p for n, p in named if not is_block_matrix(n, p) and p.dim() >= 2]
        rest = [p for n, p in named if p.dim() < 2]
        self.blocks = {p: 3 for n, p in named if n.endswith("attn.c_attn.weight")}
        groups = [{"params": muon, "kind": "muon"}, {"params": matrices, "kind": "adamw"},
                  {"params": rest, "kind": "adamw", "decays": False}]
        defaults = {"lr": lr, "lr_scale": 1.0, "weight_decay": weight_decay, "decays": True, "betas": betas,
                    "eps": eps, "momentum": MOMENTUM}
        super().__init__([g for g in groups if g["params"]], defaults)
        self.configure(float(lr), muon_lr, weight_decay)

    def configure(self, lr: float, muon_lr: float, weight_decay: float) -> None:
        """The settings --resume may change (a loaded state brings back the saved ones)."""
        for group in self.param_groups:
            group["lr_scale"] = muon_lr / lr if group["kind"] == "muon" else 1.0
            group["weight_decay"] = weight_decay if group.get("decays", True) else 0.0

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                (self._muon if group["kind"] == "muon" else self._adamw)(group, params)

    def _muon(self, group, params) -> None:
        """Nesterov momentum, then every matrix of one shape (the q, k, v blocks apart, each in its
        wide orientation) orthogonalised in one batch: 6 x 512 has 36 matrices of two shapes, so 2
        Newton-Schulz runs instead of 24 (small matrix products leave most of a GPU idle and cost
        their launches: a Muon step took 15.3 ms against AdamW's 9.9 with one run per parameter)."""
        lr, mu = group["lr"], group["momentum"]
        for p in params:
            if "momentum_buffer" not in self.state[p]:
                self.state[p]["momentum_buffer"] = torch.zeros_like(p)
        bufs, grads = [self.state[p]["momentum_buffer"] for p in params], [p.grad for p in params]
        torch._foreach_lerp_(bufs, grads, 1 - mu)
        updates = torch._foreach_lerp(grads, bufs, mu)  # Nesterov
        wide, by_shape = [], {}
        for i, (p, u) in enumerate(zip(params, updates)):
            k = self.blocks.get(p, 1)
            m = u.view(k, p.shape[0] // k, p.shape[1])
            wide.append(m.mT if m.size(-2) > m.size(-1) else m)
            by_shape.setdefault(tuple(wide[-1].shape[-2:]), []).append(i)
        done: list = [None] * len(params)
        for members in by_shape.values():
            together = orthogonalise(torch.cat([wide[i] for i in members]))
            for i, part in zip(members, together.split([wide[i].size(0) for i in members])):
                done[i] = part
        if group["weight_decay"]:
            torch._foreach_mul_(params, 1 - lr * group["weight_decay"])
        for p, o in zip(params, done):
            k = self.blocks.get(p, 1)
            rows, cols = p.shape[0] // k, p.shape[1]
            o = (o.mT if rows > cols else o).reshape(p.shape)
            p.sub_(o.to(p.dtype) * (lr * (group["lr_scale"] * max(1.0, rows / cols) ** 0.5)))

    def _adamw(self, group, params) -> None:
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        for p in params:
            state = self.state[p]
            if "step" not in state:
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"].add_(1)
            m, v, g = state["exp_avg"], state["exp_avg_sq"], p.grad
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            if group["weight_decay"]:
                p.mul_(1 - lr * group["weight_decay"])
            correction1 = 1 - beta1 ** state["step"]
            correction2 = (1 - beta2 ** state["step"]).sqrt()
            p.sub_(m / (v.sqrt() / correction2 + eps) * (lr / correction1))
