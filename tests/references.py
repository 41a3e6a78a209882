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
}
