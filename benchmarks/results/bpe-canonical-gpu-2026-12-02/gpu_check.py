# The check of the canonical paths that ran on the H200 (.device/gpu_canonical_check.py, the
# review's quick script; tests/test_decode_cuda.py is its tested form). Usage: python gpu_check.py 300
import math,sys,numpy as np,torch
from lmladder import canonical,decode
from lmladder.config import resolve
from lmladder.neural import build_model
from lmladder.sampling import SampleSettings,sample_rngs
from lmladder.compress.neural import _GPTSteps
d="cuda" if torch.cuda.is_available() else "cpu"
i=torch.tensor(-math.inf,device=d);print("logaddexp",torch.logaddexp(i,i).item())
V,E=500,499
c=resolve("gpt","gpt-tiny",None,{"model":{"vocab_size":512,"block_size":32}})
torch.manual_seed(0);m=build_model(c).to(d).eval()
r=np.random.default_rng(0);T=r.random((V,V))<0.01;T[E]=True;T[:,E]=True;T[~T[:,:E].any(1)]=True
can=canonical.Canonical(T,d)
N=int(sys.argv[1]) if len(sys.argv)>1 else 200
for st in (True,False):
  out=decode.generate(m,[E,5,7],N,SampleSettings(1.0),sample_rngs(1,8),vocab_size=V,static=st,canonical=can)
  bad=sum(not T[a,b] for s in out for a,b in zip([7]+s[:-1],s));n=sum(map(len,out))
  print("static",st,"tokens",n,"refused pairs drawn",bad)
for cap in (False,True):
  s=_GPTSteps(m,4,V,E,d,can)
  if cap and d=="cuda":s.capture()
  g=torch.Generator().manual_seed(1);P=[];worst=1
  for k in range(80):
    tk=torch.randint(0,V-1,(4,),generator=g).to(d);s.feed(tk)
    mass=(s.probs*can.table[tk]).sum(-1).min().item();worst=min(worst,mass)
    P.append(s.probs.clone())
    assert not s.probs.isnan().any()
  print("cap",cap,"min allowed mass",worst,"sum",s.probs.sum(-1).tolist())
  if cap:print("graph==eager bitwise",all(torch.equal(a,b) for a,b in zip(P,P0)))  # noqa: F821 (P0 is set by the first pass)
  P0=P
for dt in (None,torch.bfloat16):
  out=decode.generate(m,[E]*40,N,SampleSettings(0.9,top_p=0.95),sample_rngs(2,8),vocab_size=V,static=True,dtype=dt,canonical=can)
  print("dtype",dt,"tokens",sum(map(len,out)),"refused",sum(not T[a,b] for s in out for a,b in zip([E]+s[:-1],s)))
from lmladder.neural import window_logprobs
x=[np.r_[E,r.integers(0,E,300)]]
lp=window_logprobs(m,x,32,16,8,d,torch.bfloat16,V,E,can)[0]
print("wlp finite",np.isfinite(lp).all(),"refused targets",(~T[x[0][:-1],x[0][1:]]).sum(),"mean lp refused",lp[~T[x[0][:-1],x[0][1:]]].mean())
