"""How far can any image model go on hard AV-digits? Every family, selected on validation, in one run.

    python benchmarks/hard_images.py [--seeds 3]

The hard variant keeps k = 4 principal components of each image (``mmcourse.data.av``), so every
image model reads a function of the same 4 numbers. This prints, for the zoo's splits, validation
and test accuracy of: the course's image CNN (``zoo.RECIPE``, and the same with twice the epochs and
weight decay 0.05), logistic regression on standardised pixels (``probe.pixel_baseline``, penalty
chosen on validation), an MLP on the same pixels and an RBF-SVM and k-NN on the 4 principal
components (each with its hyper-parameter chosen on validation). Issue 19 asked for hard >= 0.70;
this is the measurement behind saying whether any model reaches it.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace

import numpy as np
from sklearn.decomposition import PCA
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.svm import SVC

from mmcourse.data import load_av_digits
from mmcourse.fusion import zoo
from mmcourse.probe import pixel_baseline


def best_on_val(make, grid, x_tr, y_tr, x_va, y_va, x_te, y_te):
    """Fit ``make(h)`` for each h in grid; the one best on validation, scored once on test."""
    fits = {h: make(h).fit(x_tr, y_tr) for h in grid}
    val = {h: m.score(x_va, y_va) for h, m in fits.items()}
    h = max(val, key=val.get)
    return h, val[h], fits[h].score(x_te, y_te)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    tr, va, te = (load_av_digits(s, "hard") for s in ("train", "val", "test"))
    print(f"hard AV-digits: {len(tr)} train / {len(va)} val / {len(te)} test pairs; images keep "
          f"{tr.image_components} principal components")
    rows = []
    for name, config in (("image CNN, zoo.RECIPE", zoo.RECIPE),
                         ("image CNN, 2x epochs, weight decay 0.05",
                          replace(zoo.RECIPE, epochs=2 * zoo.RECIPE.epochs, weight_decay=0.05))):
        runs = zoo.run_grid(["image_only"], range(args.seeds), tr, va, te, config=config, cache=False, verbose=False)
        rows.append((name, f"{args.seeds} seeds", statistics.mean(r["val_acc"] for r in runs),
                     statistics.mean(r["test_acc"] for r in runs)))
    px = pixel_baseline(tr, va, te)
    rows.append(("logistic regression, standardised pixels", f"penalty {px['weight_decay']:g}", px["val_acc"], px["test_acc"]))
    flat = [d.inputs["image"].flatten(1).numpy() for d in (tr, va, te)]
    mu, sd = flat[0].mean(0), flat[0].std(0) + 1e-2
    z = [(x - mu) / sd for x in flat]
    y = [d.labels.numpy() for d in (tr, va, te)]
    data = [z[0], y[0], z[1], y[1], z[2], y[2]]
    h, v, t = best_on_val(lambda a: MLPClassifier((128,), alpha=a, max_iter=300, random_state=0), (1e-3, 1e-2, 1e-1, 1.0), *data)
    rows.append(("MLP (128 hidden), standardised pixels", f"alpha {h:g}", v, t))
    pca = PCA(tr.image_components, random_state=0).fit(flat[0])
    c = [pca.transform(x) for x in flat]
    c = [(x - c[0].mean(0)) / c[0].std(0) for x in c]
    data = [c[0], y[0], c[1], y[1], c[2], y[2]]
    h, v, t = best_on_val(lambda C: SVC(C=C, gamma="scale"), (0.3, 1.0, 3.0, 10.0, 30.0), *data)
    rows.append((f"RBF-SVM, {tr.image_components} principal components", f"C {h:g}", v, t))
    h, v, t = best_on_val(lambda k: KNeighborsClassifier(k), (5, 15, 31, 61), *data)
    rows.append((f"k-NN, {tr.image_components} principal components", f"k {h}", v, t))
    width = max(len(r[0]) for r in rows)
    print(f"\n{'model':{width}}  {'chosen on val':16}  val    test")
    for name, chosen, v, t in rows:
        print(f"{name:{width}}  {chosen:16}  {v:.3f}  {t:.3f}")
    best = max(rows, key=lambda r: r[2])
    print(f"\nbest on validation: {best[0]} (val {best[2]:.3f}, test {best[3]:.3f}); highest test of any: "
          f"{max(r[3] for r in rows):.3f}; test s.e. of one accuracy near 0.68 with {len(te)} pairs: "
          f"{np.sqrt(0.68 * 0.32 / len(te)):.3f}")


if __name__ == "__main__":
    main()
