"""safetensors + JSON checkpoints: round trip, resume state, no pickle."""

import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from dfkit.train.backbones import create_backbone
from dfkit.train.checkpoint import (
    build_model_from_checkpoint,
    checkpoint_paths,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
)


def _trained_tiny(steps=3):
    torch.manual_seed(0)
    model = create_backbone("tiny", num_classes=3, img_size=32)
    proj = nn.Linear(model.embed_dim, 8)
    opt = torch.optim.AdamW(list(model.parameters()) + list(proj.parameters()), lr=1e-2, betas=(0.8, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    for _ in range(steps):
        x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 3, (8,))
        loss = nn.functional.cross_entropy(model(x), y) + proj(model.embed(x)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model, proj, opt, sched


def _fresh():
    torch.manual_seed(123)
    model = create_backbone("tiny", num_classes=3, img_size=32)
    proj = nn.Linear(model.embed_dim, 8)
    opt = torch.optim.AdamW(list(model.parameters()) + list(proj.parameters()), lr=1e-2, betas=(0.8, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    return model, proj, opt, sched


def test_round_trip(tmp_path):
    model, proj, opt, sched = _trained_tiny()
    meta = {"config": {"lr": 1e-2}, "class_names": ["real", "a", "b"], "epoch": 3, "best_metric": 0.75, "seed": 7}
    st, js = save_checkpoint(tmp_path / "run" / "last", model=model, modules={"projection": proj}, optimizer=opt,
                             scheduler=sched, meta=meta, extra_state={"sampler": {"epoch": 3, "w": np.arange(4.0)}})
    assert (st.name, js.name) == ("last.safetensors", "last.json")
    assert checkpoint_paths(tmp_path / "run" / "last.json") == (st, js)
    doc = json.loads(js.read_text())  # plain JSON, nothing pickled
    assert doc["meta"] == meta and doc["modules"] == ["model", "projection"]
    assert st.read_bytes()[8:9] == b"{"  # safetensors: 8-byte header length, then a JSON header

    model2, proj2, opt2, sched2 = _fresh()
    got = load_checkpoint(st, model=model2, modules={"projection": proj2}, optimizer=opt2, scheduler=sched2)
    assert got["meta"]["epoch"] == 3
    for a, b in zip(list(model.state_dict().values()) + list(proj.state_dict().values()),
                    list(model2.state_dict().values()) + list(proj2.state_dict().values())):
        assert torch.equal(a, b)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]  # lr, betas (a tuple), weight decay, param ids
    assert set(s1["state"]) == set(s2["state"]) and all(isinstance(k, int) for k in s2["state"])
    for k in s1["state"]:
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(s1["state"][k][name], s2["state"][k][name])
    assert sched2.state_dict()["last_epoch"] == sched.state_dict()["last_epoch"] == 3
    assert sched2.get_last_lr() == sched.get_last_lr()
    assert np.array_equal(got["extra_state"]["sampler"]["w"], np.arange(4.0))

    # one more identical step from both gives identical weights
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 3, (4,))
    for m, o in ((model, opt), (model2, opt2)):
        m.eval()  # same BatchNorm behaviour
        loss = nn.functional.cross_entropy(m(x), y)
        o.zero_grad()
        loss.backward()
        o.step()
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.allclose(a, b, atol=1e-7)


def test_rng_restore(tmp_path):
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    save_checkpoint(tmp_path / "c", model=nn.Linear(2, 2), meta={"epoch": 1})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    load_checkpoint(tmp_path / "c", restore_rng=True)
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]


def test_mismatch_and_missing(tmp_path):
    model, *_ = _trained_tiny(steps=1)
    save_checkpoint(tmp_path / "a", model=model, meta={"epoch": 1})
    save_checkpoint(tmp_path / "b", model=model, meta={"epoch": 2})
    # a safetensors file from another save than its JSON is refused
    (tmp_path / "a.safetensors").write_bytes((tmp_path / "b.safetensors").read_bytes())
    with pytest.raises(ValueError, match="do not belong together"):
        load_checkpoint(tmp_path / "a", model=model)
    with pytest.raises(KeyError):
        load_checkpoint(tmp_path / "b", model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(RuntimeError):  # wrong architecture
        load_checkpoint(tmp_path / "b", model=create_backbone("tiny", num_classes=5))
    with pytest.raises(TypeError):  # no pickle fallback for arbitrary objects
        save_checkpoint(tmp_path / "c", meta={}, extra_state={"x": object()})
    assert read_checkpoint_meta(tmp_path / "b")["meta"]["epoch"] == 2


def test_build_model_and_weights_from_checkpoint(tmp_path):
    model, *_ = _trained_tiny(steps=1)
    model.eval()
    save_checkpoint(tmp_path / "best", model=model, meta={"model": model.config(), "epoch": 1})
    rebuilt = build_model_from_checkpoint(tmp_path / "best")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), model(x))
    assert rebuilt.weights_source.endswith("best.safetensors")
    # a checkpoint seeds a model with another head: features load, the head keeps its initialisation
    other = create_backbone("tiny", num_classes=2, weights=tmp_path / "best.safetensors")
    assert torch.equal(other.features.body[0][0].weight, model.features.body[0][0].weight)
    assert other.head.weight.shape == (2, 128)
