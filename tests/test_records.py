"""One record per concern: RunConfig's sections, the flat view (--set, sweep axes, files, stored
trials), old names, frozen records, and a study written by sizeup 0.1 (before the sections)
resumed without rerunning a finished trial."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from sizeup.config import (
    FIELDS,
    DataSpec,
    ModelSpec,
    OptimSpec,
    ParamSpec,
    RunConfig,
    ScheduleSpec,
)
from sizeup.errors import ConfigError

OLD_STUDY = Path(__file__).parent / "data" / "study_v0_1.db"


def test_sections_and_the_flat_view_are_one_config():
    cfg = RunConfig(
        width=256, rule="sp", optimizer="muon", schedule="wsd", data="teacher", model="mlp"
    )
    assert (cfg.model.width, cfg.model.name) == (256, "mlp")
    assert cfg.parametrization.rule == "sp" and cfg.optimizer.name == "muon"
    assert cfg.schedule.name == "wsd" and cfg.data.source == "teacher"
    flat = cfg.to_dict()
    assert flat["width"] == 256 and flat["model"] == "mlp" and flat["optimizer"] == "muon"
    assert set(flat) == set(FIELDS)  # every field once, by its flat name
    # the flat view, the nested view and a mix of both (dotted names) rebuild the same config
    assert RunConfig.from_dict(flat) == cfg
    assert RunConfig.from_dict(cfg.sections()) == cfg
    mixed = {"model": {"name": "mlp", "width": 256}, "parametrization.rule": "sp"}
    mixed |= {"optimizer": "muon", "schedule": {"name": "wsd"}, "data": "teacher"}
    assert RunConfig.from_dict(mixed) == cfg
    # sections given whole
    whole = RunConfig(
        model=ModelSpec(name="mlp", width=256),
        parametrization=ParamSpec(rule="sp"),
        optimizer=OptimSpec(name="muon"),
        schedule=ScheduleSpec(name="wsd"),
        data=DataSpec(source="teacher"),
    )
    assert whole == cfg
    assert cfg.get("model.width") == cfg.get("width") == cfg.get("d_model") == 256


def test_records_are_frozen_and_replace_reads_every_spelling():
    cfg = RunConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model = ModelSpec()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model.width = 64  # type: ignore[misc]
    assert cfg.replace(width=64).model.width == 64
    assert cfg.replace(**{"model.width": 64}) == cfg.replace(d_model=64)
    assert cfg.replace(model=cfg.model.replace(width=64)) == cfg.replace(width=64)
    # an old flat attribute says where the field lives now
    with pytest.raises(AttributeError, match=r"model\.width"):
        cfg.width  # noqa: B018


def test_old_names_are_accepted_and_named_in_errors():
    assert RunConfig(init_std=0.05).parametrization.sigma == 0.05
    assert RunConfig.from_dict({"lr_schedule": "cosine"}).schedule.name == "cosine"
    assert RunConfig(base_lr=0.01).optimizer.lr == 0.01
    with pytest.raises(ConfigError, match=r"init_std='x'.*init_std is now sigma"):
        RunConfig(init_std="x")
    with pytest.raises(ConfigError, match="given once"):
        RunConfig.from_dict({"width": 64, "model": {"width": 128}})
    with pytest.raises(ConfigError, match="nope=1 is not allowed: a RunConfig field"):
        RunConfig(nope=1)


def test_trial_ids_do_not_move():
    # the ids sizeup 0.1 computed for these configs (its RunConfig was flat): a hash of the
    # fields that differ from their defaults, under their 0.1 names (init_std, not sigma)
    assert RunConfig().trial_id() == "44136fa355b3"
    assert RunConfig(width=64, lr=1e-3, optimizer="muon").trial_id() == "a4bcd226b0f0"
    assert RunConfig(init_std=0.02, rule="sp").trial_id() == "5c25b6288f95"
    assert RunConfig(sigma=0.02, rule="sp").trial_id() == "5c25b6288f95"
    ramp = dict(schedule="wsd", warmup=10, steps=100, batch_ramp=[[0, 8], [1e4, 16]])
    assert RunConfig(**ramp).trial_id() == "b74f3faa7826"
    # a field added since (here the GQA and micro-batch fields) at its default leaves it alone
    assert RunConfig(n_kv_head=None, micro_batch_size=None).trial_id() == "44136fa355b3"


def test_a_study_of_sizeup_0_1_resumes_without_rerunning_a_finished_trial(tmp_path):
    """tests/data/study_v0_1.db was written by sizeup 0.1 (flat configs with init_std): 4 trials,
    2 done and 2 queued. Adding the same spec today finds the same ids; the sweep runs only
    the 2 queued trials and keeps the finished ones' results."""
    from sizeup.sweep import Store, run_sweep

    db = tmp_path / "study.db"
    shutil.copy(OLD_STUDY, db)
    spec = {
        "name": "v0.1",
        "base": {
            "model": "gpt",
            "width": 32,
            "base_width": 32,
            "depth": 1,
            "head_dim": 16,
            "seq_len": 16,
            "batch_size": 2,
            "steps": 3,
            "eval_batches": 1,
            "init_std": 0.02,
            "schedule": "wsd",
            "warmup": 1,
        },
        "axes": {"width": [32, 64], "lr": [1e-3, 2e-3]},
    }
    with Store(db, readonly=True) as st:
        before = {t.id: (t.status, t.result) for t in st.trials()}
        for t in st.trials():  # a stored 0.1 config reads as today's, with its own id
            assert t.config.trial_id() == t.id
            assert t.config.parametrization.sigma == 0.02
    assert sorted(s for s, _ in before.values()) == ["done", "done", "queued", "queued"]
    ran = []

    def runner(cfg):
        from sizeup.train import run

        ran.append(cfg.trial_id())
        return run(cfg)

    run_sweep(spec, db, runner=runner, progress=False)
    queued = {i for i, (s, _) in before.items() if s == "queued"}
    assert set(ran) == queued  # the finished trials were not rerun
    with Store(db, readonly=True) as st:
        after = {t.id: (t.status, t.result) for t in st.trials()}
    assert set(after) == set(before) and {s for s, _ in after.values()} == {"done"}
    for i, (status, result) in before.items():
        if status == "done":
            assert after[i][1].to_dict() == result.to_dict()  # kept as it was


def test_every_field_is_declared_once_with_its_help():
    from sizeup.config import SECTIONS

    for cls in SECTIONS.values():
        for info in cls.field_info():
            assert info.help, (cls.__name__, info.name)
    flat = [info.flat for cls in SECTIONS.values() for info in cls.field_info()]
    assert len(flat) == len(set(flat))  # one name per concept, across the sections


def test_the_model_spec_scales_with_width_in_one_place():
    m = ModelSpec(width=512, head_dim=64, n_kv_head=2, d_ff=1536, n_experts=4, expert_hidden=256)
    base = m.at(128)
    # head size kept; 8 heads share 2 key/value heads (groups of 4), which 2 heads cannot keep,
    # so each gets its own; d_ff and the experts' hidden size in proportion
    assert (base.heads, base.head_size, base.kv_heads) == (2, 64, 2)
    assert m.at(1024).kv_heads == 4  # 16 heads in groups of 4
    assert base.d_ff == 384 and base.expert_hidden == 64 and base.n_experts == 4
    fixed = ModelSpec(width=128, n_head=4)
    assert fixed.at(512).head_size == 128 and fixed.at(512).heads == 4  # heads fixed: grows
    with pytest.raises(ConfigError, match="mlp_ratio"):
        ModelSpec(width=64, d_ff=100, mlp_ratio=4.0)
