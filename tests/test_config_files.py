"""The one config loader: YAML and JSON, strict about duplicates, aliases and size."""

from __future__ import annotations

import json

import pytest

from mlcourse.config_files import (
    MAX_CONFIG_BYTES,
    ConfigFileError,
    load_config_file,
    parse_config_text,
)


def load(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_config_file(path)


def problems_of(tmp_path, name: str, text: str) -> list[str]:
    with pytest.raises(ConfigFileError) as info:
        load(tmp_path, name, text)
    assert str(tmp_path / name) in str(info.value), "the message names the file"
    return info.value.problems


def test_yaml_and_json_load_to_the_same_mapping(tmp_path):
    yaml_text = "name: demo\noptimizer:\n  lr: 0.1\n  betas: [0.9, 0.99]\n"
    json_text = '{"name": "demo", "optimizer": {"lr": 0.1, "betas": [0.9, 0.99]}}'
    assert load(tmp_path, "a.yaml", yaml_text) == load(tmp_path, "a.json", json_text)
    assert load(tmp_path, "a.yml", yaml_text)["optimizer"]["lr"] == 0.1


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("top.yaml", "epochs: 2\nseed: 1\nepochs: 3\n", "key 'epochs' appears twice (lines 1 and 3)"),
        # the second section would silently replace the first one's lr and momentum
        ("section.yaml",
         "optimizer:\n  name: sgd\n  lr: 0.1\n  momentum: 0.9\noptimizer: {name: adam}\n",
         "key 'optimizer' appears twice (lines 1 and 5)"),
        ("deep.yaml", "a:\n  b:\n    - c: 1\n      c: 2\n", "key 'a.b[0].c' appears twice (lines 3 and 4)"),
        ("flow.yaml", "model: {hidden: [8], hidden: [16]}\n", "key 'model.hidden' appears twice (lines 1 and 1)"),
        # YAML 1.1 reads yes and true as the same key
        ("bools.yaml", "flags:\n  yes: 1\n  true: 2\n", "appears twice (lines 2 and 3)"),
        ("top.json", '{"epochs": 2,\n "epochs": 3}', "key 'epochs' appears twice (lines 1 and 2)"),
        ("section.json",
         '{"optimizer": {"name": "sgd", "lr": 0.1},\n "seed": 0,\n "optimizer": {"name": "adam"}}',
         "key 'optimizer' appears twice (lines 1 and 3)"),
        ("deep.json", '{"a": [{"b": {"c": 1,\n"c": 2}}]}', "key 'a[0].b.c' appears twice (lines 1 and 2)"),
        # escapes decode to the same key
        ("escaped.json", '{"lr": 1,\n "\\u006cr": 2}', "key 'lr' appears twice (lines 1 and 2)"),
    ],
)  # fmt: skip
def test_duplicate_keys_are_rejected_at_any_depth(tmp_path, name, text, expected):
    problems = problems_of(tmp_path, name, text)
    assert any(expected in p for p in problems), problems


def test_every_duplicate_is_reported_at_once(tmp_path):
    problems = problems_of(tmp_path, "many.yaml", "a: 1\nb: 2\na: 3\nb: 4\nb: 5\n")
    assert problems == [
        "key 'a' appears twice (lines 1 and 3); a key may appear only once in a section.",
        "key 'b' appears twice (lines 2 and 4); a key may appear only once in a section.",
        "key 'b' appears twice (lines 2 and 5); a key may appear only once in a section.",
    ]


def test_same_key_in_different_sections_is_fine(tmp_path):
    text = "data: {seed: 1}\nseed: 2\nlayers: [{name: a}, {name: b}]\n"
    assert load(tmp_path, "ok.yaml", text)["layers"][1]["name"] == "b"
    json_text = '{"data": {"seed": 1}, "seed": 2, "layers": [{"name": "a"}, {"name": "b"}]}'
    assert load(tmp_path, "ok.json", json_text)["seed"] == 2


def test_yaml_aliases_are_refused_so_no_document_can_expand_exponentially(tmp_path):
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
    )
    problems = problems_of(tmp_path, "laughs.yaml", laughs)
    assert "anchors and aliases" in problems[0] and "line 1" in problems[0]


def test_yaml_merge_keys_are_refused(tmp_path):
    problems = problems_of(tmp_path, "merge.yaml", "optimizer:\n  <<: {lr: 0.1}\n  name: sgd\n")
    assert problems == [
        "line 2: YAML merge keys (<<) are not allowed in config files; write the values out."
    ]


def test_deep_nesting_is_refused_not_a_crash(tmp_path):
    deep, medium = "[" * 5000 + "]" * 5000, '{"a": [' * 60 + "1" + "]}" * 60
    cases = (("deep.json", deep), ("deep.yaml", "a: " + deep + "\n"), ("medium.json", medium),
             ("medium.yaml", medium))  # fmt: skip
    for name, text in cases:
        problems = problems_of(tmp_path, name, text)
        assert any("nested too deeply" in p for p in problems), problems


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("config.toml", b"epochs = 3", "has suffix '.toml'; expected one of '.json', '.yaml', '.yml'"),
        ("list.yaml", b"- epochs\n", "must hold a mapping at the top level, got a list"),
        ("empty.yaml", b"", "must hold a mapping at the top level, got nothing"),
        ("scalar.json", b"3", "must hold a mapping at the top level, got an int"),
        ("broken.yaml", b"epochs: [3\n", "cannot parse the file"),
        ("broken.json", b'{"epochs": }', "Expecting value (line 1, column 12)"),
        ("binary.yaml", b"\xff\xfe\x00epochs", "is not UTF-8 text"),
        ("key.yaml", b"? [a, b]\n: 1\n", "line 1: a key must be a plain value, not a list or mapping"),
    ],
)  # fmt: skip
def test_unreadable_files_get_one_clear_message(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ConfigFileError) as info:
        load_config_file(path)
    assert expected in str(info.value) and str(path) in str(info.value)


def test_missing_and_oversized_files(tmp_path):
    with pytest.raises(ConfigFileError, match="does not exist"):
        load_config_file(tmp_path / "missing.yaml")
    (tmp_path / "folder.yaml").mkdir()
    with pytest.raises(ConfigFileError, match="is not a regular file"):
        load_config_file(tmp_path / "folder.yaml")
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"x": "a" * MAX_CONFIG_BYTES}))
    with pytest.raises(ConfigFileError, match="larger than the 1 MiB a config may be"):
        load_config_file(big)


def test_text_values_use_the_same_rules():
    assert parse_config_text("{a: 1, b: [2, 3]}", kind="yaml") == {"a": 1, "b": [2, 3]}
    assert parse_config_text("[1, 2]", kind="json") == [1, 2]
    with pytest.raises(ConfigFileError, match="key 'a' appears twice"):
        parse_config_text("{a: 1, a: 2}", kind="yaml", source="--set model")
    with pytest.raises(ValueError, match="kind='toml' is not supported"):
        parse_config_text("a = 1", kind="toml")
