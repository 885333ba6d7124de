"""Where a char GPT and a 512-token BPE GPT (the bench profile's) gain and lose, on val and test:
bits/char by kind of character (a BPE token's bits spread evenly over its characters)."""
import collections, json, math, os, re, sys
import numpy as np
from lmladder import bpe, corpora, neural_ladder
profile = sys.argv[1] if len(sys.argv) > 1 else "gpu"
extra = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
c = corpora.load("tinyshakespeare"); s = c.split("val:0.05,train:0.85,test:0.1")
train = "".join(s["train"]); wc = collections.Counter(re.findall(r"[A-Za-z]+", train))
def cats(t):
    lab = np.full(len(t), "other", dtype=object)
    for m in re.finditer(r"[A-Za-z]+", t):
        w = m.group()
        lab[m.start():m.end()] = ("oov word" if wc[w] == 0 else "CAPS word" if w.isupper() and len(w) > 1
                                  else "rare word<5" if wc[w] < 5 else "word")
    a = np.frombuffer(t.encode(), dtype=np.uint8)
    lab[a == 10] = "newline"; lab[a == 32] = "space"
    return lab
rows = {}
for name, settings in (("char", {"tokenizer": "char"}), ("bpe512", {"tokenizer": "bpe", "bpe_vocab": 512})):
    rung = neural_ladder.from_ladder("gpt", {**settings, **extra}, s, profile).rung
    tok = rung.tokenizer
    for split in ("val", "test"):
        docs = s[split]; t = "".join(docs)
        per = -rung.score(docs).logprob / math.log(2)
        if name != "char":
            tb = bpe.token_bytes(tok); ids = np.concatenate(tok.encode_batch(docs))
            lens = np.array([len(tb[i]) for i in ids]); assert lens.sum() == len(t) == len(np.repeat(per, 1)) or lens.sum() == len(t)
            per = np.repeat(per / lens, lens)
        assert len(per) == len(t)
        lab = cats(t); out = {"all": [float(per.mean()), 1.0]}
        for k in sorted(set(lab)):
            m = lab == k; out[k] = [float(per[m].mean()), float(m.mean())]
        rows[f"{name}/{split}"] = out
print("category".ljust(12), " ".join(r.rjust(12) for r in rows), "  share val/test")
for k in rows["char/val"]:
    print(k.ljust(12), " ".join(("%.3f" % rows[r][k][0]).rjust(12) for r in rows),
          "  %.3f/%.3f" % (rows["char/val"][k][1], rows["char/test"][k][1]))
if os.environ.get("OUT"):
    json.dump(rows, open(os.path.join(os.environ["OUT"], "attribution.json"), "w"), indent=1)
