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

__version__ = "0.1.0"

from mmcourse.runtime import QUICK, describe, pick_device, quick, seed_everything

__all__ = ["QUICK", "describe", "pick_device", "quick", "seed_everything", "__version__"]
