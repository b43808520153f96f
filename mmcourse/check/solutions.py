"""Reference solutions of the notebooks' exercises, one per exercise, named after its checker.

Learners see one with ``check.solution("kd_loss")`` after a first attempt; the tests run every
checker on its solution here. Each is one way to write it, in the style of the lesson it belongs
to; the checkers compute their expected answers independently, not from these.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


# ---------------------------------------------------------------------------------- notebook 00
def mean_image_per_digit(X, y):
    """(N, H, W) images and (N,) labels -> (10, H, W) average image per digit."""
    return torch.stack([X[y == c].mean(0) for c in range(10)])  # (10, H, W)


def cosine_similarity_matrix(E):
    """(N, D) embeddings, not normalised -> (N, N) cosine similarities."""
    U = E / E.norm(dim=1, keepdim=True)  # (N, D), unit rows
    return U @ U.T


# ---------------------------------------------------------------------------------- notebook 01
def tanh_net_grads(X, y, P):
    """Mean-BCE gradients of h = tanh(X Wᵀ + b), p = sigmoid(h w2 + b2)."""
    h = torch.tanh(X @ P["W"].T + P["b"])  # (N, H)
    dz2 = (torch.sigmoid(h @ P["w2"] + P["b2"]) - y) / len(y)  # (N,): output layer as before
    da1 = dz2[:, None] * P["w2"] * (1 - h**2)  # (N, H): tanh'(a) = 1 - tanh(a)^2
    return {"W": da1.T @ X, "b": da1.sum(0), "w2": h.T @ dz2, "b2": dz2.sum()}


def f1_from_confusion(cm):
    """F1 of class 1 from cm = [[TN, FP], [FN, TP]]: 2PR/(P+R) simplified."""
    tp, fp, fn = cm[1, 1], cm[0, 1], cm[1, 0]
    return float(2 * tp / (2 * tp + fp + fn))


# ---------------------------------------------------------------------------------- notebook 02
def bce_logit_grad_by_hand(z, y):
    """dL/dz of the mean BCE on logits: dL/dp · dp/dz simplifies to (p - y) / N."""
    return (torch.sigmoid(z) - y) / z.numel()  # torch.sigmoid is stable at ±1e4


def stable_log_softmax(z):
    """log softmax over the last dim, shifting each row by its max so no exponent exceeds 0."""
    m = z.max(dim=-1, keepdim=True).values  # (B, 1)
    return (z - m) - torch.log(torch.exp(z - m).sum(dim=-1, keepdim=True))


# ---------------------------------------------------------------------------------- notebook 03
def alignment_uniformity(z1, z2):
    """Wang & Isola (2020) alignment and uniformity of two (B, D) batches of views."""
    u, v = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    alignment = ((u - v) ** 2).sum(1).mean()
    uniformity = torch.pdist(u).pow(2).mul(-2).exp().mean().log()  # pdist: pairs i < j
    return alignment, uniformity


def knn_accuracy(train_feats, train_labels, test_feats, test_labels, k):
    """Accuracy of a majority vote of the k most cosine-similar training examples."""
    sims = F.normalize(test_feats, dim=1) @ F.normalize(train_feats, dim=1).T  # (N_test, N_train)
    votes = train_labels[sims.topk(k, dim=1).indices]  # (N_test, k)
    return (votes.mode(dim=1).values == test_labels).double().mean().item()


# ---------------------------------------------------------------------------------- notebook 04
def cka_from_gram(K, L):
    """Linear CKA from (n, n) Gram matrices: centre both, then a normalised inner product."""
    n = len(K)
    C = torch.eye(n, dtype=K.dtype) - torch.ones(n, n, dtype=K.dtype) / n  # (n, n)
    Kc, Lc = C @ K @ C, C @ L @ C
    return ((Kc * Lc).sum() / (Kc.norm() * Lc.norm())).item()


def attack_success_rate(preds, labels, target):
    """Among examples whose true label is not ``target``, the fraction predicted as ``target``."""
    keep = labels != target
    return (preds[keep] == target).double().mean().item()


# ---------------------------------------------------------------------------------- notebook 05
def weighted_sum(feats, weights):
    """z = Σ_m w_m f_m over modalities in sorted order, (B, D)."""
    return sum(weights[m] * feats[m] for m in sorted(feats))


def outer_with_one(a, b):
    """vec([a; 1] ⊗ [b; 1]) per example, (B, (Da + 1)(Db + 1))."""
    one = torch.ones(len(a), 1, dtype=a.dtype)
    a, b = torch.cat([a, one], 1), torch.cat([b, one], 1)  # (B, Da + 1), (B, Db + 1)
    return (a[:, :, None] * b[:, None, :]).flatten(1)  # (B, Da + 1, Db + 1) -> (B, (Da+1)(Db+1))


# ---------------------------------------------------------------------------------- notebook 06
def aux_loss(out, y, lambdas):
    """L_fused + Σ_m λ_m L_m; a modality missing from ``lambdas`` has weight 0."""
    loss = F.cross_entropy(out["logits"], y)
    for m, lam in sorted(lambdas.items()):
        loss = loss + lam * F.cross_entropy(out["aux"][m], y)
    return loss


def ogm_coefficient(contrib, y, alpha):
    """OGM (Peng et al. 2022): slow the dominant modality by 1 - tanh(α ρ) when ρ > 1."""
    rows = torch.arange(len(y))
    s = {m: v.softmax(-1)[rows, y].sum().item() for m, v in contrib.items()}
    dom, other = sorted(s, key=s.get, reverse=True)
    rho = s[dom] / s[other]
    return {dom: 1 - math.tanh(alpha * rho) if rho > 1 else 1.0, other: 1.0}


# ---------------------------------------------------------------------------------- notebook 07
def symmetric_info_nce(a, b, scale):
    """CLIP's loss: the mean of the a→b and b→a cross-entropies over scaled cosine logits."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = scale * a @ b.T  # (B, B)
    targets = torch.arange(len(a))  # row i belongs with column i
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def recall_at_k(queries, gallery, query_labels, gallery_labels, k):
    """Fraction of queries with a same-label item among their k most similar gallery items."""
    top = (queries @ gallery.T).topk(k, dim=1).indices  # (N, k)
    hit = (gallery_labels[top] == query_labels[:, None]).any(1)  # (N,)
    return hit.float().mean().item()


# ---------------------------------------------------------------------------------- notebook 08
def lora_forward(x, W, b, A, B, alpha, r):
    """The frozen path plus the low-rank path scaled by α / r, (N, out)."""
    return x @ W.T + b + (alpha / r) * (x @ A.T) @ B.T  # (N, in) -> (N, r) -> (N, out)


def lora_merge(W, A, B, alpha, r):
    """One matrix W' = W + (α / r) B A, shape (out, in) like W."""
    return W + (alpha / r) * B @ A


def adapter_params(d, m, n_layers):
    """Per adapter W_down (m·d) + b_down (m) + W_up (d·m) + b_up (d); two adapters per layer."""
    per_adapter = d * m + m + m * d + d
    return per_adapter * 2 * n_layers


# ---------------------------------------------------------------------------------- notebook 09
def kd_loss(student_logits, teacher_logits, T):
    """T² · mean over the batch of KL(p_teacher ‖ q_student), both softened by T."""
    p = torch.softmax(teacher_logits / T, dim=1)  # (B, C)
    log_q = torch.log_softmax(student_logits / T, dim=1)  # (B, C), stable (lesson 02)
    kl = (p * (p.log() - log_q)).sum(1)  # (B,)
    return T**2 * kl.mean()


def prune_mask(w, amount):
    """False for the round(amount · numel) entries of smallest |w|, True elsewhere."""
    k = round(amount * w.numel())
    if k == 0:
        return torch.ones_like(w, dtype=torch.bool)
    threshold = w.abs().flatten().kthvalue(k).values
    return w.abs() > threshold


# ---------------------------------------------------------------------------------- notebook 10
def ece(probs, labels, n_bins):
    """Σ_k (n_k / N) |acc_k - conf_k| over bins (k/K, (k+1)/K] of the top-class confidence."""
    conf, pred = probs.max(1)  # (N,), (N,)
    correct = (pred == labels).double()
    total = 0.0
    for k in range(n_bins):
        lo, hi = k / n_bins, (k + 1) / n_bins
        inb = (conf > lo) & (conf <= hi) if k > 0 else conf <= hi  # bin 0 also takes conf = 0
        if inb.any():
            gap = (correct[inb].mean() - conf[inb].mean()).abs()
            total += inb.double().mean().item() * gap.item()
    return total


def grad_times_input(model, inputs, target):
    """Per modality, Σ over features of x · ∂z_target/∂x, one number per example (N,)."""
    x = {m: v.detach().clone().requires_grad_() for m, v in inputs.items()}
    z = model(x)  # (N, C)
    picked = z.gather(1, target[:, None]).sum()  # each row only depends on its own input
    grads = torch.autograd.grad(picked, [x[m] for m in sorted(x)])
    return {m: (g * x[m]).flatten(1).sum(1).detach() for m, g in zip(sorted(x), grads)}


def fgsm_step(model, inputs, labels, eps, modality):
    """x' = x + ε·sign(∇ₓ CE(model(x), y)) for one modality; the other modalities as given."""
    x = {k: v.detach().clone().requires_grad_(k == modality) for k, v in inputs.items()}
    loss = F.cross_entropy(model(x), labels)  # the mean: its sign is the sum's
    (grad,) = torch.autograd.grad(loss, [x[modality]])
    return {**inputs, modality: (inputs[modality] + eps * grad.sign()).detach()}


# ---------------------------------------------------------------------------------- notebook 11
class TwoInputModel(nn.Module):
    """Encode each input to 32 features, concatenate, map to 10 logits."""

    def __init__(self):
        super().__init__()
        self.image = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 32), nn.ReLU())
        self.audio = nn.Sequential(nn.Flatten(), nn.Linear(40 * 13, 32), nn.ReLU())
        self.head = nn.Linear(64, 10)

    def forward(self, image, audio):
        h = torch.cat([self.image(image), self.audio(audio)], dim=1)  # (B, 64)
        return self.head(h)  # (B, 10)


two_input_model = TwoInputModel  # the checker calls it: two_input_model() -> an nn.Module


def pool_token_logits(token_logits, mask):
    """Mean of (B, L, C) token logits over the real tokens of each row, (B, C)."""
    w = mask.to(token_logits.dtype)  # (B, L): 1 on real tokens, 0 on padding
    return (token_logits * w[..., None]).sum(1) / w.sum(1, keepdim=True)  # (B, C)


# ---------------------------------------------------------------------------------- notebook 12
def gradient_bytes_per_step(num_params, world):
    """Bytes each rank sends in a ring all-reduce of the float32 gradient: 2 phases (reduce-scatter,
    all-gather) of world − 1 steps, each sending one chunk of 4 · num_params / world bytes."""
    return 2 * (world - 1) * 4 * num_params / world


def rank_shard(batch, rank, world):
    """Rank ``rank``'s share of a (B,) batch as DistributedSampler(shuffle=False) deals it: pad the
    list to a multiple of world by repeating its first entries, then deal round-robin."""
    total = -(-len(batch) // world) * world  # ceil(B / world) · world
    padded = torch.cat([batch] * (total // len(batch) + 1))[:total]  # (total,) first rows repeated
    return padded[rank::world]  # (total / world,)
