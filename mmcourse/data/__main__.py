"""``python -m mmcourse.data``: fetch, extract and verify every data file."""

import sys

from mmcourse.data._store import DataError, prepare

try:
    prepare(verbose=True)
except (DataError, OSError) as e:  # each names the file or folder and the fix: no traceback needed
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
