"""Independent computations of every registered loss at its default arguments, for the battery's pinned values.

Each is a plain float64 loop transcribed from the paper's equation (or a well-kept library's function where the card
names one), written without lossbook's code. `REFERENCES[name](*args, **kwargs)` takes the inputs of the loss's
registry example and returns the loss with its default arguments and default reduction.
"""
import math

import torch


def _rows(x):
    return x.detach().double().cpu().tolist()


def _softplus(x):
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


# --- card 38, the Z-loss and the spherical family (de Brébisson & Vincent 2016) ----------------------------------------
def z_loss_ref(logits, target, a=1.0, eps=1e-8):
    "Eq. (2)-(4): z_c = (o_c - mean) / sqrt(population var + eps); softplus(a (b - z_c)) / a, b = sqrt(D-1)/2; mean."
    total, rows = 0.0, _rows(logits)
    for o, c in zip(rows, target.tolist()):
        D = len(o)
        mu = sum(o) / D
        var = sum((v - mu) ** 2 for v in o) / D
        z = (o[c] - mu) / math.sqrt(var + eps)
        total += _softplus(a * (math.sqrt(D - 1) / 2 - z)) / a
    return torch.tensor(total / len(rows))


def z_loss_from_stats_ref(o_c, S1, S2, n_classes, a=1.0, eps=1e-8):
    "Eq. (4) from (o_c, S_1, S_2): mu = S_1/D, var = S_2/D - mu^2."
    total, D = 0.0, n_classes
    for oc, s1, s2 in zip(_rows(o_c), _rows(S1), _rows(S2)):
        mu = s1 / D
        var = max(s2 / D - mu * mu, 0.0)
        total += _softplus(a * (math.sqrt(D - 1) / 2 - (oc - mu) / math.sqrt(var + eps))) / a
    return torch.tensor(total / len(_rows(o_c)))


def log_spherical_softmax_ref(logits, target, eps=1e-2):
    "Eq. (11): -log((o_c^2 + eps) / sum_k (o_k^2 + eps)); mean."
    rows = _rows(logits)
    return torch.tensor(sum(-math.log((o[c] ** 2 + eps) / sum(v * v + eps for v in o))
                            for o, c in zip(rows, target.tolist())) / len(rows))


def log_taylor_softmax_ref(logits, target):
    "Eq. (12): -log((1 + o_c + o_c^2/2) / sum_k (1 + o_k + o_k^2/2)); mean."
    rows = _rows(logits)
    t = lambda v: 1 + v + v * v / 2
    return torch.tensor(sum(-math.log(t(o[c]) / sum(t(v) for v in o)) for o, c in zip(rows, target.tolist())) / len(rows))


# --- the shared contrastive losses (lossbook.contrastive) ---------------------------------------------------------------
def _unit(rows):
    out = []
    for r in rows:
        n = math.sqrt(sum(v * v for v in r))
        out.append([v / n for v in r])
    return out


def _dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def _lse(xs):
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


def nt_xent_ref(z1, z2, temperature=0.1):
    "SimCLR: 2N anchors; -log softmax of the other view among the 2N-1 other embeddings; mean."
    Z = _unit(_rows(z1) + _rows(z2))
    n = len(Z) // 2
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        total += _lse([_dot(Z[i], Z[k]) / temperature for k in range(2 * n) if k != i]) - _dot(Z[i], Z[j]) / temperature
    return torch.tensor(total / (2 * n))


def info_nce_ref(q, k, temperature=0.07):
    "Each query against all keys of the batch; the positive is the key of the same index; mean."
    Q, K = _unit(_rows(q)), _unit(_rows(k))
    return torch.tensor(sum(_lse([_dot(Q[i], kk) / temperature for kk in K]) - _dot(Q[i], K[i]) / temperature
                            for i in range(len(Q))) / len(Q))


def supcon_ref(z, labels, temperature=0.07):
    "Khosla et al. Eq. (2) 'out': mean over anchors with a positive of -mean_p log softmax over all others."
    Z, y = _unit(_rows(z)), labels.tolist()
    terms = []
    for i in range(len(Z)):
        pos = [p for p in range(len(Z)) if p != i and y[p] == y[i]]
        if not pos:
            continue
        lse = _lse([_dot(Z[i], Z[a]) / temperature for a in range(len(Z)) if a != i])
        terms.append(sum(lse - _dot(Z[i], Z[p]) / temperature for p in pos) / len(pos))
    return torch.tensor(sum(terms) / len(terms))


# --- card 11, MS-SSIM as a training loss (Snell et al. 2017) -----------------------------------------------------------
def _gauss_win_ref(size=11, sigma=1.5, channels=1):
    "The normalised 1-D Gaussian window, built here in float64, shaped for pytorch_msssim's `win` (C, 1, 1, size)."
    g = [math.exp(-((i - size // 2) ** 2) / (2 * sigma**2)) for i in range(size)]
    return (torch.tensor(g, dtype=torch.float64) / math.fsum(g)).view(1, 1, 1, size).repeat(channels, 1, 1, 1)


def ms_ssim_loss_ref(input, target):
    "1 - pytorch_msssim.ms_ssim at the defaults (5 scales, window 11, sigma 1.5, data_range 1), given the float64 window."
    import pytorch_msssim
    x, y = input.detach().double().cpu(), target.detach().double().cpu()
    win = _gauss_win_ref(channels=x.shape[1])
    return 1 - pytorch_msssim.ms_ssim(x, y, data_range=1.0, win=win, size_average=True)


def mixed_ms_ssim_l1_ref(input, target, alpha=0.84):
    "Zhao et al.'s mix: alpha (1 - MS-SSIM) + (1 - alpha) mean |x - y| / R per image, R = 1, MS-SSIM by pytorch_msssim."
    import pytorch_msssim
    x, y = input.detach().double().cpu(), target.detach().double().cpu()
    win = _gauss_win_ref(channels=x.shape[1])
    ms = pytorch_msssim.ms_ssim(x, y, data_range=1.0, win=win, size_average=False).tolist()  # (N,): mean over channels
    l1 = [math.fsum(abs(a - b) for a, b in zip(ra, rb)) / len(ra)
          for ra, rb in zip(_rows(x.flatten(1)), _rows(y.flatten(1)))]
    per_image = [alpha * (1 - m) + (1 - alpha) * d for m, d in zip(ms, l1)]
    return torch.tensor(math.fsum(per_image) / len(per_image))


# --- card 28, the SNR distance (Yuan et al. 2019) ---------------------------------------------------------------------
def _snr_d(hi, hj):
    "Eq. (3): var(h_j - h_i) / var(h_i), population variances (the factor cancels)."
    def var(v):
        m = sum(v) / len(v)
        return sum((x - m) ** 2 for x in v) / len(v)
    return var([b - a for a, b in zip(hi, hj)]) / var(hi)


def snr_contrastive_ref(embeddings, labels, pos_margin=0.0, neg_margin=1.0):
    "Eq. (6), reg_weight 0: each hinge sum over its number of non-zero terms (pytorch-metric-learning's AvgNonZero)."
    E, y = _rows(embeddings), labels.tolist()
    pos, neg = [], []
    for i in range(len(E)):
        for j in range(len(E)):
            if i == j:
                continue
            d = _snr_d(E[i], E[j])
            (pos if y[i] == y[j] else neg).append(max(d - pos_margin, 0.0) if y[i] == y[j] else max(neg_margin - d, 0.0))
    avg = lambda ts: sum(ts) / max(1, sum(t > 0 for t in ts))
    return torch.tensor(avg(pos) + avg(neg))


def snr_triplet_ref(embeddings, labels, margin=0.2, reg_weight=0.005):
    "Eq. (7): hinge over all valid triplets, averaged over the non-zero ones, plus lambda * mean |sum_m h_im|."
    E, y = _rows(embeddings), labels.tolist()
    ts = [max(_snr_d(E[a], E[p]) - _snr_d(E[a], E[q]) + margin, 0.0)
          for a in range(len(E)) for p in range(len(E)) for q in range(len(E))
          if a != p and y[a] == y[p] and y[q] != y[a]]
    reg = sum(abs(sum(r)) for r in E) / len(E)
    return torch.tensor(sum(ts) / max(1, sum(t > 0 for t in ts)) + reg_weight * reg)


def zero_mean_regularizer_ref(embeddings):
    "Eq. (5) without lambda: mean over samples of |sum_m h_im|."
    E = _rows(embeddings)
    return torch.tensor(sum(abs(sum(r)) for r in E) / len(E))


# --- card 08, Barlow Twins (Zbontar et al. 2021) ------------------------------------------------------------------------
def barlow_twins_ref(z1, z2, lambd=5e-3, eps=1e-5):
    "Eq. (1) with the official code's BatchNorm1d(affine=False): columns standardised with the biased variance + eps."
    A, B = _rows(z1), _rows(z2)
    N, D = len(A), len(A[0])

    def standardise(Z):
        cols = []
        for j in range(D):
            col = [r[j] for r in Z]
            m = sum(col) / N
            v = sum((x - m) ** 2 for x in col) / N
            cols.append([(x - m) / math.sqrt(v + eps) for x in col])
        return cols  # D columns of N values

    a, b = standardise(A), standardise(B)
    C = [[sum(a[i][n] * b[j][n] for n in range(N)) / N for j in range(D)] for i in range(D)]
    on = sum((1 - C[i][i]) ** 2 for i in range(D))
    off = sum(C[i][j] ** 2 for i in range(D) for j in range(D) if i != j)
    return torch.tensor(on + lambd * off)


# --- card 46, decoupled contrastive learning (Yeh et al. 2022) ------------------------------------------------------------
def dcl_ref(z1, z2, temperature=0.1, sigma=None):
    """Eq. (6) of the paper: for each of the 2N anchors z_i^(k), -w_i <z_i^(1), z_i^(2)>/tau + log sum over the 2N-2
    other images' views exp(<z_i^(k), z_j^(l)>/tau), one logsumexp; mean over anchors. w = 1 (DCL) or, with sigma,
    DCLW's w_i = 2 - exp(<z_i^(1), z_i^(2)>/sigma) / mean_j exp(<z_j^(1), z_j^(2)>/sigma)."""
    A, B = _unit(_rows(z1)), _unit(_rows(z2))
    n = len(A)
    if sigma is None:
        w = [1.0] * n
    else:
        e = [math.exp(_dot(A[i], B[i]) / sigma) for i in range(n)]
        w = [2 - ei / (sum(e) / n) for ei in e]
    total = 0.0
    for i in range(n):
        for anchor in (A[i], B[i]):
            neg = [_dot(anchor, V[j]) / temperature for j in range(n) if j != i for V in (A, B)]
            total += -w[i] * _dot(A[i], B[i]) / temperature + _lse(neg)
    return torch.tensor(total / (2 * n), dtype=torch.float64)


def dclw_ref(z1, z2, temperature=0.1, sigma=0.5):
    "DCLW: dcl_ref with the von Mises-Fisher weights of the positive term."
    return dcl_ref(z1, z2, temperature, sigma)


# --- card 55, cMIM (Livne 2024/25; the contrastive term as lossbook reconstructs it) --------------------------------------
def _log_normal(z, mu, std):
    "log N(z; mu, diag(std^2)) of one row, in Python floats."
    return sum(-0.5 * ((a - m) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi) for a, m, s in zip(z, mu, std))


def _amim_vae_parts(log_px_given_z, z, mu, std):
    lp, Z, M, S = log_px_given_z.detach().double().tolist(), _rows(z), _rows(mu), _rows(std)
    prior = [sum(-0.5 * a * a - 0.5 * math.log(2 * math.pi) for a in zi) for zi in Z]
    return lp, prior, [_log_normal(Z[i], M[i], S[i]) for i in range(len(Z))]


def amim_ref(log_px_given_z, z, mu, std):
    "A-MIM, one sample: mean over i of -1/2 [log p(x_i|z_i) + log N(z_i; 0, I) + log N(z_i; mu_i, std_i^2)]."
    lp, prior, logq = _amim_vae_parts(log_px_given_z, z, mu, std)
    return torch.tensor(sum(-0.5 * (a + b + c) for a, b, c in zip(lp, prior, logq)) / len(lp), dtype=torch.float64)


def vae_ref(log_px_given_z, z, mu, std):
    "The negative ELBO, one sample: mean over i of -[log p(x_i|z_i) + log N(z_i; 0, I) - log N(z_i; mu_i, std_i^2)]."
    lp, prior, logq = _amim_vae_parts(log_px_given_z, z, mu, std)
    return torch.tensor(sum(-(a + b - c) for a, b, c in zip(lp, prior, logq)) / len(lp), dtype=torch.float64)


def cmim_contrastive_ref(z, mu, std, temperature=1.0):
    """s_ij = log N(z_i; mu_j, std_j^2) / d; each anchor: -log(e^{s_ii/T} / (e^{s_ii/T} + mean_{j != i} e^{s_ij/T}));
    mean over anchors."""
    Z, M, S = _rows(z), _rows(mu), _rows(std)
    B, d = len(Z), len(Z[0])
    total = 0.0
    for i in range(B):
        s = [_log_normal(Z[i], M[j], S[j]) / d / temperature for j in range(B)]
        neg = sum(math.exp(s[j] - s[i]) for j in range(B) if j != i) / (B - 1)
        total += math.log(1 + neg)
    return torch.tensor(total / B, dtype=torch.float64)


# --- card 33, DEPICT (Dizaji et al. 2017) -----------------------------------------------------------------------------------
def depict_loss_ref(input, q, from_logits=True, form="cross_entropy"):
    """The theta-step loss, one sample at a time: -sum_k q_ik log p_ik with p = softmax(input) (or input itself when
    from_logits=False); form='kl' adds sum_k q_ik log q_ik (0 log 0 = 0). Mean over samples."""
    total, Q = 0.0, _rows(q)
    for x, qi in zip(_rows(input), Q):
        logp = [v - _lse(x) for v in x] if from_logits else [math.log(v) for v in x]
        term = -sum(a * b for a, b in zip(qi, logp))
        if form == "kl":
            term += sum(a * math.log(a) for a in qi if a > 0)
        total += term
    return torch.tensor(total / len(Q), dtype=torch.float64)


def depict_targets_ref(p, target="paper_sqrt", prior=None, n_iter=100, eps=1e-12):
    """DEPICT's targets in Python floats: 'paper_sqrt' q_ik ~ p_ik (u_k / f_k(P))^(1/2), 'dec_square' q_ik ~ p_ik^2 /
    f_k(P), 'fixed_point' n_iter damped rounds towards q_ik ~ p_ik u_k / f_k(Q) from Q = P; f_k = mean_i of the column,
    floored at eps; rows normalised."""
    P = _rows(p)
    N, K = len(P), len(P[0])
    u = [1.0 / K] * K if prior is None else prior.detach().double().tolist()
    freq = lambda M: [max(sum(r[k] for r in M) / N, eps) for k in range(K)]
    norm = lambda r: [v / sum(r) for v in r]
    f = freq(P)
    if target == "dec_square":
        return torch.tensor([norm([r[k] ** 2 / f[k] for k in range(K)]) for r in P], dtype=torch.float64)
    if target == "paper_sqrt":
        return torch.tensor([norm([r[k] * math.sqrt(u[k] / f[k]) for k in range(K)]) for r in P], dtype=torch.float64)
    Q, a = [list(r) for r in P], [0.0] * K
    for _ in range(n_iter):  # q_ik ~ p_ik exp(a_k), a <- a/2 + log(u / f(Q))/2 (the damped fixed-point iteration)
        fq = freq(Q)
        a = [0.5 * a[k] + 0.5 * math.log(u[k] / fq[k]) for k in range(K)]
        Q = [norm([r[k] * math.exp(a[k]) for k in range(K)]) for r in P]
    return torch.tensor(Q, dtype=torch.float64)


def depict_objective_ref(p, q, prior=None):
    "J(Q, P) = 1/N sum_i sum_k q_ik log(q_ik / p_ik) + sum_k f_k log(f_k / u_k), f_k = mean_i q_ik."
    P, Q = _rows(p), _rows(q)
    N, K = len(P), len(P[0])
    u = [1.0 / K] * K if prior is None else prior.detach().double().tolist()
    kl = sum(a * math.log(a / b) for pr, qr in zip(P, Q) for a, b in zip(qr, pr) if a > 0) / N
    f = [sum(r[k] for r in Q) / N for k in range(K)]
    return torch.tensor(kl + sum(fk * math.log(fk / uk) for fk, uk in zip(f, u) if fk > 0), dtype=torch.float64)


# --- card 14, AMCL (Wang et al. 2024; the official release's AMCLNTXentLoss) -------------------------------------------------
def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def amcl_ntxent_ref(z1, z2, temp_net, beta=0.01, topk=100):
    """Per head, for each of the 2N anchors (first views, then second views): the other view is the positive, the 2N-2
    views of the other images the negatives, of which the k = min(topk, 2N-2) most cosine-similar are kept;
    ell = -s_p/t_p + mean_K s_n/t_n + beta (D/2 log t_p + 1/t_p) - beta sum_K (log t_n + 1/t_n), with
    t_ab = tau_min + (tau_max - tau_min) sigmoid(-<phi(u_a), phi(u_b)>), phi = Linear -> ReLU -> Linear on unit vectors.
    Sum over heads, mean over the 2N anchors."""
    W1, b1 = _rows(temp_net.phi[0].weight), temp_net.phi[0].bias.detach().double().tolist()
    W2, b2 = _rows(temp_net.phi[2].weight), temp_net.phi[2].bias.detach().double().tolist()
    lo, hi = float(temp_net.tau_min), float(temp_net.tau_max)

    def phi(v):
        hid = [max(0.0, _dot(w, v) + b) for w, b in zip(W1, b1)]
        return [_dot(w, hid) + b for w, b in zip(W2, b2)]

    Z1, Z2 = z1.detach().double().tolist(), z2.detach().double().tolist()
    N, H, D = len(Z1), len(Z1[0]), len(Z1[0][0])
    total = 0.0
    for h in range(H):
        U = _unit([Z1[i][h] for i in range(N)] + [Z2[i][h] for i in range(N)])
        P = [phi(u) for u in U]
        tau = lambda a, b: lo + (hi - lo) * _sigmoid(-_dot(P[a], P[b]))
        for a in range(2 * N):
            p = (a + N) % (2 * N)
            negs = sorted((b for b in range(2 * N) if b not in (a, p)), key=lambda b: -_dot(U[a], U[b]))
            K = negs[:min(topk, 2 * N - 2)]
            tp = tau(a, p)
            total += (-_dot(U[a], U[p]) / tp + sum(_dot(U[a], U[b]) / tau(a, b) for b in K) / len(K)
                      + beta * (D / 2 * math.log(tp) + 1 / tp)
                      - beta * sum(math.log(tau(a, b)) + 1 / tau(a, b) for b in K))
    return torch.tensor(total / (2 * N), dtype=torch.float64)


# --- card 49, the hard contrastive loss (Wang & Liu 2021) ----------------------------------------------------------------
def hard_contrastive_ref(z1, z2, temperature=0.7, hard_fraction=0.25):
    """Sec. 5 of the paper on SimCLR's candidates: for each of the 2N views as anchor, sort its 2N-2 negatives (the views
    of the other images) by cosine similarity, keep the ceil(alpha (2N-2)) largest, and take -log of the positive's
    share of exp(s/tau) over the positive and the kept negatives; mean over the 2N anchors."""
    Z = _unit(_rows(z1) + _rows(z2))
    n = len(Z) // 2
    m = 2 * n - 2
    k = max(1, math.ceil(hard_fraction * m - 1e-9))
    total = 0.0
    for a in range(2 * n):
        p = (a + n) % (2 * n)
        negs = sorted((_dot(Z[a], Z[b]) for b in range(2 * n) if b not in (a, p)), reverse=True)[:k]
        pos = _dot(Z[a], Z[p]) / temperature
        total += _lse([pos] + [s / temperature for s in negs]) - pos
    return torch.tensor(total / (2 * n), dtype=torch.float64)


# --- card 56, MLCD (An et al. 2024; the ZLPR form of Su et al. 2022) --------------------------------------------------------
def _mlcd_masks(pos_mask):
    return [[bool(v) for v in row] for row in pos_mask.detach().cpu().tolist()]


def mlcd_ref(logits, pos_mask):
    "Per row: log(1 + sum_{negatives} e^{s_n}) + log(1 + sum_{positives} e^{-s_p}) with 1 = e^0 in a max-shifted sum; mean."
    S, P = _rows(logits), _mlcd_masks(pos_mask)
    total = 0.0
    for s, p in zip(S, P):
        total += _lse([0.0] + [v for v, m in zip(s, p) if not m]) + _lse([0.0] + [-v for v, m in zip(s, p) if m])
    return torch.tensor(total / len(S), dtype=torch.float64)


def multilabel_softmax_ref(logits, pos_mask):
    "Per row: -(1/|P|) sum_{p in P} (s_p - log sum_k e^{s_k}); mean over rows."
    S, P = _rows(logits), _mlcd_masks(pos_mask)
    total = 0.0
    for s, p in zip(S, P):
        z = _lse(s)
        pos = [v for v, m in zip(s, p) if m]
        total += -sum(v - z for v in pos) / len(pos)
    return torch.tensor(total / len(S), dtype=torch.float64)


# --- card 20, the Betti matching loss (Stucki et al. 2023) -----------------------------------------------------------------
def _bm_edges(f, H, W):
    "Edges (value, x, y, type) of the V-construction, sorted by (value, x, y, type): Betti-Matching-3D's order."
    E = []
    for x in range(H):
        for y in range(W):
            if x + 1 < H:
                E.append((max(f[x][y], f[x + 1][y]), x, y, 0))
            if y + 1 < W:
                E.append((max(f[x][y], f[x][y + 1]), x, y, 1))
    return sorted(E)


def _bm_root(p, a):
    while p[a] != a:
        a = p[a]
    return a


def betti_matching_slow(f0, f1):
    """Plain union-find transcription of Betti-Matching-3D's 2-D algorithm (sublevel filtrations f0, f1 as nested lists,
    comparison min(f0, f1), reduced homology). Returns {dim: (pairs0, pairs1, matched)}, pairs as ((bx, by), (dx, dy))
    pixel coordinates and matched as (pair0, pair1)."""
    H, W = len(f0), len(f0[0])
    fc = [[min(a, b) for a, b in zip(r0, r1)] for r0, r1 in zip(f0, f1)]
    fs = (f0, f1, fc)
    E = [_bm_edges(f, H, W) for f in fs]

    def edge_pixel(f, e):
        v, x, y, t = e
        if t == 0:
            return (x + 1, y) if v == f[x + 1][y] else (x, y)
        return (x, y + 1) if v == f[x][y + 1] else (x, y)

    def square(f, s):
        x, y = divmod(s, W - 1)
        return max(f[x][y], f[x + 1][y], f[x][y + 1], f[x + 1][y + 1])

    def square_pixel(f, s):
        x, y = divmod(s, W - 1)
        v = square(f, s)
        for c in ((x + 1, y + 1), (x + 1, y), (x, y + 1), (x, y)):
            if f[c[0]][c[1]] == v:
                return c

    out = (H - 1) * (W - 1)  # the outside node of the dual graph

    def dual_ends(e):
        _, x, y, t = e
        if t == 0:
            return (out if y == 0 else x * (W - 1) + y - 1), (out if y == W - 1 else x * (W - 1) + y)
        return (out if x == 0 else (x - 1) * (W - 1) + y), (out if x == H - 1 else x * (W - 1) + y)

    res = {}
    # dimension 1: dual union-find over the edges in decreasing order; the younger (smaller) square dies
    births = [[square(f, s) for s in range(out)] + [math.inf] for f in fs]

    def dual_link(bt, p, a, b):
        if (bt[a], a) < (bt[b], b):
            p[a] = b
            return a
        p[b] = a
        return b

    keys, pairs = [{}, {}], [[], []]
    for k in (0, 1):
        p, pc = list(range(out + 1)), list(range(out + 1))
        for e in reversed(E[k]):
            a, b = dual_ends(e)
            ra, rb = _bm_root(p, a), _bm_root(p, b)
            if ra != rb:
                y = dual_link(births[k], p, ra, rb)
                yc = dual_link(births[2], pc, _bm_root(pc, a), _bm_root(pc, b))
                if e[0] != births[k][y]:
                    pr = (edge_pixel(fs[k], e), square_pixel(fs[k], y))
                    pairs[k].append(pr)
                    keys[k][yc] = pr
    p, matched = list(range(out + 1)), []
    for e in reversed(E[2]):
        a, b = dual_ends(e)
        ra, rb = _bm_root(p, a), _bm_root(p, b)
        if ra != rb:
            y = dual_link(births[2], p, ra, rb)
            if e[0] != births[2][y] and y in keys[0] and y in keys[1]:
                matched.append((keys[0][y], keys[1][y]))
    res[1] = (pairs[0], pairs[1], matched)

    # dimension 0: union-find over the edges in increasing order; the younger (larger) vertex dies
    def value(f, i):
        return f[i // W][i % W]

    def link(f, p, a, b):
        if (value(f, a), a) > (value(f, b), b):
            p[a] = b
            return a
        p[b] = a
        return b

    def ends(e):
        _, x, y, t = e
        return x * W + y, ((x + 1) * W + y if t == 0 else x * W + y + 1)

    keys, pairs = [{}, {}], [[], []]
    for k in (0, 1):
        p = list(range(H * W))
        for e in E[k]:
            a, b = ends(e)
            ra, rb = _bm_root(p, a), _bm_root(p, b)
            if ra != rb:
                y = link(fs[k], p, ra, rb)
                if value(fs[k], y) != e[0]:
                    pr = (divmod(y, W), edge_pixel(fs[k], e))
                    pairs[k].append(pr)
                    keys[k][y] = pr
    ps = [list(range(H * W)) for _ in range(3)]
    matched = []
    for e in E[2]:
        a, b = ends(e)
        ra, rb = _bm_root(ps[2], a), _bm_root(ps[2], b)
        if ra != rb:
            yc = link(fc, ps[2], ra, rb)
            y0 = link(f0, ps[0], _bm_root(ps[0], a), _bm_root(ps[0], b))
            y1 = link(f1, ps[1], _bm_root(ps[1], a), _bm_root(ps[1], b))
            if value(fc, yc) != e[0] and y0 in keys[0] and y1 in keys[1]:
                matched.append((keys[0][y0], keys[1][y1]))
    res[0] = (pairs[0], pairs[1], matched)
    return res


def betti_matching_loss_ref(probs, target, filtration="superlevel", push_unmatched_to_1_0=False):
    "Eq. (5) per image from `betti_matching_slow`, summed over dimensions 0, 1; mean over the B*C images."
    P, T = probs.detach().double().cpu(), target.detach().double().cpu()
    if filtration == "superlevel":
        P, T = 1 - P, 1 - T
    B, C = P.shape[:2]
    total = []
    for i in range(B):
        for c in range(C):
            f0, f1 = P[i, c].tolist(), T[i, c].tolist()
            v0 = lambda q: f0[q[0]][q[1]]
            v1 = lambda q: f1[q[0]][q[1]]
            terms = []
            for pairs0, pairs1, matched in betti_matching_slow(f0, f1).values():
                m0, m1 = [m[0] for m in matched], [m[1] for m in matched]
                for q, p in matched:
                    terms.append(2 * ((v0(q[0]) - v1(p[0])) ** 2 + (v0(q[1]) - v1(p[1])) ** 2))
                for q in pairs0:
                    if q not in m0:
                        b, d = v0(q[0]), v0(q[1])
                        terms.append(2 * ((b - 1) ** 2 + d**2) if push_unmatched_to_1_0 else (b - d) ** 2)
                for p in pairs1:
                    if p not in m1:
                        b, d = v1(p[0]), v1(p[1])
                        terms.append(2 * ((b - 1) ** 2 + d**2) if push_unmatched_to_1_0 else (b - d) ** 2)
            total.append(math.fsum(terms))
    return torch.tensor(math.fsum(total) / len(total), dtype=torch.float64)


# --- card 41, ConR (Keramati et al. 2024) ---------------------------------------------------------------------------------
def conr_ref(features, labels, preds, weights=None, omega=1.0, e=0.01, tau=0.07, official_quirk=False):
    "Eq. (1)-(5) of the notebook anchor by anchor in Python floats; official_quirk adds 1 per non-positive entry (Eq. 6)."
    F_, Y, P = _unit(_rows(features)), _rows(labels.reshape(len(labels), -1)), _rows(preds.reshape(len(preds), -1))
    W = [1.0] * len(F_) if weights is None else _rows(weights)
    dist = lambda a, b: math.sqrt(sum((u - v) ** 2 for u, v in zip(a, b)))
    M, total = len(F_), []
    for i in range(M):
        pos = [j for j in range(M) if j != i and dist(Y[i], Y[j]) <= omega]
        neg = [j for j in range(M) if dist(Y[i], Y[j]) > omega and dist(P[i], P[j]) <= omega]
        if not pos or not neg:
            total.append(0.0)
            continue
        s = [_dot(F_[i], F_[j]) / tau for j in range(M)]
        den = math.fsum(math.exp(s[p]) for p in pos) + math.fsum(
            W[i] * math.exp(e * dist(Y[i], Y[n])) * math.exp(s[n]) for n in neg)
        if official_quirk:
            den += M - len(pos)
        total.append(W[i] * math.fsum(math.log(den) - s[p] for p in pos) / len(pos))
    return torch.tensor(math.fsum(total) / M, dtype=torch.float64)


REFERENCES = {
    "barlow_twins_loss": barlow_twins_ref,
    "snr_contrastive_loss": snr_contrastive_ref,
    "snr_triplet_loss": snr_triplet_ref,
    "zero_mean_regularizer": zero_mean_regularizer_ref,
    "ms_ssim_loss": ms_ssim_loss_ref,
    "mixed_ms_ssim_l1_loss": mixed_ms_ssim_l1_ref,
    "nt_xent_loss": nt_xent_ref,
    "info_nce": info_nce_ref,
    "supcon_loss": supcon_ref,
    "z_loss": z_loss_ref,
    "z_loss_from_stats": z_loss_from_stats_ref,
    "log_spherical_softmax_loss": log_spherical_softmax_ref,
    "log_taylor_softmax_loss": log_taylor_softmax_ref,
    "dcl_loss": dcl_ref,
    "dclw_loss": dclw_ref,
    "amim_loss": amim_ref,
    "vae_loss": vae_ref,
    "cmim_contrastive_loss": cmim_contrastive_ref,
    "depict_loss": depict_loss_ref,
    "amcl_ntxent_loss": amcl_ntxent_ref,
    "hard_contrastive_loss": hard_contrastive_ref,
    "mlcd_loss": mlcd_ref,
    "multilabel_softmax_loss": multilabel_softmax_ref,
    "betti_matching_loss": betti_matching_loss_ref,
    "conr_loss": conr_ref,
}


# --- card 27, Core-tuning's focal supervised contrastive loss (Zhang et al. 2021) --------------------------------------
def focal_supcon_ref(z, labels, temperature=0.07, focal=True, normalize_by="all"):
    """Eqs. 5-6 of the notebook, the official `focal_SupConLoss`: per anchor a with a positive,
    -(1/D_a) sum_{b in P(a)} (1 - p_ab) log p_ab, p_ab = softmax over k != a of z_a.z_k/tau, D_a = N ('all') or |P(a)|;
    the mean over the anchors that have a positive. Integer labels only."""
    Z, y = _unit(_rows(z)), labels.tolist()
    N, terms = len(Z), []
    for a in range(N):
        pos = [b for b in range(N) if b != a and y[b] == y[a]]
        if not pos:
            continue
        lse = _lse([_dot(Z[a], Z[k]) / temperature for k in range(N) if k != a])
        total = 0.0
        for b in pos:
            log_p = _dot(Z[a], Z[b]) / temperature - lse
            total += (1 - math.exp(log_p) if focal else 1.0) * log_p
        terms.append(-total / (N if normalize_by == "all" else len(pos)))
    return torch.tensor(math.fsum(terms) / len(terms), dtype=torch.float64)


REFERENCES["focal_supcon_loss"] = focal_supcon_ref


# --- card 40, Hard Patches Mining's loss-prediction objectives (Wang et al. 2023) ---------------------------------------
def relative_loss_prediction_ref(pred, target_loss, eps=1e-6):
    """Eq. 2 of the notebook: per image, over the ordered pairs (j, k) with l_j != l_k,
    -1[l_k > l_j] log(sigmoid(p_k - p_j) + eps) - 1[l_k < l_j] log(1 - sigmoid(p_k - p_j) + eps), averaged over those
    pairs (0 when there is none); the mean over the images."""
    P, T = _rows(pred), _rows(target_loss)
    per_image = []
    for p, t in zip(P, T):
        terms = []
        for j in range(len(p)):
            for k in range(len(p)):
                if t[j] == t[k]:
                    continue
                d = p[k] - p[j]
                if eps == 0:  # -log sigmoid(d) = softplus(-d), -log(1 - sigmoid(d)) = softplus(d)
                    terms.append(_softplus(-d) if t[k] > t[j] else _softplus(d))
                    continue
                s = 1.0 / (1.0 + math.exp(-d)) if d >= 0 else math.exp(d) / (1.0 + math.exp(d))
                terms.append(-math.log(s + eps) if t[k] > t[j] else -math.log(1.0 - s + eps))
        per_image.append(math.fsum(terms) / len(terms) if terms else 0.0)
    return torch.tensor(math.fsum(per_image) / len(per_image), dtype=torch.float64)


def zscore_loss_prediction_ref(pred, target_loss):
    """Eq. 3 of the notebook: per image, the mean of (p_j - (l_j - mean l) / sqrt(var l + 1e-6))^2, var unbiased;
    the mean over the images."""
    P, T = _rows(pred), _rows(target_loss)
    per_image = []
    for p, t in zip(P, T):
        m = math.fsum(t) / len(t)
        v = math.fsum((x - m) ** 2 for x in t) / (len(t) - 1)
        per_image.append(math.fsum((a - (b - m) / math.sqrt(v + 1e-6)) ** 2 for a, b in zip(p, t)) / len(p))
    return torch.tensor(math.fsum(per_image) / len(per_image), dtype=torch.float64)


REFERENCES["relative_loss_prediction_loss"] = relative_loss_prediction_ref
REFERENCES["zscore_loss_prediction_loss"] = zscore_loss_prediction_ref


# --- card 63, multi-sample dropout (Inoue 2019) -------------------------------------------------------------------------
def multi_sample_dropout_ref(features, target, weight, bias=None, masks=None, p=0.5):
    """Eqs. (1)-(2) of the notebook with the given keep masks (B, M, F): for each example and each sample m, the
    logits W (d_m * h / (1 - p)) + b and their cross-entropy; the mean over the M samples, then over the batch."""
    H, W = _rows(features), _rows(weight)
    bvec = [0.0] * len(W) if bias is None else _rows(bias)
    total = []
    for h, c, mk in zip(H, target.tolist(), masks.tolist()):
        losses = []
        for keep in mk:
            z = [v * (1.0 if k else 0.0) / (1 - p) for v, k in zip(h, keep)]
            o = [math.fsum(w * x for w, x in zip(row, z)) + bb for row, bb in zip(W, bvec)]
            top = max(o)
            losses.append(top + math.log(math.fsum(math.exp(v - top) for v in o)) - o[c])
        total.append(math.fsum(losses) / len(losses))
    return torch.tensor(math.fsum(total) / len(total), dtype=torch.float64)


REFERENCES["multi_sample_dropout_loss"] = multi_sample_dropout_ref


# --- card 54, RankMixup's ranking losses (Noh et al. 2023) --------------------------------------------------------------
def mixup_ranking_ref(logits_raw, logits_mix, margin=2.0):
    """Eq. (4) of the notebook (the official default, on max logits): the mean over samples of
    max(0, max_k mix_k - max_k raw_k + margin)."""
    terms = [max(0.0, max(m) - max(r) + margin) for r, m in zip(_rows(logits_raw), _rows(logits_mix))]
    return torch.tensor(math.fsum(terms) / len(terms), dtype=torch.float64)


def mndcg_ref(logits_raw, logits_mix, y_mix):
    """Eqs. (5)-(7) of the notebook: per sample, the raw item (relevance 1, confidence max softmax) first, then the M
    mixups sorted by relevance max_k y_mix (descending, stable), DCG / IDCG with discounts 1/log2(t+1), the symmetric
    ratio (DCG/IDCG if IDCG > DCG else IDCG/DCG), and 1 - that ratio; the mean over samples."""
    def conf(row):
        m = max(row)
        e = [math.exp(v - m) for v in row]
        return 1.0 / math.fsum(e)  # the softmax of the largest entry
    raw, mix, ym = _rows(logits_raw), _rows(logits_mix), _rows(y_mix)
    M, B = len(mix), len(raw)
    out = []
    for i in range(B):
        items = sorted(((max(ym[j][i]), conf(mix[j][i]), j) for j in range(M)), key=lambda t: (-t[0], t[2]))
        rel = [1.0] + [t[0] for t in items]
        cs = [conf(raw[i])] + [t[1] for t in items]
        dcg = math.fsum(c / math.log2(t + 2) for t, c in enumerate(cs))
        idcg = math.fsum(r / math.log2(t + 2) for t, r in enumerate(rel))
        out.append(1.0 - (dcg / idcg if idcg > dcg else idcg / dcg))
    return torch.tensor(math.fsum(out) / B, dtype=torch.float64)


REFERENCES["mixup_ranking_loss"] = mixup_ranking_ref
REFERENCES["mndcg_loss"] = mndcg_ref


# --- card 05, the Proto-Triplet and ICNN losses (Mendez-Ruiz et al. 2023) ------------------------------------------------
def _pt_dist(a, b):
    "Eq. (2): sqrt(||a - b||^2 + 1e-6), the official code's smoothed distance."
    return math.sqrt(sum((u - v) ** 2 for u, v in zip(a, b)) + 1e-6)


def proto_triplet_ref(query, query_labels, protos, margin=0.5):
    "Eq. (3): mean over queries of max(0, d(q, c_y) - min_{k != y} d(q, c_k) + m)."
    P, total = _rows(protos), 0.0
    rows = _rows(query)
    for q, c in zip(rows, query_labels.tolist()):
        d = [_pt_dist(q, p) for p in P]
        total += max(0.0, d[c] - min(v for j, v in enumerate(d) if j != c) + margin)
    return torch.tensor(total / len(rows), dtype=torch.float64)


def icnn_ref(x, labels, k=4, eps=1e-7):
    """Eqs. (4)-(11), the official modified_score's algorithm with ipc = k + 1: for each sample its ipc nearest others
    (self excluded); r = D / (nu + eps) over the first k, row-normalised by max(1, max r); lambda_sc = 1 - sum_i
    [sum_S r / (|S_i| + eps)] / (#{|S_i| > 0} + eps); e = D (1 - S) / (max D (1 - S) + eps), lambda_dc likewise (1 when
    no different-class neighbour anywhere); gamma = mean |S_i| / k (1 if k + 2 >= n); -log((lambda + gamma) / 2)."""
    X, Y = _rows(x), labels.tolist()
    n = len(X)
    k = n - 2 if k + 2 >= n else k
    p = k + 1
    Ds, Ss = [], []
    for i in range(n):
        cand = sorted((_pt_dist(X[i], X[j]), j) for j in range(n) if j != i)[:p]
        Ds.append([d for d, _ in cand])
        Ss.append([Y[j] == Y[i] for _, j in cand])
    sc, n_sc, dcd = 0.0, 0, []
    for D, S in zip(Ds, Ss):
        others = [d for d, s in zip(D, S) if not s]
        r = [D[j] / (min(others) + eps) if others else 0.0 for j in range(k)]
        top = max(1.0, max(r))
        cnt = sum(S[:k])
        sc += sum(r[j] / top for j in range(k) if S[j]) / (cnt + eps)
        n_sc += cnt > 0
        dcd.append([0.0 if S[j] else D[j] for j in range(k)])
    lam_sc = 1 - sc / (n_sc + eps)
    big = max(max(row) for row in dcd)
    dc, n_dc = 0.0, 0
    for row, S in zip(dcd, Ss):
        cnt = k - sum(S[:k])
        dc += sum(v / (big + eps) for v in row) / (cnt + eps)
        n_dc += cnt > 0
    lam_dc = dc / (n_dc + eps)
    if n_dc == 0:
        lam_dc = abs(lam_dc - 1)
    gamma = sum(sum(S[:k]) / k for S in Ss) / n if k + 2 < n else 1.0
    return torch.tensor(-math.log(((lam_sc + lam_dc) / 2 + gamma) / 2), dtype=torch.float64)


REFERENCES["proto_triplet_loss"] = proto_triplet_ref
REFERENCES["icnn_loss"] = icnn_ref


# --- card 02, comp-sum losses and the smooth adversarial comp-sum loss (Mao, Mohri & Zhong 2023) ---------------------
def _comp_sum_row(h, c, tau):
    "Eq. (1)-(2): Phi^tau(u), u = sum_{y' != y} exp(h_y' - h_y); Phi^1 = log(1 + u), else ((1 + u)^(1 - tau) - 1)/(1 - tau)."
    u = math.fsum(math.exp(v - h[c]) for k, v in enumerate(h) if k != c)
    return math.log1p(u) if tau == 1.0 else ((1.0 + u) ** (1.0 - tau) - 1.0) / (1.0 - tau)


def comp_sum_ref(logits, target, tau=1.0):
    "The comp-sum loss at tau = 1 (cross-entropy): Phi^1(sum_{y' != y} exp(h_y' - h_y)); mean."
    rows = _rows(logits)
    return torch.tensor(math.fsum(_comp_sum_row(h, c, tau) for h, c in zip(rows, target.tolist())) / len(rows),
                        dtype=torch.float64)


def adv_comp_sum_ref(logits, adv_logits, target, tau=1.0, nu=6.0):
    "Eq. (6) at given scores: comp-sum loss (tau = 1) + nu ||h(x') - h(x)||_2 with nu = 6; mean."
    rows, adv = _rows(logits), _rows(adv_logits)
    terms = [_comp_sum_row(h, c, tau) + nu * math.sqrt(math.fsum((a - b) ** 2 for a, b in zip(ha, h)))
             for h, ha, c in zip(rows, adv, target.tolist())]
    return torch.tensor(math.fsum(terms) / len(terms), dtype=torch.float64)


REFERENCES["comp_sum_loss"] = comp_sum_ref
REFERENCES["adv_comp_sum_loss"] = adv_comp_sum_ref


# --- card 42, Histoformer's Pearson correlation loss (Sun et al. 2024) -------------------------------------------------
def _pearson_rho_ref(a, b, eps=1e-6):
    "Eq. (1): sum (a-ā)(b-b̄) / (sqrt(sum (a-ā)^2) sqrt(sum (b-b̄)^2) + eps), over every value of one image."
    n = len(a)
    ma, mb = math.fsum(a) / n, math.fsum(b) / n
    sab = math.fsum((u - ma) * (v - mb) for u, v in zip(a, b))
    saa, sbb = math.fsum((u - ma) ** 2 for u in a), math.fsum((v - mb) ** 2 for v in b)
    return sab / (math.sqrt(saa) * math.sqrt(sbb) + eps)


def pearson_loss_ref(input, target):
    "Eq. (2): the mean over images of (1 - rho) / 2, each image flattened over C×H×W."
    rows = [(_pearson_rho_ref(a, b)) for a, b in zip(_rows(input.flatten(1)), _rows(target.flatten(1)))]
    return torch.tensor(math.fsum((1 - r) / 2 for r in rows) / len(rows), dtype=torch.float64)


def l1_pearson_loss_ref(input, target):
    "Eq. (3): L1 averaged over all values of the batch + the Pearson loss of Eq. (2), weights 1 and 1."
    a, b = _rows(input.flatten()), _rows(target.flatten())
    l1 = math.fsum(abs(u - v) for u, v in zip(a, b)) / len(a)
    return torch.tensor(l1, dtype=torch.float64) + pearson_loss_ref(input, target)


REFERENCES["pearson_loss"] = pearson_loss_ref
REFERENCES["l1_pearson_loss"] = l1_pearson_loss_ref


# --- card 04, LDR-KL, ALDR-KL and the noise-robust baselines (Zhu, Ying & Yang, ICML 2023) -----------------------------
def _ldr_lme(d, lam):
    "lam log((1/K) sum_k exp(d_k / lam)), stably."
    m = max(v / lam for v in d)
    return lam * (m + math.log(math.fsum(math.exp(v / lam - m) for v in d) / len(d)))


def _softmax_row(f):
    m = max(f)
    e = [math.exp(v - m) for v in f]
    s = math.fsum(e)
    return [v / s for v in e]


def ldr_kl_ref(logits, target, lam=1.0, margin=1.0):
    "Eqs. 1-2 of the notebook, no normalisation: lam log mean_k exp((c 1[k != y] + f_k - f_y) / lam); mean."
    rows = _rows(logits)
    out = [_ldr_lme([(margin if k != c else 0.0) + f[k] - f[c] for k in range(len(f))], lam)
           for f, c in zip(rows, target.tolist())]
    return torch.tensor(math.fsum(out) / len(out), dtype=torch.float64)


def aldr_kl_ref(logits, target, lambdas, lam0=1.0, margin=1.0, alpha=2.0):
    """Eqs. 9-10 of the notebook (ALDRLoss_V1): f <- f / (||f||_1 / K); p = normalize_1(softmax(f / lambda_old) + 1e-5);
    lambda = lam0 (1 - KL(p, u) / (alpha log K)); loss = lambda log mean exp(d / lambda) - alpha log K / (2 lam0)
    (lambda - lam0)^2; mean."""
    out = []
    for f, c, old in zip(_rows(logits), target.tolist(), _rows(lambdas)):
        K = len(f)
        den = math.fsum(abs(v) for v in f) / K
        f = [v / den for v in f]
        p = [v + 1e-5 for v in _softmax_row([v / old for v in f])]
        s = math.fsum(p)
        p = [v / s for v in p]
        kl = math.fsum(v * math.log(K * v) for v in p)
        lam = lam0 * (1 - kl / (alpha * math.log(K)))
        d = [(margin if k != c else 0.0) + f[k] - f[c] for k in range(K)]
        out.append(_ldr_lme(d, lam) - alpha * math.log(K) / (2 * lam0) * (lam - lam0) ** 2)
    return torch.tensor(math.fsum(out) / len(out), dtype=torch.float64)


def _p_y(logits, target):
    return [_softmax_row(f)[c] for f, c in zip(_rows(logits), target.tolist())]


def gce_ref(logits, target, q=0.7):
    "Zhang & Sabuncu 2018: (1 - p_y^q) / q; mean."
    ps = _p_y(logits, target)
    return torch.tensor(math.fsum((1 - p**q) / q for p in ps) / len(ps), dtype=torch.float64)


def sce_ref(logits, target, alpha=0.1, beta=1.0, A=4.0):
    "Wang et al. 2019: alpha (-log p_y) + beta * (-sum_k p_k log q_k) with log 0 = -A, i.e. beta A (1 - p_y); mean."
    ps = _p_y(logits, target)
    return torch.tensor(math.fsum(-alpha * math.log(p) + beta * A * (1 - p) for p in ps) / len(ps), dtype=torch.float64)


def mae_ref(logits, target):
    "Ghosh et al. 2017: sum_k |onehot_k - p_k|; mean."
    out = []
    for f, c in zip(_rows(logits), target.tolist()):
        p = _softmax_row(f)
        out.append(math.fsum(abs((1.0 if k == c else 0.0) - p[k]) for k in range(len(p))))
    return torch.tensor(math.fsum(out) / len(out), dtype=torch.float64)


REFERENCES["ldr_kl_loss"] = ldr_kl_ref
REFERENCES["aldr_kl_loss"] = aldr_kl_ref
REFERENCES["gce_loss"] = gce_ref
REFERENCES["sce_loss"] = sce_ref
REFERENCES["mae_loss"] = mae_ref


# --- card 45, TopoMortar (clDice, CE+Dice, Skeleton Recall), float64 loops over pixels ------------------------------------
def _tm_softmax(logits):
    "Per image a list over channels of H x W lists of softmax probabilities."
    out = []
    for img in logits.detach().double().cpu().tolist():
        C, H, W = len(img), len(img[0]), len(img[0][0])
        probs = [[[0.0] * W for _ in range(H)] for _ in range(C)]
        for i in range(H):
            for j in range(W):
                m = max(img[c][i][j] for c in range(C))
                e = [math.exp(img[c][i][j] - m) for c in range(C)]
                for c in range(C):
                    probs[c][i][j] = e[c] / sum(e)
        out.append(probs)
    return out


def _tm_erode(a):
    H, W = len(a), len(a[0])
    return [[min([a[i][j]] + [a[i + di][j + dj] for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1))
                              if 0 <= i + di < H and 0 <= j + dj < W]) for j in range(W)] for i in range(H)]


def _tm_dilate(a):
    H, W = len(a), len(a[0])
    return [[max(a[i + di][j + dj] for di in (-1, 0, 1) for dj in (-1, 0, 1) if 0 <= i + di < H and 0 <= j + dj < W)
             for j in range(W)] for i in range(H)]


def _tm_soft_skel(a, iters=3):
    "Shit et al.'s soft skeleton: relu(I - open(I)), then iters x (I <- erode(I); S += relu(d - S d))."
    relu = lambda v: max(v, 0.0)
    op = _tm_dilate(_tm_erode(a))
    skel = [[relu(x - o) for x, o in zip(r, ro)] for r, ro in zip(a, op)]
    for _ in range(iters):
        a = _tm_erode(a)
        op = _tm_dilate(_tm_erode(a))
        delta = [[relu(x - o) for x, o in zip(r, ro)] for r, ro in zip(a, op)]
        skel = [[s + relu(d - s * d) for s, d in zip(rs, rd)] for rs, rd in zip(skel, delta)]
    return skel


def _tm_sum(*maps):
    return sum(math.prod(v) for rows in zip(*maps) for v in zip(*rows))


def _tm_parts(logits, target):
    return _tm_softmax(logits), target.detach().double().cpu().tolist()


def _tm_cldice_image(p, t, iters=3, smooth=1.0):
    "Eq. (5) of the notebook for one image, sums over the foreground channels."
    sp = [_tm_soft_skel(p[c], iters) for c in range(1, len(p))]
    st = [_tm_soft_skel(t[c], iters) for c in range(1, len(t))]
    tprec = (sum(_tm_sum(sp[k], t[k + 1]) for k in range(len(sp))) + smooth) / (sum(_tm_sum(s) for s in sp) + smooth)
    tsens = (sum(_tm_sum(st[k], p[k + 1]) for k in range(len(st))) + smooth) / (sum(_tm_sum(s) for s in st) + smooth)
    return 1 - 2 * tprec * tsens / (tprec + tsens)


def _tm_dice_image(p, t):
    "-mean_c (2 sum p t + 1e-5) / (sum t + sum p + 1e-5), background included."
    C = len(p)
    return -sum((2 * _tm_sum(p[c], t[c]) + 1e-5) / (_tm_sum(t[c]) + _tm_sum(p[c]) + 1e-5) for c in range(C)) / C


def _tm_ce_image(p, t):
    "sum_c mean_x -t log(p + 1e-15)."
    H, W = len(p[0]), len(p[0][0])
    return sum(-t[c][i][j] * math.log(p[c][i][j] + 1e-15) for c in range(len(p)) for i in range(H) for j in range(W)) / (H * W)


def _tm_recall_image(p, t, y, smooth=1.0):
    "-mean_{c>=1} (sum p t y + s) / max(sum t y + s, 1e-8)."
    C = len(p)
    return -sum((_tm_sum(p[c], t[c], y[c - 1]) + smooth) / max(_tm_sum(t[c], y[c - 1]) + smooth, 1e-8)
                for c in range(1, C)) / (C - 1)


def cldice_ref(logits, target, iters=3, smooth=1.0):
    P, T = _tm_parts(logits, target)
    return torch.tensor(sum(_tm_cldice_image(p, t, iters, smooth) for p, t in zip(P, T)) / len(P))


def ce_dice_ref(logits, target):
    P, T = _tm_parts(logits, target)
    return torch.tensor(sum(_tm_ce_image(p, t) + _tm_dice_image(p, t) for p, t in zip(P, T)) / len(P))


def dice_cldice_ref(logits, target, alpha=0.5):
    P, T = _tm_parts(logits, target)
    return torch.tensor(sum((1 - alpha) * _tm_dice_image(p, t) + alpha * _tm_cldice_image(p, t)
                            for p, t in zip(P, T)) / len(P))


def skeleton_recall_ref(logits, target, tubed_skel):
    P, T = _tm_parts(logits, target)
    Y = tubed_skel.detach().double().cpu().tolist()
    return torch.tensor(sum(_tm_recall_image(p, t, y) for p, t, y in zip(P, T, Y)) / len(P))


def ce_skeleton_recall_ref(logits, target, tubed_skel):
    P, T = _tm_parts(logits, target)
    Y = tubed_skel.detach().double().cpu().tolist()
    return torch.tensor(sum(_tm_ce_image(p, t) + _tm_recall_image(p, t, y) for p, t, y in zip(P, T, Y)) / len(P))


REFERENCES["cldice_loss"] = cldice_ref
REFERENCES["ce_dice_loss"] = ce_dice_ref
REFERENCES["dice_cldice_loss"] = dice_cldice_ref
REFERENCES["skeleton_recall_loss"] = skeleton_recall_ref
REFERENCES["ce_skeleton_recall_loss"] = ce_skeleton_recall_ref


# --- card 35, the Bias Loss (Abrahamyan et al. 2021) --------------------------------------------------------------------
def bias_loss_ref(logits, target, features, scale=0.3, shift=0.3):
    """Eqs. (1)-(4): v_i = unbiased variance of sample i's feature map, v_hat = (v - min) / (max - min) over the batch,
    w = exp(scale v_hat) - shift; the mean of w_i * (logsumexp(o_i) - o_{i,y_i})."""
    var = []
    for r in _rows(features.reshape(len(features), -1)):
        m = sum(r) / len(r)
        var.append(sum((x - m) ** 2 for x in r) / (len(r) - 1))
    lo, hi = min(var), max(var)
    total = 0.0
    for o, y, v in zip(_rows(logits), target.tolist(), var):
        mx = max(o)
        lse = mx + math.log(sum(math.exp(x - mx) for x in o))
        w = math.exp(scale * ((v - lo) / (hi - lo) if hi > lo else 0.0)) - shift
        total += w * (lse - o[y])
    return torch.tensor(total / len(var))


REFERENCES["bias_loss"] = bias_loss_ref


# --- card 32, nested dropout's truncated cross-entropy (Chen et al. 2022) -----------------------------------------------
def nested_dropout_loss_ref(features, weight, target, k=None):
    """Eqs. 2-3 of the notebook: logits o_c = sum_{i < k} h_i W[i][c] (k = D by default, no bias),
    -log softmax(o)_y by a max-shifted log-sum-exp; the mean over the batch."""
    H, W, y = _rows(features), _rows(weight), target.tolist()
    k = len(W) if k is None else k
    total = []
    for h, c in zip(H, y):
        o = [math.fsum(h[i] * W[i][j] for i in range(k)) for j in range(len(W[0]))]
        m = max(o)
        total.append(m + math.log(math.fsum(math.exp(v - m) for v in o)) - o[c])
    return torch.tensor(math.fsum(total) / len(total), dtype=torch.float64)


REFERENCES["nested_dropout_loss"] = nested_dropout_loss_ref


# --- card 16, EnsLoss and the fixed CC margin losses (Dai 2024) ----------------------------------------------------------
def _margins_ref(logits, targets):
    return [(2 * t - 1) * f for f, t in zip(_rows(logits.reshape(-1)), targets.tolist())]


def ensloss_ref(logits, targets, seed):
    """The official `ensLoss.forward` as a loop: eps ~ N(0, 1) (float64, torch.Generator().manual_seed(seed)),
    g_raw = -exp(eps) sorted ascending, clipped at -1; the k-th smallest goes to the k-th smallest margin (stable);
    g /= z for z > 1; g -= 1e-6; the mean of g_i z_i."""
    z = _margins_ref(logits, targets)
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(len(z), generator=g, dtype=torch.float64).tolist()
    raw = sorted(max(-math.exp(e), -1.0) for e in eps)
    order = sorted(range(len(z)), key=lambda i: z[i])  # Python's sort is stable
    d = [0.0] * len(z)
    for k, i in enumerate(order):
        d[i] = raw[k]
    d = [(di / zi if zi > 1 else di) - 1e-6 for di, zi in zip(d, z)]
    return torch.tensor(math.fsum(di * zi for di, zi in zip(d, z)) / len(z), dtype=torch.float64)


def logistic_margin_ref(logits, targets):
    "log(1 + exp(-z)), mean."
    z = _margins_ref(logits, targets)
    return torch.tensor(math.fsum(_softplus(-v) for v in z) / len(z), dtype=torch.float64)


def hinge_margin_ref(logits, targets):
    "max(0, 1 - z), mean."
    z = _margins_ref(logits, targets)
    return torch.tensor(math.fsum(max(0.0, 1 - v) for v in z) / len(z), dtype=torch.float64)


def sqhinge_margin_ref(logits, targets):
    "max(0, 1 - z)^2, mean."
    z = _margins_ref(logits, targets)
    return torch.tensor(math.fsum(max(0.0, 1 - v) ** 2 for v in z) / len(z), dtype=torch.float64)


def exp_margin_ref(logits, targets, max_exponent=50.0):
    "exp(-z) for -z <= 50, its tangent exp(50) (1 + (-z - 50)) beyond; mean."
    z = _margins_ref(logits, targets)
    c = max_exponent
    return torch.tensor(math.fsum(math.exp(-v) if -v <= c else math.exp(c) * (1 + (-v - c)) for v in z) / len(z),
                        dtype=torch.float64)


REFERENCES["ensloss"] = ensloss_ref
REFERENCES["logistic_margin_loss"] = logistic_margin_ref
REFERENCES["hinge_margin_loss"] = hinge_margin_ref
REFERENCES["sqhinge_margin_loss"] = sqhinge_margin_ref
REFERENCES["exp_margin_loss"] = exp_margin_ref


# --- card 25, decoupled softmax and soft top-k for XMC dual encoders (Gupta et al. 2024) -------------------------------
def _xmc_rows(scores, targets):
    return _rows(scores), [[bool(v) for v in r] for r in targets.tolist()]


def xmc_softmax_ref(scores, targets):
    "Eq. (2): -sum_{l in P} (s_l - log sum_j e^{s_j}) per query; mean over queries."
    S, T = _xmc_rows(scores, targets)
    return torch.tensor(sum(-sum(s[l] - _lse(s) for l in range(len(s)) if t[l]) for s, t in zip(S, T)) / len(S))


def decoupled_softmax_ref(scores, targets):
    "Eq. (3): -(1/|P|) sum_{l in P} log(e^{s_l} / (e^{s_l} + sum_{j not in P} e^{s_j})); mean over queries."
    S, T = _xmc_rows(scores, targets)
    total = 0.0
    for s, t in zip(S, T):
        neg = [v for v, p in zip(s, t) if not p]
        pos = [v for v, p in zip(s, t) if p]
        total += -sum(v - _lse([v] + neg) for v in pos) / len(pos)
    return torch.tensor(total / len(S))


def _sigmoid(x):
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def soft_topk_loss_ref(scores, targets, k=5, alpha=2.0, n_iter=32):
    "Eqs. (5)-(6): t by the official bisection on [-max s - 10/alpha, -min s + 10/alpha]; -(1/|P|) sum_{l in P} log p_l."
    S, T = _xmc_rows(scores, targets)
    total = 0.0
    for s, t in zip(S, T):
        lo, hi = -max(s) - 10 / alpha, -min(s) + 10 / alpha
        for _ in range(n_iter):
            mid = (lo + hi) / 2
            if sum(_sigmoid(alpha * (v + mid)) for v in s) < k:
                lo = mid
            else:
                hi = mid
        th = (lo + hi) / 2
        logp = [math.log(_sigmoid(alpha * (v + th))) for v in s]
        pos = [lp for lp, p in zip(logp, t) if p]
        total += -sum(pos) / len(pos)
    return torch.tensor(total / len(S))


REFERENCES["xmc_softmax_loss"] = xmc_softmax_ref
REFERENCES["decoupled_softmax_loss"] = decoupled_softmax_ref
REFERENCES["soft_topk_loss"] = soft_topk_loss_ref


# --- card 10, the hybrid multi-label loss (Aslam et al. 2024, reconstructed) --------------------------------------------
def _log_sigmoid(x):
    "log sigmoid(x) = -softplus(-x), in Python floats."
    return -_softplus(-x)


def weighted_bce_ref(logits, targets, w_pos=None, w_neg=None):
    "Eq. (2): mean over the B*L entries of -(w+_j y log p + w-_j (1 - y) log(1 - p)), p = sigmoid(s)."
    S, Y = _rows(logits), targets.tolist()
    L = len(S[0])
    wp = [1.0] * L if w_pos is None else _rows(w_pos)
    wn = [1.0] * L if w_neg is None else _rows(w_neg)
    total = math.fsum(-(wp[j] * y[j] * _log_sigmoid(s[j]) + wn[j] * (1 - y[j]) * _log_sigmoid(-s[j]))
                      for s, y in zip(S, Y) for j in range(L))
    return torch.tensor(total / (len(S) * L), dtype=torch.float64)


def label_correlation_pairwise_ref(logits, C):
    "Eq. (4): per sample, sum over j != k of max(C,0) (p_j - p_k)^2 + max(-C,0) p_j p_k; mean over samples."
    S, Cm = _rows(logits), _rows(C)
    out = []
    for s in S:
        p = [1 / (1 + math.exp(-v)) for v in s]
        L = len(p)
        out.append(math.fsum(max(Cm[j][k], 0.0) * (p[j] - p[k]) ** 2 + max(-Cm[j][k], 0.0) * p[j] * p[k]
                             for j in range(L) for k in range(L) if j != k))
    return torch.tensor(math.fsum(out) / len(out), dtype=torch.float64)


def multilabel_supcon_ref(emb, targets, temperature=0.1):
    """Eq. (7): for each anchor a with some J_ab > 0 (b != a), -sum_b J_ab / sum_b' J_ab' * log softmax_{b' != a}
    (cos(h_a, h_b) / tau); J = |y_a & y_b| / |y_a | y_b| (0 when both are empty); mean over those anchors."""
    H, Y = _unit(_rows(emb)), targets.tolist()
    n, terms = len(H), []
    for a in range(n):
        J = []
        for b in range(n):
            inter = sum(1 for u, v in zip(Y[a], Y[b]) if u and v)
            union = sum(1 for u, v in zip(Y[a], Y[b]) if u or v)
            J.append(0.0 if (b == a or union == 0) else inter / union)
        if sum(J) == 0:
            continue
        lse = _lse([_dot(H[a], H[b]) / temperature for b in range(n) if b != a])
        terms.append(math.fsum(J[b] * (lse - _dot(H[a], H[b]) / temperature) for b in range(n) if b != a) / sum(J))
    return torch.tensor(math.fsum(terms) / len(terms), dtype=torch.float64)


def hybrid_multilabel_ref(logits, emb, targets, w_pos=None, w_neg=None, C=None):
    "Eq. (8) at the defaults: Eq. (2) + 0.1 Eq. (4) + 0.1 Eq. (7) with tau = 0.1."
    total = weighted_bce_ref(logits, targets, w_pos, w_neg)
    if C is not None:
        total = total + 0.1 * label_correlation_pairwise_ref(logits, C)
    return total + 0.1 * multilabel_supcon_ref(emb, targets, 0.1)


REFERENCES["weighted_bce_with_logits"] = weighted_bce_ref
REFERENCES["label_correlation_loss"] = label_correlation_pairwise_ref
REFERENCES["multilabel_supcon_loss"] = multilabel_supcon_ref
REFERENCES["hybrid_multilabel_loss"] = hybrid_multilabel_ref


# --- correctness_aware_calibration (card 03): Eq. (4) of Liu et al. 2024, as the official set_temperature ----------------
def _cac_balanced_mse(conf, correct):
    "sum_i w_i (c_hat_i - c_i)^2 / sum_i w_i, w_i = 1 - acc on correct and acc on wrong samples; 0 when sum w = 0."
    c = [1.0 if bool(v) else 0.0 for v in correct.tolist()]
    x = conf.detach().double().cpu().tolist()
    acc = sum(c) / len(c)
    w = [1 - acc if ci == 1.0 else acc for ci in c]
    den = sum(w)
    return 0.0 if den == 0 else sum(wi * (xi - ci) ** 2 for wi, xi, ci in zip(w, x, c)) / den


def ca_loss_ref(confidence, correct):
    return torch.tensor(_cac_balanced_mse(confidence, correct), dtype=torch.float64)


def ca_loss_from_logits_ref(logits, temperature, labels):
    import math as _m
    rows, ts, ys = logits.detach().double().cpu().tolist(), temperature.detach().double().cpu().tolist(), labels.tolist()
    conf, correct = [], []
    for row, t, y in zip(rows, ts, ys):
        top = max(row)
        e = [_m.exp((v - top) / t) for v in row]
        conf.append(max(e) / sum(e))
        correct.append(row.index(top) == y)
    return torch.tensor(_cac_balanced_mse(torch.tensor(conf), torch.tensor(correct)), dtype=torch.float64)


REFERENCES["ca_loss"] = ca_loss_ref
REFERENCES["ca_loss_from_logits"] = ca_loss_from_logits_ref


# --- score_distribution_iqa (card 57): DeQA-Score's soft-label KL and KL + Thurstone fidelity (You et al. 2025) ----------
def _softmax_row(row):
    top = max(row)
    e = [math.exp(v - top) for v in row]
    s = sum(e)
    return [v / s for v in e]


def _kl_row(q, pi):
    return sum(qx * (math.log(qx) - math.log(px)) for qx, px in zip(q, pi) if qx > 0)


def level_kl_loss_ref(level_logits, soft_labels):
    "Eq. (6): mean over images of sum_x q_x log(q_x / softmax(s)_x) (official F.kl_div(..., 'batchmean'))."
    rows, qs = _rows(level_logits), _rows(soft_labels)
    return torch.tensor(sum(_kl_row(q, _softmax_row(r)) for r, q in zip(rows, qs)) / len(rows), dtype=torch.float64)


def deqa_loss_ref(level_logits, soft_labels, mos, std, dataset_ids):
    "Eq. (9) at the defaults: mean fidelity (fixed predicted std 1) over same-data-set pairs i<j + mean KL; eps 1e-8."
    rows, qs, m, s, ids = _rows(level_logits), _rows(soft_labels), _rows(mos), _rows(std), dataset_ids.tolist()
    eps = 1e-8
    Phi = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))
    mu_hat = [sum(x * p for x, p in zip((5, 4, 3, 2, 1), _softmax_row(r))) for r in rows]
    fids = []
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            if ids[i] != ids[j]:
                continue
            p = Phi((m[i] - m[j]) / math.sqrt(s[i] ** 2 + s[j] ** 2 + eps))
            ph = Phi((mu_hat[i] - mu_hat[j]) / math.sqrt(2 + eps))
            fids.append(1 - math.sqrt(ph * p + eps) - math.sqrt((1 - ph) * (1 - p) + eps))
    kl = sum(_kl_row(q, _softmax_row(r)) for r, q in zip(rows, qs)) / len(rows)
    return torch.tensor(sum(fids) / len(fids) + kl, dtype=torch.float64)


REFERENCES["level_kl_loss"] = level_kl_loss_ref
REFERENCES["deqa_loss"] = deqa_loss_ref


# --- long_tailed_partial_labels (card 48): COMIC (Zhang et al. 2023) and ASL, as the official PriorFocalModifierLoss /
# ReflectiveLabelCorrectorLoss loops, at the default arguments (sum reduction) -------------------------------------------
def _ltpl_sig(v):
    import math as _m
    return 1 / (1 + _m.exp(-v))


def _ltpl_asl_sum(x, y, w, gamma_pos, gamma_neg, clip, eps=1e-8, norm=1.0):
    "sum_{k,c} -w_c [y log p+ + (1-y) log p-] (1 - p_t)^gamma, with gamma_neg a per-class list."
    import math as _m
    total = 0.0
    for xr, yr in zip(x, y):
        for c, (xv, yv) in enumerate(zip(xr, yr)):
            p = _ltpl_sig(xv)
            pn = min(1.0, 1 - p + clip)
            pt = p if yv == 1 else pn
            g = gamma_pos if yv == 1 else gamma_neg[c]
            l = yv * _m.log(max(p, eps)) + (1 - yv) * _m.log(max(pn, eps))
            total += -l * w[c] * (1 - pt) ** g * norm
    return total


def asymmetric_loss_ref(logits, targets):
    x, y = logits.detach().double().cpu().tolist(), targets.tolist()
    C = len(x[0])
    return torch.tensor(_ltpl_asl_sum(x, y, [1.0] * C, 0.0, [4.0] * C, 0.05), dtype=torch.float64)


def multi_focal_modifier_ref(logits, targets, class_weights=None):
    x, y = logits.detach().double().cpu().tolist(), targets.tolist()
    C = len(x[0])
    w = [1.0] * C if class_weights is None else class_weights.detach().double().cpu().tolist()
    g = [3.0] * C if class_weights is None else [3.0 + v for v in w]
    return torch.tensor(_ltpl_asl_sum(x, y, w, 0.0, g, 0.05), dtype=torch.float64)


def rlc_loss_ref(logits, targets, counts):
    import math as _m
    x, y, n0 = logits.detach().double().cpu().tolist(), targets.tolist(), counts.double().cpu().tolist()
    B, C = len(x), len(x[0])
    xm = [[x[k][c] - 1.0 * y[k][c] for c in range(C)] for k in range(B)]
    p = [[_ltpl_sig(v) for v in row] for row in xm]
    mean = [sum(p[k][c] for k in range(B)) / B for c in range(C)]
    yh = [[1 if (p[k][c] > 0.7 and p[k][c] > mean[c]) else y[k][c] for c in range(C)] for k in range(B)]
    n = [n0[c] + sum(yh[k][c] - y[k][c] for k in range(B)) for c in range(C)]
    w = [(1 - _m.log(v / max(n))) ** (1 / 6) for v in n]
    npos = max(1, sum(map(sum, yh)))
    return torch.tensor(_ltpl_asl_sum(xm, yh, w, 0.0, [3.0 + v for v in w], 0.05, norm=B / npos), dtype=torch.float64)


REFERENCES["asymmetric_loss"] = asymmetric_loss_ref
REFERENCES["multi_focal_modifier_loss"] = multi_focal_modifier_ref
REFERENCES["rlc_loss"] = rlc_loss_ref


# --- card 15, Metrix: mixup for deep metric learning (Venkataramanan et al. 2022) ---------------------------------------
def _metrix_unit(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / max(n, 1e-12) for x in v]


def _metrix_dist(u, v):
    a, b = _metrix_unit(u), _metrix_unit(v)
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))


def _avg_nonzero(terms):
    nz = [t for t in terms if t > 0]
    return sum(nz) / len(nz) if nz else 0.0


def metrix_contrastive_ref(emb_anchor, emb_mixed, lam, pos_margin=0.0, neg_margin=0.5):
    "Eq. (7): lam [d - m+]_+ and (1 - lam) [m- - d]_+ over rows, each averaged over its non-zero terms (official loss_posneg_mixup + AvgNonZeroReducer)."
    A, U = _rows(emb_anchor), _rows(emb_mixed)
    d = [_metrix_dist(a, u) for a, u in zip(A, U)]
    return torch.tensor(_avg_nonzero([lam * max(0.0, x - pos_margin) for x in d])
                        + _avg_nonzero([(1 - lam) * max(0.0, neg_margin - x) for x in d]), dtype=torch.float64)


def metrix_embed_ref(embeddings, labels, lam=0.5, scheme="pos_neg", weight=0.4, pos_margin=0.0, neg_margin=0.5):
    "Eq. (8) in embed mode: PML's ContrastiveLoss(0, 0.5, LpDistance()) over all ordered pairs + w x Eq. (7) over the triples of Eq. (5) or (6), by loops."
    E, y = _rows(embeddings), labels.tolist()
    N = len(y)
    pos = [max(0.0, _metrix_dist(E[i], E[j]) - pos_margin) for i in range(N) for j in range(N) if i != j and y[i] == y[j]]
    neg = [max(0.0, neg_margin - _metrix_dist(E[i], E[j])) for i in range(N) for j in range(N) if y[i] != y[j]]
    clean = _avg_nonzero(pos) + _avg_nonzero(neg)
    triples = []
    for a in range(N):
        P = [p for p in range(N) if p != a and y[p] == y[a]]
        Ng = [n for n in range(N) if y[n] != y[a]]
        if scheme == "pos_neg":
            triples += [(a, p, n) for p in P for n in Ng]
        elif not P:
            triples += [(a, a, n) for n in Ng]
    d = [_metrix_dist(E[a], [lam * s + (1 - lam) * t for s, t in zip(E[p], E[n])]) for a, p, n in triples]
    mixed = (_avg_nonzero([lam * max(0.0, x - pos_margin) for x in d])
             + _avg_nonzero([(1 - lam) * max(0.0, neg_margin - x) for x in d]))
    return torch.tensor(clean + weight * mixed, dtype=torch.float64)


REFERENCES["metrix_contrastive_loss"] = metrix_contrastive_ref
REFERENCES["metrix_embed_loss"] = metrix_embed_ref
REFERENCES["metrix_embed_loss_anchor_neg"] = metrix_embed_ref


# --- card 37, KD-Loss for facial landmarks (Fard & Mahoor 2022; official TF kd_loss) ------------------------------------
def _kd37_aloss(x, g, t, alpha, alpha_neg, band=0.15):
    "One coordinate: alpha*(d-m) beyond the reflected teacher, alpha_neg*(m-d) between b and it, 0 in the band."
    m, d = abs(t - g), abs(x - g)
    if m == 0 or d == 0:
        return 0.0
    if d > m:
        return alpha * (d - m)
    return alpha_neg * (m - d) if d >= band * m else 0.0


def _kd37_main(x, g, tol, c=3.0):
    e, t = abs(g - x), abs(g - tol)
    return c * e if e <= t else e * e + c * t - t * t


def _kd37_mean(fn, *tensors):
    rows = [_rows(t) for t in tensors]
    vals = [fn(*xs) for cols in zip(*rows) for xs in zip(*cols)]
    return torch.tensor(sum(vals) / len(vals), dtype=torch.float64)


def kd_landmark_loss_ref(pred, gt, tough, tolerant):
    "Eq. (5) at the code's values: 2 main(c=3, t=|gt-tol|) + ALoss(tough; 1.9, -0.45) + ALoss(tol; 1.8, -0.4); mean."
    return _kd37_mean(lambda x, g, t, tl: 2.0 * _kd37_main(x, g, tl) + _kd37_aloss(x, g, t, 1.9, -0.45)
                      + _kd37_aloss(x, g, tl, 1.8, -0.4), pred, gt, tough, tolerant)


def assistive_loss_ref(pred, gt, teacher):
    "Eqs. (1)-(3) with alpha 1.9, alpha- -0.45, band 0.15; mean over batch x coordinates."
    return _kd37_mean(lambda x, g, t: _kd37_aloss(x, g, t, 1.9, -0.45), pred, gt, teacher)


def kd_main_loss_ref(pred, gt, tolerant):
    "Eq. (4) with c = 3; mean over batch x coordinates."
    return _kd37_mean(_kd37_main, pred, gt, tolerant)


REFERENCES["kd_landmark_loss"] = kd_landmark_loss_ref
REFERENCES["assistive_loss"] = assistive_loss_ref
REFERENCES["kd_main_loss"] = kd_main_loss_ref


# --- card 21, λ-PNN's pansharpening losses (Ciotola, Poggi & Scarpa 2023; official matciotola/Lambda-PNN) ---------------
def _np64(t):
    import numpy as np
    return np.asarray(t.detach().double().cpu().numpy(), dtype=np.float64)


def _ergas_np(pred, target, ratio=4.0):
    "Per image: 100/R sqrt(mean_b MSE_b / mu_b^2), mu_b the target's band mean (official metrics.ERGAS)."
    out = []
    for p, t in zip(pred, target):
        terms = []
        for pb, tb in zip(p, t):
            mse = sum((float(a) - float(b)) ** 2 for a, b in zip(pb.ravel(), tb.ravel())) / pb.size
            mu = sum(float(v) for v in tb.ravel()) / tb.size
            terms.append(mse / mu**2)
        out.append(100.0 / ratio * math.sqrt(sum(terms) / len(terms)))
    return out


def _xcorr_np(a, b, w, eps=1e-20):
    "official xcorr_torch, by shifted sums: window rows/cols k-w+1..k+w, zero padding, pixels centred by their own window mean."
    import numpy as np
    def box(x):
        H, W = x.shape[-2:]
        xp = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(w, w), (w, w)])
        s = np.zeros_like(x)
        for di in range(1, 2 * w + 1):
            for dj in range(1, 2 * w + 1):
                s += xp[..., di : di + H, dj : dj + W]
        return s
    a, b = np.broadcast_arrays(a, b)
    a = a - box(a) / (4 * w * w)
    b = b - box(b) / (4 * w * w)
    sab, saa, sbb = box(a * b), np.maximum(box(a * a), eps), np.maximum(box(b * b), eps)
    return sab / (np.sqrt(saa * sbb) + eps)


def _structural_np(pred, pan, threshold=None, ratio=4):
    import numpy as np
    x = 1.0 - np.maximum(_xcorr_np(pred, pan, math.ceil(ratio / 2)), -1.0)
    if threshold is not None:
        x = x * (x > threshold)
    return x.reshape(x.shape[0], -1).mean(1)


def _mtf_np(gains=(0.23, 0.23, 0.23, 0.23), ratio=4, N=41):
    "official nyquist_filter_generator (fspecial Gaussian response, centred inverse DFT, Kaiser 0.5), separable window."
    import numpy as np
    ks = []
    for G in gains:
        sig = math.sqrt(((N - 1) * (1 / ratio) / 2) ** 2 / (-2 * math.log(G)))
        m = np.arange(N) - (N - 1) / 2
        hd = np.exp(-(m[:, None] ** 2 + m[None, :] ** 2) / (2 * sig**2))
        hd = hd / hd.max()
        h = np.rot90(np.fft.fftshift(np.fft.ifft2(np.rot90(np.fft.fftshift(np.rot90(hd, 2)), 2))), 2).real
        win = np.kaiser(N, 0.5)
        h = np.clip(h * np.outer(win, win), 0, None)
        ks.append(h / h.sum())
    return np.stack(ks)


def _downgrade_np(x, ratio=4):
    "blur each band with its MTF kernel (edge padding) and keep pixels R//2 + R i: only the kept pixels are computed."
    import numpy as np
    k = _mtf_np(ratio=ratio)
    N = k.shape[-1]
    n, B, H, W = x.shape
    xp = np.pad(x, [(0, 0), (0, 0), (N // 2, N // 2), (N // 2, N // 2)], mode="edge")
    out = np.zeros((n, B, H // ratio, W // ratio))
    s = ratio // 2
    for di in range(N):
        for dj in range(N):
            out += k[None, :, di, dj, None, None] * xp[:, :, s + di : s + di + H : ratio, s + dj : s + dj + W : ratio]
    return out


def ergas_ref(pred, target):
    return torch.tensor(sum(_ergas_np(_np64(pred), _np64(target))) / pred.shape[0], dtype=torch.float64)


def structural_ref(pred, pan, threshold=None):
    thr = None if threshold is None else _np64(threshold)
    return torch.tensor(float(_structural_np(_np64(pred), _np64(pan), thr).mean()), dtype=torch.float64)


def lambda_pnn_ref(pred, ms, pan, threshold=None):
    "Eq. (8) at the defaults (GE1): 0.075 ERGAS(D(pred), ms) + 4.0 L_S(pred, pan; threshold), mean over images."
    p = _np64(pred)
    e = _ergas_np(_downgrade_np(p), _np64(ms))
    thr = None if threshold is None else _np64(threshold)
    s = _structural_np(p, _np64(pan), thr)
    return torch.tensor(float(sum(0.075 * a + 4.0 * b for a, b in zip(e, s)) / len(e)), dtype=torch.float64)


REFERENCES["ergas_loss"] = ergas_ref
REFERENCES["structural_loss"] = structural_ref
REFERENCES["lambda_pnn_loss"] = lambda_pnn_ref


# --- card 29, SkyReconNet's composite loss w_s (1 - SSIM) + w_m MSE -----------------------------------------------------
def ssim_mse_loss_ref(input, target):
    "Per image (1 - SSIM) + MSE over all pixels (w_s = w_m = 1, R = 1), SSIM by pytorch_msssim (11x11, sigma 1.5); mean."
    import pytorch_msssim
    x, y = input.detach().double().cpu(), target.detach().double().cpu()
    s = pytorch_msssim.ssim(x, y, data_range=1.0, win=_gauss_win_ref(channels=x.shape[1]), size_average=False).tolist()
    mse = [math.fsum((a - b) ** 2 for a, b in zip(ra, rb)) / len(ra)
           for ra, rb in zip(_rows(x.flatten(1)), _rows(y.flatten(1)))]
    return torch.tensor(math.fsum((1 - a) + b for a, b in zip(s, mse)) / len(s))


REFERENCES["ssim_mse_loss"] = ssim_mse_loss_ref


# --- card 13, UNPG (Jung et al. 2022) --------------------------------------------------------------------------------
def unpg_ref(cos_logits, emb, labels, scale=64.0, whisker=1.5):
    """Eq. (6) at the defaults: the negatives x_a.x_b (a < b, different labels) of the normalised embeddings, kept within
    [Q1 - 1.5 IQR, Q3 + 1.5 IQR] with Q = sorted[int(q l)] (the official box_and_whisker_algorithm), appended to every
    row of s * cos_logits; cross-entropy with the labels, mean."""
    c, lab = _rows(cos_logits), labels.tolist()
    e = []
    for r in _rows(emb):
        nrm = math.sqrt(sum(v * v for v in r))
        e.append([v / max(nrm, 1e-12) for v in r])
    B = len(lab)
    sn = [sum(p * q for p, q in zip(e[a], e[b])) for a in range(B) for b in range(a + 1, B) if lab[a] != lab[b]]
    if sn:
        srt = sorted(sn)
        q1, q3 = srt[int(0.25 * len(sn))], srt[int(0.75 * len(sn))]
        sn = [v for v in sn if q1 - whisker * (q3 - q1) <= v <= q3 + whisker * (q3 - q1)]
    total = 0.0
    for row, t in zip(c, lab):
        logits = [scale * v for v in row] + [scale * v for v in sn]
        m = max(logits)
        total += m + math.log(sum(math.exp(v - m) for v in logits)) - scale * row[t]
    return torch.tensor(total / B, dtype=torch.float64)


REFERENCES["unpg_loss"] = unpg_ref


# --- card 01, BACON layout guidance (Chen et al. 2024, reconstructed) ------------------------------------------------
def bacon_ref(attn, masks, self_attn=None):
    """Defaults: a~_k(p) = sum_q A_s(p,q) a_k(q), scaled to max 1; per sample sum over objects of
    (1 - S(M a)/S(a))^2 + S((1 - dilate(M,1)) a)/S(a) + S((dilate(M,1) - M) a)/S(a), dilate = 3x3 max; mean over the batch."""
    A, Ms = attn.tolist(), masks.tolist()
    B, HW, K = len(A), len(A[0]), len(A[0][0])
    H, W = len(Ms[0][0]), len(Ms[0][0][0])
    total = 0.0
    for b in range(B):
        if self_attn is not None:
            S_ = self_attn[b].tolist()
            al = [[sum(S_[p][q] * A[b][q][k] for q in range(HW)) for k in range(K)] for p in range(HW)]
        else:
            al = A[b]
        for k in range(K):
            col = [al[p][k] for p in range(HW)]
            mx = max(col)
            col = [v / mx for v in col]
            m = [[bool(Ms[b][k][i][j]) for j in range(W)] for i in range(H)]
            dil = [[any(m[ii][jj] for ii in range(max(0, i - 1), min(H, i + 2)) for jj in range(max(0, j - 1), min(W, j + 2)))
                    for j in range(W)] for i in range(H)]
            s = sum(col)
            s_in = sum(col[i * W + j] for i in range(H) for j in range(W) if m[i][j])
            s_far = sum(col[i * W + j] for i in range(H) for j in range(W) if not dil[i][j])
            s_band = sum(col[i * W + j] for i in range(H) for j in range(W) if dil[i][j] and not m[i][j])
            total += (1 - s_in / s) ** 2 + s_far / s + s_band / s
    return torch.tensor(total / B, dtype=torch.float64)


REFERENCES["bacon_loss"] = bacon_ref
