import json
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


# --- dataset.json is verified before it is parsed (issue 11) ----------------------------------


def test_flipped_byte_in_the_manifest_is_a_checksum_error_naming_it(digits_copy):
    info = digits_copy / "digits" / "dataset.json"
    data = bytearray(info.read_bytes())
    data[0] ^= 0xFF
    info.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=r"checksum mismatch for .*dataset.json"):
        load_dataset("digits", root=digits_copy)


def test_renamed_manifest_key_is_a_checksum_error_not_a_key_error(digits_copy):
    info = digits_copy / "digits" / "dataset.json"
    info.write_text(info.read_text().replace('"file"', '"fild"'))
    with pytest.raises(ChecksumError, match=r"checksum mismatch for .*dataset.json"):
        load_dataset("digits", root=digits_copy)


def rewrite_manifest(folder, text: str) -> None:
    """Replace dataset.json *and* its checksum: a consistent but hostile dataset folder."""
    from mlcourse.integrity import write_sums

    (folder / "dataset.json").write_text(text)
    (folder / "SHA256SUMS").unlink()
    write_sums(folder, ["data_card.md", "dataset.json", "digits.npz"])


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda info: {k: v for k, v in info.items() if k != "file"},
         "dataset.json' lacks 'file'; it must name 'name', 'version', 'file', 'arrays'"),
        (lambda info: {**info, "file": "../digits/digits.npz"},
         "'file' must be the name of a file beside dataset.json, got '../digits/digits.npz'"),
        (lambda info: {**info, "arrays": "images"}, "'arrays' must be a mapping"),
    ],
)  # fmt: skip
def test_consistent_but_malformed_manifest_is_refused_by_name(digits_copy, change, expected):
    folder = digits_copy / "digits"
    info = json.loads((folder / "dataset.json").read_text())
    rewrite_manifest(folder, json.dumps(change(info)))
    with pytest.raises(ValueError, match=expected):
        load_dataset("digits", root=digits_copy)


def test_manifest_with_duplicate_keys_is_refused(digits_copy):
    from mlcourse.config_files import ConfigFileError

    folder = digits_copy / "digits"
    text = (folder / "dataset.json").read_text()
    rewrite_manifest(
        folder, text.replace('"version": "1.0.0",', '"version": "1.0.0",\n  "version": "9",')
    )
    with pytest.raises(ConfigFileError, match="key 'version' appears twice"):
        load_dataset("digits", root=digits_copy)


def test_a_manifest_not_listed_in_the_sums_is_refused(digits_copy):
    from mlcourse.integrity import write_sums

    folder = digits_copy / "digits"
    (folder / "SHA256SUMS").unlink()
    write_sums(folder, ["data_card.md", "digits.npz"])
    with pytest.raises(ChecksumError, match="'dataset.json' is not listed"):
        load_dataset("digits", root=digits_copy)
