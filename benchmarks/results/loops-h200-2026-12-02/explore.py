"""One rung of the gpu profile, with settings over it (JSON) and optionally the blocks applied
`loops` times (a monkeypatch: an experiment, not lmladder's code)."""
import json, os, sys, tempfile
name, kind_tok, settings = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
loops = int(sys.argv[4]) if len(sys.argv) > 4 else 1
if loops > 1:
    import torch
    from lmladder import gpt
    def hidden(self, idx):
        T = idx.shape[1]
        pos = torch.arange(T, device=idx.device)
        x = self.transformer.drop(self.embed(idx, pos))
        for _ in range(loops):
            for block in self.transformer.h:
                x = block(x, pos)
        return self.transformer.ln_f(x)
    gpt.GPT.hidden = hidden
def val(v):
    return json.dumps(v) if not isinstance(v, dict) else "{ " + ", ".join(f"{k} = {val(x)}" for k, x in v.items()) + " }"
lines = ["[[rung]]", f'name = "{name}"', 'kind = "gpt"', f'tokenizer = "{kind_tok}"']
if kind_tok == "bpe":
    lines.append(f"bpe_vocab = {settings.pop('bpe_vocab', 512)}")
lines += [f"{k} = {val(v)}" for k, v in settings.items()]
toml = os.path.join(tempfile.mkdtemp(), "ladder.toml"); open(toml, "w").write("\n".join(lines) + "\n")
out = os.path.join(os.environ["OUT"], name)
sys.argv = ["lmladder", "bench", "tinyshakespeare", "--profile", os.environ.get("PROFILE", "gpu"), "--ladder", toml, "--out", out, "--json"]
from lmladder.cli import run
run()
