"""mmcourse: the helper package of an offline, real-data course on multimodal deep learning.

Every notebook in ``notebooks/`` derives an idea by hand first and then imports the reusable
version from here. One concept per module.

Shape letters used in every docstring:
    B  batch size            N  number of examples in a data set
    D  feature dimension     M  number of modalities
    T  time steps (frames)   C  number of classes
    H, W  image height/width F  MFCC coefficients per frame (13)

Modality contract (as in TorchMultimodal): multimodal inputs are ``dict[str, Tensor]`` whose keys
(``"audio"``, ``"image"``, ``"text"``) are always iterated in sorted order.
"""

__version__ = "0.1.0"  # written only here: the wheel's metadata and the Colab cells read it

import os as _os

# OpenMP threads that spin while waiting made torch up to 20x slower on a busy 2-core machine
# (two notebooks or test workers at once); passive waiting costs nothing when the CPU is idle.
# OpenMP reads this when torch loads, so it helps only if mmcourse is imported before torch;
# `make test` also runs one thread per worker, which avoids the problem either way.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from mmcourse.runtime import QUICK, claim, describe, pick_device, quick, say, seed_everything, title

__all__ = ["QUICK", "claim", "describe", "pick_device", "quick", "say", "seed_everything", "title",
           "__version__"]
