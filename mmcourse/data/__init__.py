"""The real-data layer: every data set offline, verified by sha256, one call away.

    from mmcourse.data import prepare, load_mnist, load_av_digits
    prepare()                        # idempotent; also ``python -m mmcourse.data``
    X, y = load_mnist()              # (5000, 28, 28) float32, (5000,) int64

See ``data/README.md`` for each file's source package, version, sha256 and licence.
"""

from mmcourse.data._store import DataError, data_dir, ensure, prepare
from mmcourse.data.av import AVDigits, load_av_digits
from mmcourse.data.loaders import (Reviews, load_digits8, load_mnist, load_reviews,
                                   load_spoken_digits, pad_sequences)
from mmcourse.data.text import embed_texts, mean_pool, minilm_path, text_encoder

__all__ = [
    "AVDigits", "DataError", "Reviews", "data_dir", "embed_texts", "ensure", "load_av_digits",
    "load_digits8", "load_mnist", "load_reviews", "load_spoken_digits", "mean_pool",
    "minilm_path", "pad_sequences", "prepare", "text_encoder",
]
