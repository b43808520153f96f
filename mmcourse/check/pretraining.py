"""Exercise checkers for notebooks 03 (pretraining and emergence) and 04 (homogenization).

Reference solutions: ``solutions.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmcourse.check.core import Wrong, attempt, exercise, expect_close, matches, scalar


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------- notebook 03
@exercise(task="(z1, z2) -> (alignment, uniformity) for two (B, D) batches of views (uniformity "
               "of z1's rows), as defined in the exercise text",
          hints=("Both measures live on the unit sphere: what must happen to z1 and z2 first?",
                 "Alignment: for each i the squared distance between u1_i and u2_i, averaged over "
                 "the batch. Uniformity needs the squared distances between *different* rows of "
                 "u1 only: one per pair i < j.",
                 "torch.pdist(u) returns the distances of exactly the pairs i < j; the exercise "
                 "text's formula does the rest (mind that it uses *squared* distances)."),
          success="alignment and uniformity match Wang & Isola (2020), eqs. 4-5 with alpha=2, t=2.")
def alignment_uniformity(fn) -> None:
    """Check ``fn(z1, z2) -> (alignment, uniformity)`` for two (B, D) batches of views."""
    g = _gen(30)
    z1 = torch.randn(6, 4, generator=g, dtype=torch.float64)
    z2 = z1 + 0.3 * torch.randn(6, 4, generator=g, dtype=torch.float64)
    u, v = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    want_align = ((u - v) ** 2).sum(1).mean()
    gauss = torch.pdist(u).pow(2).mul(-2).exp()  # (B(B-1)/2,): one per pair i < j
    want_unif = gauss.mean().log()
    got = attempt(fn, z1.clone(), z2.clone())
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise Wrong("return a pair (alignment, uniformity).")
    a, un = scalar(got[0], "alignment"), scalar(got[1], "uniformity")
    if matches(a, want_unif) and matches(un, want_align):
        raise Wrong("the two values are swapped: return (alignment, uniformity), in that order.")
    if matches(a, ((z1 - z2) ** 2).sum(1).mean()):
        raise Wrong("your alignment uses unnormalised vectors; both measures live on the unit sphere.")
    if matches(a, (u - v).norm(dim=1).mean()):
        raise Wrong("your alignment averages distances; it averages *squared* distances.")
    expect_close(a, want_align, "alignment")
    all_pairs = torch.cdist(u, u).pow(2).mul(-2).exp().mean().log()  # includes i = j, and twice
    mistakes = ((torch.pdist(z1).pow(2).mul(-2).exp().mean().log(),
                 "your uniformity uses unnormalised vectors; normalise z1 for it too."),
                (all_pairs, "your uniformity averages over all (i, j), including i = j (distance "
                            "0); it runs over the pairs i < j of different rows only."),
                (gauss.mean(), "your uniformity is missing the log of the mean."),
                (torch.pdist(u).mul(-2).exp().mean().log(),
                 "your uniformity uses distances; the kernel is exp(-2 * squared distance)."))
    for value, message in mistakes:
        if matches(un, value):
            raise Wrong(message)
    expect_close(un, want_unif, "uniformity")


@exercise(task="(train_feats, train_labels, test_feats, test_labels, k) -> float: the accuracy "
               "of a k-nearest-neighbour vote by cosine similarity",
          hints=("For every test example you need its similarity to every training example: one "
                 "(N_test, N_train) matrix. Cosine similarity means unit-length rows first.",
                 "Tensor.topk(k, dim=1) finds the k most similar training examples per test row; "
                 "index train_labels with those indices to get (N_test, k) votes.",
                 "The predicted label is the most frequent vote in each row (torch.mode along "
                 "dim 1); compare with test_labels and average the hits."),
          success="your k-NN accuracy matches a direct implementation.")
def knn_accuracy(fn) -> None:
    """Check ``fn(train_feats, train_labels, test_feats, test_labels, k) -> float``.

    The training features get very different lengths, so ranking by dot product or by Euclidean
    distance picks other neighbours than cosine similarity does.
    """
    g = _gen(31)
    centres = 3 * torch.randn(3, 5, generator=g, dtype=torch.float64)
    ytr, yte = torch.arange(30) % 3, torch.arange(12) % 3
    Xtr = centres[ytr] + torch.randn(30, 5, generator=g, dtype=torch.float64)
    Xte = centres[yte] + 2.5 * torch.randn(12, 5, generator=g, dtype=torch.float64)
    Xtr = Xtr * torch.linspace(0.2, 3, 30, dtype=torch.float64)[torch.randperm(30, generator=g)][:, None]
    sims = F.normalize(Xte, dim=1) @ F.normalize(Xtr, dim=1).T  # (12, 30)

    def vote(scores, k, largest=True):  # accuracy of the top-k vote by these scores
        votes = ytr[scores.topk(k, dim=1, largest=largest).indices]  # (12, k)
        return (votes.mode(dim=1).values == yte).double().mean()

    first = None
    for k in (1, 5):
        want = vote(sims, k)
        got = scalar(attempt(fn, Xtr, ytr, Xte, yte, k), f"accuracy with k={k}")
        if first is not None and matches(got, first) and not matches(want, vote(sims, 1)):
            raise Wrong("you get the same accuracy for k = 1 and k = 5: is k used?")
        mistakes = ((vote(sims, k, largest=False), "you voted with the k *least* similar "
                                                   "training examples (largest=False?)."),
                    (vote(Xte @ Xtr.T, k), "your neighbours are ranked by the plain dot product; "
                                           "cosine similarity normalises the features first."),
                    (vote(-torch.cdist(Xte, Xtr), k), "your neighbours are the nearest in "
                                                       "Euclidean distance; rank by cosine "
                                                       "similarity instead."),
                    (want * len(yte), "return the fraction of correct test examples, not the count."))
        for value, message in mistakes:
            if matches(got, value):
                raise Wrong(message)
        expect_close(got, want, f"accuracy with k={k}")
        first = got


# ---------------------------------------------------------------------------------- notebook 04
@exercise(task="(K, L) -> float: linear CKA from two (n, n) Gram matrices, as in the exercise text",
          hints=("CKA compares centred representations. What does centring the features do to "
                 "a Gram matrix?",
                 "With C = I - 11^T/n, the centred Gram matrix is C K C; do it for K and for L.",
                 "Then take the Frobenius inner product of the two centred matrices (sum of the "
                 "elementwise product) and divide by the product of their Frobenius norms."),
          success="your kernel-form CKA equals linear_cka on the features.")
def cka_from_gram(fn) -> None:
    """Check ``fn(K, L) -> float``: CKA from two (n, n) Gram matrices K = X Xᵀ, L = Y Yᵀ."""
    from mmcourse.homogenization import linear_cka
    g = _gen(40)
    X = torch.randn(9, 3, generator=g, dtype=torch.float64) + 2.0  # not centred on purpose
    Y = X @ torch.randn(3, 5, generator=g, dtype=torch.float64) + torch.randn(9, 5, generator=g, dtype=torch.float64)
    got = scalar(attempt(fn, X @ X.T, Y @ Y.T), "CKA")
    K, L = X @ X.T, Y @ Y.T  # (9, 9) each
    C = torch.eye(9, dtype=torch.float64) - 1 / 9
    Kc, Lc = C @ K @ C, C @ L @ C
    mistakes = (((K * L).sum() / (K.norm() * L.norm()), "you forgot to centre the Gram matrices."),
                ((Kc * L).sum() / (Kc.norm() * L.norm()), "you centred K only; centre L too."),
                ((K * Lc).sum() / (K.norm() * Lc.norm()), "you centred L only; centre K too."),
                ((Kc * Lc).sum(), "that is the unnormalised inner product; divide by the two "
                                  "Frobenius norms."))
    for value, message in mistakes:
        if matches(got, value):
            raise Wrong(message)
    expect_close(got, torch.tensor(linear_cka(X, Y), dtype=torch.float64), "CKA")


@exercise(task="(preds, labels, target) -> float in [0, 1]: the attack success rate of the "
               "exercise text",
          hints=("Which examples can an attack towards `target` succeed on at all?",
                 "Build a boolean mask of the examples whose true label is not the target, and "
                 "look only at their predictions.",
                 "Among those masked predictions, the rate is the fraction equal to the target "
                 "(a mean of booleans, as a float)."),
          success="your attack success rate matches.")
def attack_success_rate(fn) -> None:
    """Check ``fn(preds, labels, target) -> float``."""
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 5])
    preds = torch.tensor([0, 0, 2, 0, 0, 0, 0, 3, 1, 0])
    want = torch.tensor(5 / 7, dtype=torch.float64)  # 7 non-target rows, 5 of them predicted 0
    got = scalar(attempt(fn, preds, labels, 0), "the attack success rate")
    mistakes = ((7 / 10, "examples that truly are the target class cannot be 'attacked': leave them out."),
                (2 / 7, "that is the fraction the attack *failed* on; count the predictions equal "
                        "to the target."),
                (5.0, "return the fraction of the non-target examples, not the count."))
    for value, message in mistakes:
        if matches(got, torch.tensor(value, dtype=torch.float64)):
            raise Wrong(message)
    expect_close(got, want, "attack success rate")
