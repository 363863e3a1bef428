"""Configuration: YAML and --set land on the same typed dataclasses; unknown keys are errors."""

from __future__ import annotations

import pytest

from denoiserec.errors import ConfigError
from denoiserec.runconfig import load_config


def test_short_keys_dotted_keys_and_yaml(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: {name: gru4rec, hidden_size: 32}\ntrain: {lr: 0.01}\n")
    config = load_config(path, ["epochs=3", "model.dropout=0.1", "lr=0.002"])
    assert config.model.name == "gru4rec"
    assert config.model.hidden_size == 32 and config.model.dropout == 0.1
    assert config.train.epochs == 3 and config.train.lr == 0.002
    assert config.protocol.name == "recbole"


@pytest.mark.parametrize(("override", "message"), [
    ("train.epoch=3", "did you mean 'epochs'"),
    ("model.hiden_size=3", "did you mean 'hidden_size'"),
    ("trian.lr=1", "unknown config section 'trian'"),
    ("train.epochs=many", "expected int"),
    ("train.progress=3", "expected true/false"),
    ("model=nosuchmodel", "unknown model 'nosuchmodel'"),
    ("epochs", "expects key=value"),
    ("epoch=3", "unknown setting 'epoch'; did you mean 'train.epochs'?"),
    ("valid_metric=ndcg@10", "did you mean 'train.valid_metric'?"),
    ("n_negatives=3", "did you mean 'protocol.n_negatives' or 'train.n_negatives'?"),
    ("model.hidden_size=[1", "cannot parse value"),
])
def test_bad_settings_are_one_line_errors(override, message):
    with pytest.raises(ConfigError, match=message) as error:
        load_config(overrides=[override])
    assert "\n" not in str(error.value)


def test_int_accepted_for_float_and_yaml_errors(tmp_path):
    assert load_config(overrides=["lr=1"]).train.lr == 1.0
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_differences_name_every_changed_setting():
    from denoiserec.runconfig import differences

    before = load_config(overrides=["lr=0.01"]).to_dict()
    now = load_config(overrides=["model.n_layers=3"]).to_dict()
    assert differences(before, now) == ["model.n_layers 2, now 3", "train.lr 0.01, now 0.001"]
