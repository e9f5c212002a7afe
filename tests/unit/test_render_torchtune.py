"""finetune.yaml: torchtune's keys plus cruijff's, from the registry or a custom model; and the YAML
writer that must spell everything exactly as ruamel does."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cruijff.plan import Resources
from cruijff.compiler.render import torchtune as tt
from cruijff.compiler.render.yaml import _Fallback, _fast, _ruamel, dump_yaml
from cruijff.compiler.resolve import HYPERPARAMETER_DEFAULTS

MANIFEST = {"experiment": "e", "prompt": {"system": "S", "template": "T {input}"}, "finetune": {}}
DATASET = {"path": "/d/w.json", "format": "instruct_json",
           "splits": {"train": "train", "validation": "validation", "test": "test"}}
LLAMA = {"path": "/models/llama", "family": "Llama-3.2-1B-Instruct"}
CUSTOM = {"path": "/models/tiny", "family": "custom",
          "builder": {"_component_": "torchtune.models.llama3.lora_llama3", "vocab_size": 512, "max_seq_len": 128},
          "checkpoint_files": ["model.safetensors"], "model_type": "LLAMA3"}


def config(model=LLAMA, gpus=1, dataset=DATASET, **hp):
    return tt.finetune_config(manifest=MANIFEST, run_name="r", model=model, dataset=dataset,
                              hp={**HYPERPARAMETER_DEFAULTS, **hp}, save_epochs=[0, 1],
                              resources=Resources(gpus=gpus), run_dir="/out/finetune/r")


def test_registry_model():
    c = config(lora_rank=16)
    assert c["model"]["_component_"] == "torchtune.models.llama3_2.lora_llama3_2_1b"
    assert c["model"]["lora_rank"] == 16 and c["model"]["lora_alpha"] == 32
    # every family trains with its own HF tokenizer and chat template, as inspect evaluates it
    assert c["tokenizer"] == {"_component_": "cruijff.train.tokenizer.hf_tokenizer", "path": "/models/llama",
                              "max_seq_len": 2048}
    assert c["checkpointer"]["checkpoint_dir"] == "/models/llama"
    assert c["checkpointer"]["output_dir"] == "/out/finetune/r/checkpoints"
    assert c["device"] == "cuda" and c["dtype"] == "bf16" and c["optimizer"]["fused"] is True
    assert c["save_epochs"] == [0, 1]
    assert c["export"] == {"base_model_dir": "/models/llama", "dir_template": "{output_dir}/epoch_{epoch}/model"}
    assert tt.export_dir("/out/finetune/r", 1) == "/out/finetune/r/epoch_1/model"


def test_custom_model_on_cpu():
    c = config(model=CUSTOM, gpus=0, lora_alpha=8, max_seq_len=64, dtype="bf16")
    assert c["model"]["vocab_size"] == 512 and c["model"]["lora_alpha"] == 8
    assert c["tokenizer"] == {"_component_": "cruijff.train.tokenizer.hf_tokenizer", "path": "/models/tiny",
                              "max_seq_len": 64}
    assert config(model=CUSTOM, gpus=0)["tokenizer"]["max_seq_len"] == 128  # the builder's
    assert c["checkpointer"]["model_type"] == "LLAMA3"
    assert c["device"] == "cpu" and c["dtype"] == "bf16" and c["optimizer"]["fused"] is False


def test_smollm2_family_builds_from_generic_llama3_2():
    c = config(model={"path": "/m/smol", "family": "SmolLM2-135M-Instruct"}, gpus=0)
    assert c["model"]["_component_"] == "torchtune.models.llama3_2._component_builders.lora_llama3_2"
    assert (c["model"]["embed_dim"], c["model"]["num_layers"], c["model"]["vocab_size"]) == (576, 30, 49152)
    assert c["model"]["scale_factor"] == 1 and c["model"]["tie_word_embeddings"] is True
    assert c["checkpointer"]["model_type"] == "LLAMA3_2"
    assert c["tokenizer"]["path"] == "/m/smol"


def test_dataset_and_validation_split():
    c = config()
    assert c["dataset"]["split"] == "train" and c["dataset_val"]["split"] == "validation"
    assert c["dataset"]["system"] == "S" and c["dataset"]["template"] == "T {input}"
    no_val = {**DATASET, "splits": {**DATASET["splits"], "validation": None}}
    assert "dataset_val" not in config(dataset=no_val)


def test_schedulers_and_recipes():
    assert config(lr_scheduler="linear")["lr_scheduler"]["_component_"].endswith("get_linear_schedule_with_warmup")
    assert tt.recipe_file(1) != tt.recipe_file(2)


def test_dump_has_header_and_round_trips():
    from ruamel.yaml import YAML

    c = config()
    text = dump_yaml(c, header=["line one", "", "path /a\nb"])
    assert text.startswith("# line one\n#\n# path /a\n# b\n")
    assert YAML(typ="safe").load(text) == c


# ---------------------------------------------------------------------------------------------
# the fast YAML writer is byte-for-byte ruamel

_keys = st.one_of(st.sampled_from(["a", "b_c", "_component_", "lora_rank", "x.y", "path", "k9"]),
                  st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True))
_texts = st.one_of(
    st.text(max_size=10),
    st.from_regex(r"[A-Za-z_/][A-Za-z0-9_./+-]{0,12}", fullmatch=True),
    st.sampled_from(["yes", "No", "null", "~", "1e3", "0x1f", "/a/b", "a: b", "a #b", "-x", "true", "{x}",
                     "'q'", '"d"', "a\nb", "", " lead", "trail ", "@x", "%y", "cuda:0", "1.0", ".inf", "=",
                     "<<", "Traits: {input}\nZygosity:", "{output_dir}/epoch_{epoch}/model", "00004"]))
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**9, 10**9), st.floats(allow_nan=False), _texts)
_trees = st.recursive(_scalars, lambda ch: st.one_of(st.lists(ch, max_size=4),
                                                     st.dictionaries(_keys, ch, max_size=4)), max_leaves=30)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.dictionaries(_keys, _trees, min_size=1, max_size=6))
def test_fast_yaml_is_ruamel(data):
    expected = _ruamel(data)
    try:
        assert _fast(data) == expected
    except _Fallback:
        pass
    assert dump_yaml(data) == expected


@settings(max_examples=2000, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_every_float_is_spelled_as_ruamel_spells_it(value):
    """The float writer follows ruamel's representer without asking it (1 ms a value)."""
    from cruijff.compiler.render.yaml import _spelled_any, _spelled_float

    assert _spelled_float(value) == _spelled_any(value)
