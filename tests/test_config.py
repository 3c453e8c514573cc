"""Typed configs: field and type checking, --set parsing and routing, TOML files."""
from __future__ import annotations

import json
from dataclasses import fields

import pytest

import genlab
from genlab.config import describe_fields, from_dict, load_toml, parse_set, parse_value
from genlab.data import DataConfig
from genlab.errors import ConfigError, GenlabError
from genlab.models.autoencoders.ae import AEConfig, ConvAEConfig
from genlab.models.autoencoders.vae import ConvVAEConfig, VAEConfig
from genlab.run import route_overrides
from genlab.train import TrainConfig


# --- from_dict ----------------------------------------------------------------------------
def test_from_dict_builds_typed_config():
    c = from_dict(TrainConfig, {"lr": 1, "epochs": 3.0, "optimizer": "sgd"})
    assert c.lr == 1.0 and isinstance(c.lr, float)  # an int is accepted where a float is expected
    assert c.epochs == 3 and isinstance(c.epochs, int)  # an integral float where an int is
    assert c.optimizer == "sgd"
    assert c.batch_size == TrainConfig().batch_size  # untouched fields keep their defaults


def test_from_dict_rejects_unknown_field_by_name():
    with pytest.raises(ConfigError) as e:
        from_dict(TrainConfig, {"learning_rate": 0.1}, where="train")
    msg = str(e.value)
    assert "learning_rate" in msg and "unknown field" in msg
    assert "lr" in msg  # the known fields are listed


@pytest.mark.parametrize("cls,data,name", [
    (TrainConfig, {"batch_size": "big"}, "batch_size"),
    (TrainConfig, {"batch_size": 2.5}, "batch_size"),
    (TrainConfig, {"batch_size": True}, "batch_size"),  # a bool is not an int
    (TrainConfig, {"lr": "fast"}, "lr"),
    (TrainConfig, {"device": 0}, "device"),
    (AEConfig, {"hidden": 400}, "hidden"),
    (AEConfig, {"hidden": [400, "a"]}, "hidden[1]"),
    (DataConfig, {"grayscale": "maybe"}, "grayscale"),
    (DataConfig, {"name": ["digits"]}, "name"),
])
def test_from_dict_rejects_wrong_type_naming_the_field(cls, data, name):
    with pytest.raises(ConfigError) as e:
        from_dict(cls, data, where="cfg")
    assert f"cfg.{name}" in str(e.value)


@pytest.mark.parametrize("text,value", [("true", True), ("yes", True), ("1", True), ("False", False), ("no", False)])
def test_bool_fields_accept_words(text, value):
    assert from_dict(DataConfig, {"grayscale": text}).grayscale is value


@pytest.mark.parametrize("cls,data,name", [
    (TrainConfig, {"lr": 0.0}, "lr"),
    (TrainConfig, {"batch_size": 0}, "batch_size"),
    (TrainConfig, {"optimizer": "rmsprop"}, "optimizer"),
    (TrainConfig, {"device": "tpu"}, "device"),
    (TrainConfig, {"epochs": 2, "steps": 3}, "steps"),
    (DataConfig, {"val_fraction": 1.0}, "val_fraction"),
    (DataConfig, {"test_fraction": 0.0}, "test_fraction"),
    (DataConfig, {"binarize": "sometimes"}, "binarize"),
    (VAEConfig, {"beta": -1.0}, "beta"),
    (VAEConfig, {"latent": 0}, "latent"),
    (AEConfig, {"hidden": [32, 0]}, "hidden"),
])
def test_out_of_range_values_name_the_field(cls, data, name):
    with pytest.raises(ConfigError) as e:
        from_dict(cls, data, where="cfg")
    assert f"cfg.{name}" in str(e.value)


def test_choice_error_lists_the_choices():
    with pytest.raises(ConfigError) as e:
        from_dict(TrainConfig, {"optimizer": "rmsprop"})
    for c in ("adam", "adamw", "sgd", "rmsprop"):
        assert c in str(e.value)


@pytest.mark.parametrize("model,cls", [("conv-ae", ConvAEConfig), ("conv-vae", ConvVAEConfig)])
def test_conv_config_errors_name_channels(model, cls):
    """conv models have no `hidden` field: a bad layer size must be reported as `channels`."""
    with pytest.raises(ConfigError) as e:
        genlab.create_model(model, shape=(1, 8, 8), channels=[0, 4])
    assert "channels" in str(e.value)
    assert "hidden" not in {f.name for f in fields(cls)}


def test_create_model_rejects_unknown_model_with_a_suggestion():
    with pytest.raises(GenlabError) as e:
        genlab.create_model("vea")
    assert "'vea'" in str(e.value) and "'vae'" in str(e.value)


def test_create_model_rejects_unknown_activation():
    with pytest.raises(ConfigError) as e:
        genlab.create_model("ae", shape=(1, 8, 8), activation="swish")
    assert "activation" in str(e.value) and "swish" in str(e.value)


def test_bernoulli_decoder_needs_unit_range():
    with pytest.raises(ConfigError) as e:
        genlab.create_model("vae", shape=(4,), value_range=(-1.0, 1.0))
    assert "bernoulli" in str(e.value)
    genlab.create_model("vae", shape=(4,), value_range=(-1.0, 1.0), decoder="gaussian")  # fine


@pytest.mark.parametrize("cls", [TrainConfig, DataConfig, AEConfig, VAEConfig, ConvAEConfig, ConvVAEConfig])
def test_describe_fields_matches_defaults(cls):
    described = {name: default for name, _, default, _ in describe_fields(cls)}
    inst = cls()
    assert described == {f.name: getattr(inst, f.name) for f in fields(cls)}


# --- parse_set ----------------------------------------------------------------------------
@pytest.mark.parametrize("text,value", [
    ("[1000,500]", [1000, 500]),
    ("[]", []),
    ("1e-3", 1e-3),
    ("3", 3),
    ("-2.5", -2.5),
    ("true", True),
    ("False", False),
    ("none", None),
    ("relu", "relu"),
    ("npz:/tmp/a.npz", "npz:/tmp/a.npz"),
    ('"quoted"', "quoted"),
])
def test_parse_value(text, value):
    got = parse_value(text)
    assert got == value and type(got) is type(value)


def test_parse_set_splits_on_the_first_equals_sign():
    got = parse_set(["hidden=[32,16]", " lr = 0.01 ", "name=npz:/a=b.npz", "binarize=dynamic"])
    assert got == [("hidden", [32, 16]), ("lr", 0.01), ("name", "npz:/a=b.npz"), ("binarize", "dynamic")]


@pytest.mark.parametrize("item", ["noequals", "=3"])
def test_parse_set_rejects_malformed_items(item):
    with pytest.raises(ConfigError) as e:
        parse_set([item])
    assert repr(item) in str(e.value)


# --- routing --------------------------------------------------------------------------------
def test_route_bare_keys_to_their_section():
    got = route_overrides("vae", [("latent", 3), ("lr", 0.1), ("binarize", "fixed"), ("seed", 7), ("name", "mnist")])
    assert got == {"model": {"latent": 3}, "train": {"lr": 0.1, "seed": 7},
                   "data": {"binarize": "fixed", "name": "mnist"}}


def test_route_prefixed_keys():
    got = route_overrides("ae", [("train.lr", 0.5), ("data.limit", 10), ("model.latent", 2)])
    assert got == {"model": {"latent": 2}, "train": {"lr": 0.5}, "data": {"limit": 10}}


@pytest.mark.parametrize("key,name", [("bogus", "bogus"), ("optim.lr", "optim"), ("train.hidden", "hidden"),
                                      ("beta", "beta")])  # beta is a VAE field, not an AE one
def test_route_rejects_unknown_keys(key, name):
    with pytest.raises(ConfigError) as e:
        route_overrides("ae", [(key, 1)])
    assert name in str(e.value)


def test_train_routes_set_items_into_config_json(tmp_path):
    run = genlab.train("ae", "digits", out=tmp_path / "r", steps=2, device="cpu", evaluate_at_end=False,
                       set=["hidden=[8]", "latent=3", "train.lr=0.005", "seed=4", "data.val_fraction=0.1",
                            "loss=bce", "batch_size=64"])
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["model_config"]["hidden"] == [8] and cfg["model_config"]["latent"] == 3
    assert cfg["model_config"]["loss"] == "bce"
    assert cfg["train"]["lr"] == 0.005 and cfg["train"]["seed"] == 4 and cfg["train"]["batch_size"] == 64
    assert cfg["data"]["val_fraction"] == 0.1
    assert cfg["shape"] == [1, 8, 8]
    # the number of parameters recorded is that of an 64-8-3-8-64 MLP
    assert cfg["num_params"] == (64 * 8 + 8) + (8 * 3 + 3) + (3 * 8 + 8) + (8 * 64 + 64)
    assert run.model.config.hidden == [8]


# --- TOML -----------------------------------------------------------------------------------
def test_toml_config_with_model_name_and_tables(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('model = "ae"\n[train]\nsteps = 3\nlr = 0.002\nbatch_size = 50\n[data]\nlimit = 300\n')
    run = genlab.train(config=f, out=tmp_path / "r", set=["hidden=[8]", "latent=2"], device="cpu",
                       evaluate_at_end=False)
    cfg = run.config
    assert cfg["model"] == "ae"
    assert cfg["train"]["steps"] == 3 and cfg["train"]["lr"] == 0.002 and cfg["train"]["batch_size"] == 50
    assert cfg["data"]["limit"] == 300
    assert run.metrics()[-1]["step"] == 3


def test_toml_model_table_and_command_line_wins(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[model]\nhidden = [8]\nlatent = 2\n[train]\nsteps = 50\nlr = 0.002\n')
    run = genlab.train("vae", config=f, out=tmp_path / "r", epochs=1, lr=0.004, batch_size=500,
                       device="cpu", evaluate_at_end=False)
    cfg = run.config
    assert cfg["model"] == "vae" and cfg["model_config"]["hidden"] == [8] and cfg["model_config"]["latent"] == 2
    # --epochs replaces the file's steps, --lr its lr
    assert cfg["train"]["epochs"] == 1 and cfg["train"]["steps"] == 0 and cfg["train"]["lr"] == 0.004
    assert run.metrics()[-1]["step"] == 3  # one epoch of 1437 images in batches of 500


@pytest.mark.parametrize("text,name", [
    ('[optim]\nlr = 1\n', "optim"),
    ('[train]\nlearning_rate = 1\n', "learning_rate"),
    ('[train]\nlr = "x"\n', "lr"),
])
def test_toml_errors_name_the_key(tmp_path, text, name):
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        genlab.train("ae", config=f, out=tmp_path / "r")
    assert name in str(e.value)
    assert not (tmp_path / "r").exists()


def test_load_toml_reports_bad_syntax_and_missing_file(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("[train\nlr = \n")
    with pytest.raises(ConfigError) as e:
        load_toml(f)
    assert "bad.toml" in str(e.value) and "TOML" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_toml(tmp_path / "nope.toml")
    assert "nope.toml" in str(e.value)
