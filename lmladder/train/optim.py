"""The optimizer's side of a step: AdamW and its learning-rate schedule, an optimizer state
adopted on resume, and the moving average of the weights.

AdamW (fused on CUDA) decays matrices only; the learning rate warms up linearly then follows a
cosine (or warmup-stable-decay) to min_lr over the run's length in steps, tokens or seconds. A
run that compiles nothing never imports torch._dynamo (skip_dynamo_imports): seconds of start-up.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any, Callable

from lmladder import checkpoint
from lmladder.config import TrainConfig
from lmladder.errors import LadderError


def lr_at(o, progress: float, step: int) -> float:
    """The learning rate of optimizer step `step`, `progress` (0 to 1) of the way through the run."""
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    p = min(1.0, max(0.0, progress))
    if o.schedule == "wsd":
        return o.lr if p < 0.7 else o.min_lr + (o.lr - o.min_lr) * (1 - p) / 0.3
    return o.min_lr + 0.5 * (o.lr - o.min_lr) * (1 + math.cos(math.pi * p))


def set_learning_rate(optimizer, lr: float) -> None:
    """Every group's learning rate; a tensor one (a CUDA graph's) is filled in place."""
    import torch

    for group in optimizer.param_groups:
        if torch.is_tensor(group["lr"]):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def group_decays(o) -> tuple[float, float]:
    """The weight decay of AdamW's two groups: the matrices, then the rest (biases, norms)."""
    return o.weight_decay, 0.0


def make_optimizer(model, o, device: str, capturable: bool = False):
    """AdamW, fused on CUDA (or MuonAdamW, lmladder/train/muon.py, with --optimizer muon);
    `capturable` (for a CUDA graph): the learning rate is a tensor on the device, set in place
    each step."""
    import torch

    lr = torch.tensor(o.lr, device=device) if capturable else o.lr
    if o.optimizer == "muon":
        from lmladder.train.muon import MuonAdamW

        return MuonAdamW(model.named_parameters(), lr, o.muon_lr, o.weight_decay, betas=(o.beta1, o.beta2))
    params = [p for p in model.parameters() if p.requires_grad]
    matrices, rest = group_decays(o)
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": matrices},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": rest}]
    return torch.optim.AdamW(groups, lr=lr, betas=(o.beta1, o.beta2), fused=device.startswith("cuda"),
                             capturable=capturable)


def training_optimizer(model, config: TrainConfig, device: str, capturable: bool) -> tuple[Any, Callable[[], None]]:
    """(AdamW, the function that takes its step): without torch._dynamo when the run compiles
    nothing (the marking has to come before AdamW is built; see skip_dynamo_imports)."""
    quiet = not config.run.compile and skip_dynamo_imports()
    optimizer = make_optimizer(model, config.optim, device, capturable)
    return optimizer, plain_step(optimizer) if quiet else optimizer.step


def adopt_optimizer_state(optimizer, device: str, capturable: bool, o=None) -> None:
    """After loading a state that any run saved (a CUDA-graph run on a GPU, a plain one on a
    CPU): this run's fused and capturable flags, a tensor learning rate only for a CUDA graph,
    the step counters where those flags want them, and (given the run's OptimConfig `o`) its
    weight decay, which --resume may change (the learning rate is set at every step)."""
    import torch

    fused = device.startswith("cuda")
    if o is not None and hasattr(optimizer, "configure"):  # MuonAdamW
        optimizer.configure(o.lr, o.muon_lr, o.weight_decay)
    elif o is not None:
        for group, decay in zip(optimizer.param_groups, group_decays(o)):
            group["weight_decay"] = decay
    for group in optimizer.param_groups:
        group["fused"], group["capturable"] = fused, capturable
        lr = float(group["lr"])
        group["lr"] = torch.tensor(lr, device=device) if capturable else lr
    for state in optimizer.state.values():
        if "step" in state:
            step = torch.as_tensor(state["step"], dtype=torch.float32).detach().cpu()
            state["step"] = step.to(device) if fused or capturable else step


def skip_dynamo_imports() -> bool:
    """Let AdamW run without importing torch._dynamo; True when done.

    torch.optim wraps a few functions (add_param_group, zero_grad, state_dict, the functional
    adam; step through a graph-break helper) so that torch.compile leaves them alone, and each
    wrapper imports torch._dynamo on its first call: 6 s of start-up on a cold H100 host, 1.5 s
    warm, for nothing when nothing is compiled. This marks the wrapped functions as already
    handled (the attribute those wrappers cache their result in); `plain_step` then skips the
    graph-break helper. Only for runs that compile nothing: afterwards torch.compile would trace
    into these functions. If torch's layout is not the expected one, nothing changes."""
    import importlib
    import inspect

    import torch

    try:
        found = [v for cls in torch.optim.AdamW.__mro__ for v in vars(cls).values()]
        found += list(vars(importlib.import_module("torch.optim.adam")).values())
        marked = 0
        for value in found:
            inner = getattr(value, "__wrapped__", None)
            if inspect.isfunction(value) and inspect.isfunction(inner) \
                    and value.__code__.co_name in ("inner", "maybe_fallback"):
                setattr(inner, "__dynamo_disable", inner)
                marked += 1
        inspect.unwrap(torch.optim.AdamW.step)
    except (AttributeError, ImportError, TypeError, ValueError):
        return False
    return marked > 0


def plain_step(optimizer) -> Callable[[], None]:
    """optimizer.step without its graph-break wrapper (outside compilation it only turns
    gradients off); see skip_dynamo_imports."""
    import inspect

    import torch

    raw = inspect.unwrap(type(optimizer).step)

    def step() -> None:
        with torch.no_grad():
            raw(optimizer)

    return step


class WeightAverage:
    """An exponential moving average of the weights (Polyak averaging), which evaluation, best/
    and the final model use: after step t, avg += w_t (weights - avg), w_t = 1 - min(decay,
    (1 + t) / (10 + t)), so the early average soon forgets the random start. Kept in float32 on
    the model's device; `update` runs inside the training step (so inside its CUDA graph), with
    w_t in a device tensor that `set_step` fills before each step, as the learning rate."""

    def __init__(self, model, decay: float):
        import torch

        named = list(model.named_parameters())  # a tied weight once
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.avg = [p.detach().float().clone() for p in self.params]
        self.decay = decay
        self.weight = torch.ones((), device=self.params[0].device)

    def set_step(self, step: int) -> None:
        self.weight.fill_(1.0 - min(self.decay, (1 + step) / (10 + step)))

    def update(self) -> None:
        import torch

        with torch.no_grad():
            delta = torch._foreach_sub([p.float() for p in self.params], self.avg)
            torch._foreach_mul_(delta, self.weight)
            torch._foreach_add_(self.avg, delta)

    @contextlib.contextmanager
    def applied(self):
        """The model holds the average inside the block, its own weights again after it."""
        import torch

        with torch.no_grad():
            own = [p.detach().clone() for p in self.params]
            for p, a in zip(self.params, self.avg):
                p.copy_(a)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, o in zip(self.params, own):
                    p.copy_(o)

    def state_dict(self) -> dict[str, Any]:
        return dict(zip(self.names, self.avg))

    def load(self, path: Path) -> None:
        import torch

        state = checkpoint.load_tensors(path)
        if sorted(state) != sorted(self.names):
            raise LadderError(f"{path} does not fit the model of its config; resume from another checkpoint")
        with torch.no_grad():
            for name, a in zip(self.names, self.avg):
                a.copy_(state[name])
