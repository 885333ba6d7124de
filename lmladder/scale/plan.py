"""What a scaling sweep trains: a family of GPT shapes, one recipe that sizes every run's
batch and learning rate from its compute, and the grid of runs (model sizes x compute budgets).

Counting, stated once (and checked against lmladder.gpt in the tests). For a GPT of L layers,
width d, context T and padded vocabulary V, without biases and with learned positions:

    parameters, total          V d (wte, tied with the head) + T d (wpe) + L (12 d^2 + 2 d) + d
    parameters, non-embedding  N = L (12 d^2 + 2 d) + d            (blocks and the final norm)
    training FLOPs per token   6 N + 6 d V + 12 L d T
    training FLOPs             C = tokens x FLOPs per token

6 N + 6 d V: forward (2 a weight) and backward (4) through every matrix, the head included (the
embedding lookups do no multiplications); 12 L d T: the attention scores and weighted sums,
QK^T and AV, each 2 d T a token and layer forward, x3 with the backward (PaLM's appendix B;
GPT.flops_per_token counts the same). Evaluation is not counted.

The recipe (Recipe) sizes every run the same stated way:

    learning rate  0.32 / d                   batch  0.2920 C^0.3271 tokens (DeepSeek LLM)

The learning rate falls as 1/width, as muP prescribes for Adam's hidden matrices (Yang et al.
2022, "Tensor Programs V"): the update a step makes to a layer's output grows with its fan-in,
so a fixed rate that suits a narrow model throws a wide one off. The constant lands on the rates
tuned by hand at the two ends: GPT-2 small's 6e-4 at 768 (0.32/768 = 4.2e-4) and nanoGPT's 1e-3
at 384 (8.3e-4), and on the best of 1e-3, 3e-3, 5e-3 and 1e-2 measured here at widths 32, 64
and 96 (600 steps on `markov`: 1e-2, 5e-3, 3e-3; DeepSeek's compute rule, 0.3118 C^-0.125, gave
1.3e-2 to all three and left the 2- and 3-layer runs stuck near the unigram loss). The batch
follows DeepSeek LLM's fit (Bi et al. 2024, eq. 1), which grows it with compute as the
optimum moves (Kaplan et al. 2020), cut where needed so that a run makes at least a floor of
steps: below some number of steps a run's loss is set by its steps, not its size (Kaplan's
S_min). The schedule is a cosine from the peak to a tenth of it over exactly the run's tokens,
after a warmup of 2% of its steps: Hoffmann et al. (2022) found that a cosine longer than the
run overstates its loss, so every run ends its own schedule. One rule for every run, the target
included, or the curve fitted to the sweep would bend with the recipe rather than the scale.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from lmladder.errors import LadderError


# Bounds on what a study plans: far past any run made so far (GPT-4 is put at ~2e25 FLOPs, the
# largest open runs at ~1e14 tokens), yet small enough that an absurd value is a typo, said up front
MAX_FLOPS = 1e30
MAX_TOKENS = 1e18
MAX_DEPTH = 1000  # layers of a sweep's model


@dataclass(frozen=True)
class Family:
    """GPTs of one shape rule: depth k has k layers, width aspect x k and heads of head_size
    (Kaplan et al. 2020: at a fixed parameter count the loss barely depends on the shape)."""

    aspect: int = 32
    head_size: int = 16
    block_size: int = 64

    def shape(self, depth: int) -> tuple[int, int, int]:
        """(n_layer, n_head, n_embd) of a depth."""
        d = self.aspect * depth
        if d % self.head_size:
            raise LadderError(f"the family's width {d} (aspect {self.aspect} x depth {depth}) is not a multiple "
                              f"of head_size {self.head_size}")
        return depth, d // self.head_size, d


def non_embedding_params(n_layer: float, n_embd: float) -> float:
    """N: the blocks and the final layer norm (no biases)."""
    return n_layer * (12 * n_embd**2 + 2 * n_embd) + n_embd


def total_params(n_layer: int, n_embd: int, vocab: int, block_size: int) -> int:
    return int(non_embedding_params(n_layer, n_embd)) + vocab * n_embd + block_size * n_embd


def flops_per_token(n_layer: float, n_embd: float, vocab: int, block_size: int) -> float:
    """6 N + 6 d V + 12 L d T (see the module's docstring)."""
    return 6 * non_embedding_params(n_layer, n_embd) + 6 * n_embd * vocab + 12 * n_layer * n_embd * block_size


@dataclass(frozen=True)
class Recipe:
    """How a run is trained (see the module's docstring). lr_mult scales the learning rate
    (1: the rule as stated)."""

    lr_width: float = 0.32  # learning rate x width
    batch_coef: float = 0.2920
    batch_exp: float = 0.3271
    lr_mult: float = 1.0
    min_lr_ratio: float = 0.1  # the cosine ends at a tenth of the peak (Hoffmann et al. 2022)
    warmup_fraction: float = 0.02
    min_batch: int = 8  # sequences: fewer makes a step mostly noise
    steps_floor: int = 0  # the batch is cut (to min_batch at the least) so a run makes at least this many steps
    min_steps: int = 50  # planned cells of fewer steps are dropped: their loss is set by the steps
    max_epochs: float = 4.0  # Muennighoff et al. 2023: up to ~4 passes over the data are about as good as new data
    weight_decay: float = 0.1
    beta2: float = 0.95
    grad_clip: float = 1.0
    seed: int = 1337

    def lr(self, n_embd: int) -> float:
        return self.lr_mult * self.lr_width / n_embd

    def batch_tokens(self, flops: float) -> float:
        return self.batch_coef * flops**self.batch_exp

    def describe(self) -> str:
        floor = f", cut to make at least {self.steps_floor} steps" if self.steps_floor else ""
        return (f"learning rate {self.lr_mult:g} x {self.lr_width} / width, batch {self.batch_coef} C^{self.batch_exp} "
                f"tokens (at least {self.min_batch} sequences{floor}), AdamW (beta2 {self.beta2}, weight decay "
                f"{self.weight_decay}, clip {self.grad_clip}), warmup {self.warmup_fraction:.0%} of the steps, cosine "
                f"to {self.min_lr_ratio:g} x the peak over the run, runs under {self.min_steps} steps left out")


@dataclass(frozen=True)
class Profile:
    """A family with its default depths and budgets, and the recipe it is trained with."""

    family: Family
    depths: tuple[int, ...]
    budgets: tuple[float, ...]
    recipe: Recipe


# gpu: heads of 64, so depth 12 is GPT-2 small's shape (12 x 768). cpu: a sweep and its target in
# ~10 minutes on 2 cores on Tiny Shakespeare; tiny: seconds, for the tests. Both take DeepSeek's
# batch exponent with a 7x smaller coefficient: at 1e10-1e12 FLOPs a run is limited by its
# number of steps, not by gradient noise (a 2-layer, 32-wide GPT at 4.5e10 FLOPs: 3.29 test
# bits/char with batches of 8 sequences of 16, 3.79 with DeepSeek's 56). cpu leaves out runs of
# under 400 steps: a 2-layer GPT on `markov` was at 1.87 bits/char after 211 steps, 1.29 after 422
# (the entropy rate is 1.20): short runs sit on the plateau before attention is learned; and it
# takes batches down to 4 sequences, for more steps (on Tiny Shakespeare the 2-layer run at 8e11
# FLOPs reached 2.74 bits/char with 4, 3.07 with 8)
SMALL = Recipe(batch_coef=0.04)
PROFILES: dict[str, Profile] = {
    "cpu": Profile(Family(32, 16, 64), (1, 2, 3), (1e11, 2e11, 4e11, 8e11),
                   replace(SMALL, min_batch=4, min_steps=400)),
    "gpu": Profile(Family(64, 64, 256), (1, 2, 3, 4, 6), (3e12, 1e13, 3e13, 1e14),
                   Recipe(steps_floor=1000, min_steps=400)),
    "tiny": Profile(Family(16, 8, 16), (1, 2), (5e9, 1e10, 2e10), replace(SMALL, min_batch=16)),
}


@dataclass(frozen=True)
class RunSpec:
    """One planned run: its shape, its budget and how it is trained."""

    name: str
    role: str  # "fit" (a sweep run) or "target"
    budget: float | None  # the IsoFLOP level it was planned at (None for the target)
    n_layer: int
    n_head: int
    n_embd: int
    block_size: int
    vocab_size: int
    batch_size: int  # sequences a step
    steps: int
    warmup_steps: int
    lr: float
    min_lr: float
    tokens: int  # steps x batch_size x block_size
    flops_per_token: float
    flops: float
    parameters: int
    non_embedding_parameters: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_spec(name: str, role: str, budget: float | None, shape: tuple[int, int, int], tokens: float,
             family: Family, vocab: int, recipe: Recipe) -> RunSpec:
    """The run of `shape` over about `tokens` tokens (rounded to whole steps), sized by the recipe."""
    n_layer, n_head, n_embd = shape
    T = family.block_size
    per_token = float(flops_per_token(n_layer, n_embd, vocab, T))
    planned = tokens * per_token
    batch = round(recipe.batch_tokens(planned) / T)
    if recipe.steps_floor:
        batch = min(batch, int(tokens / (recipe.steps_floor * T)))
    batch = max(recipe.min_batch, batch)
    steps = max(1, round(tokens / (batch * T)))
    actual = steps * batch * T
    flops = float(actual) * per_token
    lr = recipe.lr(n_embd)
    return RunSpec(name, role, budget, n_layer, n_head, n_embd, T, vocab, batch, steps,
                   max(1, round(recipe.warmup_fraction * steps)), lr, recipe.min_lr_ratio * lr, actual, per_token,
                   flops, total_params(n_layer, n_embd, vocab, T), int(non_embedding_params(n_layer, n_embd)))


def sci(x: float) -> str:
    """1e12 -> "1e12", 3.16e12 -> "3.2e12": short, and a valid float."""
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


@dataclass
class Plan:
    runs: list[RunSpec]
    dropped: list[tuple[str, str]]  # (cell name, why) of grid cells left out


def plan_sweep(depths: Sequence[int], budgets: Sequence[float], family: Family, vocab: int, train_tokens: int,
               recipe: Recipe) -> Plan:
    """The IsoFLOP grid: for each budget C and depth, a run of C / (FLOPs a token) tokens.
    Cells of fewer than recipe.min_steps steps, or of more than recipe.max_epochs passes over
    the train split, are dropped (and said why). Sorted by budget, then depth: deterministic."""
    problems = [f"depth {k} must be at least 1" for k in depths if k < 1]
    problems += [f"compute budget {c:g} must be positive" for c in budgets if not c > 0]
    if len(set(depths)) != len(depths) or len(set(budgets)) != len(budgets):
        problems.append("a depth or a budget is given twice")
    if problems:
        raise LadderError("; ".join(problems))
    runs, dropped = [], []
    for budget in sorted(budgets):
        for depth in sorted(depths):
            shape = family.shape(depth)
            tokens = budget / flops_per_token(shape[0], shape[2], vocab, family.block_size)
            name = f"L{depth}-C{sci(budget)}"
            spec = run_spec(name, "fit", budget, shape, tokens, family, vocab, recipe)
            if spec.steps < recipe.min_steps:
                dropped.append((name, f"{spec.steps} steps, fewer than {recipe.min_steps}"))
            elif spec.tokens > recipe.max_epochs * train_tokens:
                dropped.append((name, f"{spec.tokens / train_tokens:.3g} passes over the train split, more than "
                                      f"{recipe.max_epochs:g}"))
            else:
                runs.append(spec)
    return Plan(runs, dropped)


def check_plan(plan: Plan) -> None:
    """A sweep the fits can use: L(N, D) has five parameters, so at least six runs over at
    least two model sizes and two budgets."""
    runs = plan.runs
    sizes = {r.n_layer for r in runs}
    budgets = {r.budget for r in runs}
    if len(runs) < 6 or len(sizes) < 2 or len(budgets) < 2:
        why = "; ".join(f"{n}: {w}" for n, w in plan.dropped[:3])
        raise LadderError(f"the sweep plans {len(runs)} run(s) over {len(sizes)} model size(s) and {len(budgets)} "
                          "budget(s); a fit needs at least 6 runs over 2 sizes and 2 budgets: give more --sizes and "
                          "--budgets" + (f" (left out: {why})" if why else ""))


GPT_ONLY_KEYS = ("n_hidden", "direct", "pad_id")  # MLPConfig's own fields


def target_shape(preset: str | None, config_file: str | None) -> tuple[tuple[int, int, int], str]:
    """(n_layer, n_head, n_embd) of a target given as a preset or a config file, and where it
    came from. Only the shape is taken: the target is trained with the sweep's recipe, context
    and vocabulary, or the law fitted to the sweep would not apply to it."""
    from lmladder import config as conf

    if preset is not None:
        if preset not in conf.PRESETS:
            raise LadderError(f"unknown --target-preset {preset!r}; choose one of {', '.join(conf.PRESETS)}")
        entry = conf.PRESETS[preset]
        if entry["model_kind"] != "gpt":
            raise LadderError(f"lmladder scale predicts GPTs; preset {preset} is an {entry['model_kind']} model")
        cfg = conf.resolve("gpt", preset, None, {})
        source = f"preset {preset}"
    else:
        values = conf.read_config_file(config_file)
        mlp_keys = [k for k in values.get("model", {}) if k in GPT_ONLY_KEYS]
        if mlp_keys:
            raise LadderError(f"lmladder scale predicts GPTs; {config_file} describes an MLP ([model] {mlp_keys[0]})")
        shape = {k: values.get("model", {}).get(k) for k in ("n_layer", "n_head", "n_embd")}
        bad = [f"{k} = {v!r}" for k, v in shape.items() if isinstance(v, int) and not isinstance(v, bool) and v < 1]
        if bad:
            raise LadderError(f"config file {config_file}: [model] {', '.join(bad)}: a GPT's n_layer, n_head and "
                              "n_embd must each be at least 1")
        cfg = conf.resolve("gpt", None, values, {})
        source = f"config file {Path(config_file).name}"
    m = cfg.model
    if m.n_loop != 1:  # the sweep's GPTs go through their blocks once: the law is of those
        raise LadderError(f"{source}: [model] n_loop = {m.n_loop}: lmladder scale predicts GPTs that go through "
                          "their blocks once, as its sweep trains them; leave n_loop out of the target")
    return (m.n_layer, m.n_head, m.n_embd), source
