"""Config: precedence, strict validation with one-sentence errors, round trips."""

import json
import os

import pytest
import yaml

from charrnn.config import (
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)
from tests.conftest import CELL_NAMES


def write(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return str(p)


def error_of(path, overrides=()):
    with pytest.raises(ConfigError) as e:
        load_config(path, list(overrides))
    msg = str(e.value)
    assert "\n" not in msg and msg.count(". ") == 0, f"not one sentence: {msg!r}"
    return msg


def test_defaults_match_the_schema():
    c = load_config(None)
    assert (c.data.path, c.data.val_fraction, c.data.batching) == (
        "data/shakespeare.txt", 0.1, "contiguous")
    assert (c.model.cell, c.model.layers, c.model.hidden_size, c.model.embed_size) == (
        "lstm", 2, 256, 64)
    assert (c.train.batch_size, c.train.seq_len, c.train.optimizer, c.train.lr) == (
        32, 64, "adam", 0.004)
    assert (c.train.lr_schedule, c.model.forget_bias) == ("auto", 0.0)   # docs/defaults.md
    assert c.train.max_steps is None and c.train.max_minutes is None
    assert (c.train.eval_every, c.train.checkpoint_every, c.train.seed) == (200, 200, 1337)
    assert (c.sample.length, c.sample.temperature, c.sample.top_k) == (500, 1.0, None)


def test_precedence_defaults_then_file_then_overrides(tmp_path):
    path = write(tmp_path, "train:\n  lr: 0.01\n  batch_size: 8\nmodel:\n  cell: gru\n")
    c = load_config(path, ["train.lr=0.5", "model.layers=3"])
    assert c.train.lr == 0.5  # override beats file
    assert c.train.batch_size == 8  # file beats default
    assert c.model.cell == "gru"
    assert c.model.layers == 3  # override beats default
    assert c.train.seq_len == 64  # untouched default
    # Later overrides win over earlier ones.
    assert load_config(path, ["train.lr=0.1", "train.lr=0.2"]).train.lr == 0.2


def test_override_values_are_yaml(tmp_path):
    c = load_config(None, ["train.max_steps=100", "train.lr=1e-3", "train.max_minutes=null",
                           "sample.top_p=0.9", "train.max_minutes=2"])
    assert c.train.max_steps == 100 and isinstance(c.train.max_steps, int)
    assert c.train.lr == 0.001
    assert c.train.max_minutes == 2.0 and isinstance(c.train.max_minutes, float)
    assert c.sample.top_p == 0.9
    assert load_config(None, ["train.max_steps=5", "train.max_steps=null"]).train.max_steps is None


def test_string_override_values_are_literal():
    # YAML would read `ROMEO:` as a mapping and `123` as an int; a prime must stay text.
    assert load_config(None, ["sample.prime=ROMEO:"]).sample.prime == "ROMEO:"
    assert load_config(None, ["sample.prime=123"]).sample.prime == "123"
    assert load_config(None, ["sample.prime=a=b"]).sample.prime == "a=b"
    assert load_config(None, ["data.path=-"]).data.path == "-"


def test_yaml_1e_minus_3_without_dot_is_a_float(tmp_path):
    # PyYAML reads `1e-3` as a string (YAML 1.1); float fields accept it anyway.
    assert load_config(write(tmp_path, "train:\n  lr: 1e-3\n")).train.lr == 0.001


def test_int_accepted_for_float_and_converted(tmp_path):
    c = load_config(write(tmp_path, "train:\n  lr: 1\nmodel:\n  forget_bias: 0\n"))
    assert c.train.lr == 1.0 and type(c.train.lr) is float
    assert type(c.model.forget_bias) is float


def test_unknown_key_suggests_closest(tmp_path):
    msg = error_of(None, ["train.lerning_rate=0.1"])
    assert "unknown key 'train.lerning_rate'" in msg
    # difflib's closest key, not a fixed list.
    msg = error_of(write(tmp_path, "train:\n  batchsize: 4\n"))
    assert msg == "unknown key 'train.batchsize'; did you mean 'train.batch_size'?"


def test_unknown_key_in_wrong_section_points_to_right_section():
    msg = error_of(None, ["train.dropout=0.1"])
    assert msg == "unknown key 'train.dropout'; did you mean 'model.dropout'?"


def test_unknown_key_without_close_match_lists_keys():
    msg = error_of(None, ["data.zzzzzz=1"])
    assert "unknown key 'data.zzzzzz'" in msg and "path, val_fraction, batching" in msg


def test_unknown_section(tmp_path):
    msg = error_of(write(tmp_path, "trian:\n  lr: 0.1\n"))
    assert msg == "unknown section 'trian'; did you mean 'train'?"
    assert "unknown section 'optim'" in error_of(None, ["optim.lr=1"])


@pytest.mark.parametrize("override, expected", [
    ("train.batch_size=2.5", "train.batch_size must be an integer; got 2.5 (a float)"),
    ("train.batch_size=3.0", "train.batch_size must be an integer; got 3.0 (a float)"),
    ("model.layers=true", "model.layers must be an integer; got true (a boolean)"),
    ("train.lr=fast", "train.lr must be a number; got 'fast'"),
    ("train.lr=false", "train.lr must be a number; got false (a boolean)"),
    ("train.lr=null", "train.lr must not be null; set a value or remove the key"),
    ("train.max_steps=1.5", "train.max_steps must be an integer; got 1.5 (a float)"),
])
def test_wrong_types(override, expected):
    assert error_of(None, [override]) == expected


def test_string_field_rejects_number_in_file(tmp_path):
    msg = error_of(write(tmp_path, "data:\n  path: 12\n"))
    assert msg.startswith("data.path must be a string; got 12 (an integer)")


def test_bad_choice():
    assert error_of(None, ["model.cell=lsmt"]) == \
        f"model.cell must be one of {', '.join(CELL_NAMES)}; got 'lsmt'"    # rnn, gru, lstm
    assert "train.optimizer must be one of sgd, adagrad, rmsprop, adam, adamw" in \
        error_of(None, ["train.optimizer=lbfgs"])
    assert error_of(None, ["train.clip=off"]) == \
        "train.clip must be one of norm, value, none; got 'off'"


@pytest.mark.parametrize("override, expected", [
    ("model.hidden_size=0", "model.hidden_size must be >= 1; got 0"),
    ("model.dropout=1.0", "model.dropout must be in [0, 1); got 1.0"),
    ("model.dropout=-0.1", "model.dropout must be in [0, 1); got -0.1"),
    ("data.val_fraction=0", "data.val_fraction must be in (0, 1); got 0.0"),
    ("train.lr=0", "train.lr must be > 0; got 0.0"),
    ("sample.temperature=-1", "sample.temperature must be > 0; got -1.0"),
    ("sample.top_k=0", "sample.top_k must be >= 1; got 0"),
    ("sample.top_p=1.5", "sample.top_p must be in (0, 1]; got 1.5"),
    ("train.max_minutes=0", "train.max_minutes must be > 0; got 0.0"),
    ("train.clip_value=0", "train.clip_value must be > 0; got 0.0"),
    ("train.log_every=0", "train.log_every must be >= 1; got 0"),
])
def test_out_of_range(override, expected):
    assert error_of(None, [override]) == expected


@pytest.mark.parametrize("cell", [c for c in CELL_NAMES if c != "rnn"])
def test_an_option_the_cell_would_ignore_is_refused(cell):
    msg = error_of(None, [f"model.cell={cell}", "model.nonlinearity=relu"])
    assert msg.startswith("model.nonlinearity relu is for the rnn cell only")
    assert load_config(None, ["model.cell=rnn", "model.nonlinearity=relu"]).model.nonlinearity \
        == "relu"


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
@pytest.mark.parametrize("init", ["orthogonal", "identity"])
def test_an_init_of_weight_hh_is_refused_for_a_cell_without_one(cell, init):
    assert error_of(None, [f"model.cell={cell}", f"model.init={init}"]) == \
        f"model.init {init} sets weight_hh, which {cell} does not have; use model.init default"


def test_a_stored_config_with_an_ignored_option_still_loads():
    d = config_to_dict(Config())
    d["model"].update(cell="gru", nonlinearity="relu")
    assert config_from_dict(d).model.nonlinearity == "tanh"      # it never had an effect
    d["model"].update(cell="mingru", init="orthogonal")
    assert config_from_dict(d).model.init == "default"
    d["model"].update(cell="rnn", nonlinearity="relu", init="identity")
    assert (config_from_dict(d).model.nonlinearity, config_from_dict(d).model.init) == \
        ("relu", "identity")


def test_range_edges_that_are_allowed():
    c = load_config(None, ["sample.top_p=1", "model.dropout=0", "train.sample_every=0"])
    assert c.sample.top_p == 1.0 and c.model.dropout == 0.0


def test_min_lr_above_lr_is_rejected():
    assert "train.min_lr" in error_of(None, ["train.min_lr=0.01", "train.lr=0.001"])


def test_non_finite_float_rejected():
    assert error_of(None, ["train.lr=.inf"]) == "train.lr must be a finite number; got inf"


def test_malformed_override():
    assert "must look like section.key=value" in error_of(None, ["train.lr"])
    assert "must look like section.key=value" in error_of(None, ["lr=0.1"])


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "train:\n  lr: [0.1\n  seq_len: 4\n")
    msg = error_of(path)
    assert msg.startswith(f"config file '{path}' is not valid YAML") and "line" in msg


def test_top_level_must_be_mapping(tmp_path):
    assert "must be a mapping of sections" in error_of(write(tmp_path, "- a\n- b\n"))
    assert "section 'train' must be a mapping" in error_of(write(tmp_path, "train: 5\n"))


def test_empty_file_and_empty_section_give_defaults(tmp_path):
    assert load_config(write(tmp_path, "")) == Config()
    assert load_config(write(tmp_path, "train:\n")) == Config()


def test_missing_and_unreadable_file(tmp_path):
    missing = str(tmp_path / "nope.yaml")
    assert error_of(missing) == f"config file '{missing}' does not exist; check the path"
    assert "is a directory" in error_of(str(tmp_path))
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"data:\n  path: caf\xe9\n")
    assert "is not valid UTF-8" in error_of(str(bad))


def test_dict_round_trip_through_json():
    c = load_config(None, ["model.cell=gru", "train.max_minutes=1.5", "sample.prime=ROMEO:",
                           "sample.top_k=5"])
    d = json.loads(json.dumps(config_to_dict(c)))
    assert d["model"]["cell"] == "gru" and d["train"]["max_steps"] is None
    assert config_from_dict(d) == c


def test_from_dict_validates_and_fills_missing_keys():
    assert config_from_dict({"model": {"hidden_size": 8}}).model.layers == 2
    with pytest.raises(ConfigError, match="model.hidden_size must be >= 1"):
        config_from_dict({"model": {"hidden_size": 0}})
    with pytest.raises(ConfigError, match="unknown key 'model.hiden_size'"):
        config_from_dict({"model": {"hiden_size": 8}})


def test_save_config_round_trips_and_leaves_no_temp_file(tmp_path):
    c = load_config(None, ["train.lr=3e-4", "train.eps=1e-10", "sample.prime=1e-3",
                           "sample.prime=yes", "model.init=identity"])
    path = str(tmp_path / "resolved.yaml")
    save_config(c, path)
    assert load_config(path) == c
    with open(path, encoding="utf-8") as f:
        assert yaml.safe_load(f)["sample"]["prime"] == "yes"  # quoted, not a boolean
    assert os.listdir(tmp_path) == ["resolved.yaml"]


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_a_decaying_schedule_needs_a_limit(kind):
    msg = error_of(None, [f"train.lr_schedule={kind}", "train.max_steps=null"])
    assert msg.startswith(f"train.lr_schedule {kind} decays to train.min_lr at the run's limit; "
                          f"set train.max_steps, max_epochs or max_minutes")
    for limit in ("max_steps=10", "max_epochs=1", "max_minutes=0.5"):
        load_config(None, [f"train.lr_schedule={kind}", f"train.{limit}"])
    with pytest.raises(ConfigError, match="decays to train.min_lr"):   # a stored config too
        config_from_dict({"train": {"lr_schedule": kind}})


def test_eval_chars_needs_two_characters():
    assert error_of(None, ["train.eval_chars=1"]) == "train.eval_chars must be >= 2; got 1"
    assert load_config(None, ["train.eval_chars=2"]).train.eval_chars == 2


@pytest.mark.parametrize("value", ["", "  "])
def test_empty_out_dir_is_rejected(value):
    assert error_of(None, [f"train.out_dir={value}"]).startswith("train.out_dir must not be empty")


CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(CONFIGS) if f.endswith(".yaml")))
def test_every_shipped_config_loads_and_validates(name):
    cfg = load_config(os.path.join(CONFIGS, name))
    assert config_from_dict(json.loads(json.dumps(config_to_dict(cfg)))) == cfg
    assert cfg.train.out_dir and cfg.data.path


def test_configs_folder_is_not_empty():
    assert len([f for f in os.listdir(CONFIGS) if f.endswith(".yaml")]) >= 5
