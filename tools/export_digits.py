"""Export the UCI 8x8 handwritten digits, as shipped inside scikit-learn, to datasets/digits/.

Run once by a maintainer (the result is committed; nothing is downloaded):

    .venv/bin/python tools/export_digits.py

It refuses to overwrite an existing export: delete datasets/digits/digits.npz first and
bump the version in dataset.json if the content is meant to change.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from mlcourse.integrity import atomic_write_bytes, atomic_write_text, write_sums

OUT = Path(__file__).resolve().parent.parent / "datasets" / "digits"


def main() -> None:
    digits = load_digits()  # read from a file inside the scikit-learn package
    images = digits.images.astype(np.uint8)  # grey levels 0..16
    labels = digits.target.astype(np.int64)
    ids = np.array([f"digits-{i:04d}" for i in range(len(labels))])
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=images, labels=labels, ids=ids)
    atomic_write_bytes(OUT / "digits.npz", buffer.getvalue())
    info = {
        "name": "digits",
        "version": "1.0.0",
        "file": "digits.npz",
        "arrays": {
            "images": "uint8 (1797, 8, 8): grey level 0-16 of each 4x4 block of a 32x32 bitmap",
            "labels": "int64 (1797,): the digit written, 0-9",
            "ids": "str (1797,): stable id 'digits-NNNN' (row order of the UCI test file)",
        },
        "source": "UCI Machine Learning Repository, Optical Recognition of Handwritten Digits "
        "(doi:10.24432/C50P49), via the copy bundled in scikit-learn",
        "license": "CC BY 4.0",
    }
    atomic_write_text(OUT / "dataset.json", json.dumps(info, indent=2) + "\n", overwrite=True)
    write_sums(OUT, ["digits.npz", "dataset.json", "data_card.md"])
    print(f"wrote {len(labels)} digits; class counts {np.bincount(labels).tolist()}")


if __name__ == "__main__":
    main()
