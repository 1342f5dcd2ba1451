import shutil

import numpy as np
import pytest

from mlcourse.datasets import available_datasets, data_dir, digits_tensors, load_dataset
from mlcourse.integrity import ChecksumError, verify_sums


def test_every_shipped_dataset_has_card_and_verified_checksums():
    names = available_datasets()
    assert "digits" in names
    for name in names:
        folder = data_dir() / name
        card = (folder / "data_card.md").read_text()
        for heading in ("Provenance", "Known limitations", "Privacy", "Licence"):
            assert heading in card, f"{name}/data_card.md lacks {heading!r}"
        assert set(verify_sums(folder)) == {
            p.name for p in folder.iterdir() if p.name != "SHA256SUMS"
        }


def test_digits_content():
    digits = load_dataset("digits")
    assert digits.version == "1.0.0"
    assert digits["images"].shape == (1797, 8, 8) and digits["images"].dtype == np.uint8
    assert int(digits["images"].max()) == 16
    assert np.bincount(digits["labels"]).min() >= 174
    assert len(set(digits["ids"].tolist())) == 1797
    assert digits.reference()["sha256"]["digits.npz"] == digits.sha256["digits.npz"]
    assert "13 writers" in digits.card()


def test_unknown_dataset_lists_the_available_ones():
    with pytest.raises(
        ValueError, match="dataset='mnist' is not supported; expected one of 'digits'"
    ):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="digits array='pixels' is not supported"):
        load_dataset("digits")["pixels"]


@pytest.fixture
def digits_copy(tmp_path):
    shutil.copytree(data_dir() / "digits", tmp_path / "digits")
    return tmp_path


def test_corrupted_data_is_detected_before_loading(digits_copy):
    npz = digits_copy / "digits" / "digits.npz"
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="checksum mismatch for .*digits.npz"):
        load_dataset("digits", root=digits_copy)


def test_edited_data_card_or_missing_file_is_detected(digits_copy, monkeypatch):
    card = digits_copy / "digits" / "data_card.md"
    card.write_text(card.read_text() + "\nedited\n")
    monkeypatch.setenv("MLCOURSE_DATA_DIR", str(digits_copy))
    with pytest.raises(ChecksumError, match="data_card.md"):
        load_dataset("digits")
    (digits_copy / "digits" / "digits.npz").unlink()
    with pytest.raises(ChecksumError, match="missing"):
        load_dataset("digits")


def test_digits_tensors_split_is_disjoint_and_fixed():
    parts = digits_tensors({"train": 0.6, "val": 0.2, "test": 0.2})
    sizes = {k: len(v[1]) for k, v in parts.items()}
    assert sum(sizes.values()) == 1797
    assert sizes == {"train": 1107, "val": 374, "test": 316}  # fixed by the ids, forever
    X, _ = parts["train"]
    assert X.shape[1] == 64 and float(X.min()) >= 0.0 and float(X.max()) <= 1.0
