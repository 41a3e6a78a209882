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


REFERENCES = {
    "z_loss": z_loss_ref,
    "z_loss_from_stats": z_loss_from_stats_ref,
    "log_spherical_softmax_loss": log_spherical_softmax_ref,
    "log_taylor_softmax_loss": log_taylor_softmax_ref,
}
