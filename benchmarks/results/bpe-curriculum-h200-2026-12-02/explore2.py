"""One rung of the gpu profile, with settings over it (JSON); "_td_schedule": [p0, p1, steps] makes
the token dropout fall linearly from p0 to p1 over the first `steps` optimizer steps (a monkeypatch:
an experiment, not lmladder's code)."""
import json, os, sys, tempfile
name, kind_tok, settings = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
sched = settings.pop("_td_schedule", None)
if sched:
    from lmladder.train import step as st
    orig = st.batch_windows
    p0, p1, n = sched
    def batch_windows(ids, seed, step, batch, seq_len, parents=None, token_dropout=0.0):
        p = p1 + (p0 - p1) * max(0.0, 1.0 - step / n)
        return orig(ids, seed, step, batch, seq_len, parents, p if parents is not None else token_dropout)
    st.batch_windows = batch_windows
def val(v):
    return json.dumps(v) if not isinstance(v, dict) else "{ " + ", ".join(f"{k} = {val(x)}" for k, x in v.items()) + " }"
lines = ["[[rung]]", f'name = "{name}"', 'kind = "gpt"', f'tokenizer = "{kind_tok}"']
if kind_tok == "bpe":
    lines.append(f"bpe_vocab = {settings.pop('bpe_vocab', 512)}")
lines += [f"{k} = {val(v)}" for k, v in settings.items()]
toml = os.path.join(tempfile.mkdtemp(), "ladder.toml"); open(toml, "w").write("\n".join(lines) + "\n")
out = os.path.join("/tmp/out-" + name)
sys.argv = ["lmladder", "bench", "tinyshakespeare", "--profile", "gpu", "--ladder", toml, "--out", out, "--json"]
from lmladder.cli import run
run()
