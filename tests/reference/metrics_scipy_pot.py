# Reference values for tests/metrics_reference.rs: exact W2 (POT ot.emd2 and scipy linear_sum_assignment),
# energy distance (scipy cdist; scipy.stats.energy_distance in 1-D), RBF MMD (scipy cdist) and
# sliced W2 along fixed directions (POT ot.sliced_wasserstein_distance, p = 2).
# Regenerate: python -m venv env && env/bin/pip install numpy scipy POT && env/bin/python tests/reference/metrics_scipy_pot.py > tests/reference/metrics_scipy_pot.json
import numpy as np, scipy, ot, json
from scipy.spatial.distance import cdist
from scipy.optimize import linear_sum_assignment
rng = np.random.default_rng(0)
X = np.round(rng.normal(size=(16,3)), 3)
Y = np.round(rng.normal(size=(16,3))*np.array([1.5,0.7,1.0]) + np.array([0.5,-0.3,0.2]), 3)
n=len(X)
M = ot.dist(X, Y)  # squared euclidean
w2_pot = np.sqrt(ot.emd2(np.full(n,1/n), np.full(n,1/n), M))
r,c = linear_sum_assignment(cdist(X,Y,'sqeuclidean'))
w2_scipy = np.sqrt(cdist(X,Y,'sqeuclidean')[r,c].mean())
def energy(A,B):
    return 2*cdist(A,B).mean() - cdist(A,A).mean() - cdist(B,B).mean()
def mmd(A,B,h):
    k=lambda D: np.exp(-D/(2*h*h))
    return k(cdist(A,A,'sqeuclidean')).mean()+k(cdist(B,B,'sqeuclidean')).mean()-2*k(cdist(A,B,'sqeuclidean')).mean()
a1 = np.round(rng.normal(size=10),3); b1 = np.round(rng.normal(size=7)*2+1,3)
ed1_scipy = scipy.stats.energy_distance(a1,b1)
P = rng.normal(size=(3,5)); P/=np.linalg.norm(P,axis=0,keepdims=True)
swd = ot.sliced_wasserstein_distance(X, Y, projections=P, p=2)
Xs, Ys = X[:8], Y[:8]
Ms = ot.dist(Xs, Ys)
plan = ot.sinkhorn(np.full(8,1/8), np.full(8,1/8), Ms, 0.5, numItermax=10000, stopThr=1e-12)
out = dict(sinkhorn_reg05_plan=plan.tolist(), X=X.tolist(),Y=Y.tolist(),w2_pot=float(w2_pot),w2_scipy=float(w2_scipy),
  energy=float(energy(X,Y)), mmd_h1=float(mmd(X,Y,1.0)), mmd_h05=float(mmd(X,Y,0.5)),
  a1=a1.tolist(), b1=b1.tolist(), energy_1d_scipy=float(ed1_scipy),
  directions=P.T.tolist(), swd_pot=float(swd), versions=[np.__version__, scipy.__version__, ot.__version__])
print(json.dumps(out))
