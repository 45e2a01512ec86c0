"""Captured training steps of the YRZSC campaign (``deep.experiments.campaign_stack``) and the
protocol constants of ``deep.experiments.campaign_yrzsc``.

* a whole training step (loss with its inner PGD, parameter gradients, SGD-momentum update) of the
  natural, AT/RST and TRADES groups is ONE graph with no break (``torch._dynamo.explain``); the
  old step had 14 graphs and 13 breaks from the attack's host checks and torch.optim's step;
* captured (``torch.compile(fullgraph=True)``, CPU backend ``aot_eager``) and eager steps give the
  same parameters after several steps, dropout on;
* a group whose step cannot be captured (GR: RNG replay) falls back to eager and says why;
* the pilot times eager and captured steps per group in one run and records both.
"""
from __future__ import annotations

import math

import pytest
import torch

from deep.experiments.campaign_stack import (Group, MomentumSGD, Schedule, count_graphs,
                                             make_step, train_group)
from deep.methods import parse_method_spec
from deep.models_yang import CNN1

SCHED = Schedule(lr=0.05, momentum=0.9, milestones=(0.5,))
GROUPS = [("single", ["natural"]), ("ce_mix", ["at", "rst:2"]), ("trades", ["trades:1", "trades:6"])]


def _group(kind, specs, steps=1):
    methods = [parse_method_spec(s, steps=steps) for s in specs]
    return Group("cnn1", kind, methods)


def _model(group, seed=3):
    models = []
    for _ in group.methods:
        torch.manual_seed(seed)
        models.append(CNN1(image_size=16))       # dropout on (the network's own rates)
    return group.build(models).train()


def _data(n=16):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize("kind,specs", GROUPS)
def test_training_step_is_one_graph_without_breaks(kind, specs):
    torch.set_num_threads(1)
    x, y = _data(8)
    group = _group(kind, specs)
    model = _model(group)
    step = make_step(group, model, MomentumSGD(model.parameters(), 0.01, 0.9))
    assert count_graphs(step, x, y) == (1, 0)


def _train(kind, specs, mode, steps=3):
    x, y = _data()
    group = _group(kind, specs)
    model = _model(group)
    r = train_group(group, model, x, y, epochs=1, batch_size=8, sched=SCHED, seed=0,
                    max_steps=steps, step_mode=mode, capture_backend="aot_eager")
    return model, r


@pytest.mark.parametrize("kind,specs", GROUPS[1:])
def test_captured_and_eager_steps_give_the_same_parameters(kind, specs):
    """Two steps of 8 examples (one epoch) with dropout on and PGD in the loss; the captured step
    (fullgraph, aot_eager) must match the eager one to 1e-6 (relative to how far the parameters
    moved; float32 kernels may differ in summation order)."""
    torch.set_num_threads(1)
    torch._dynamo.reset()
    start = _model(_group(kind, specs))
    eager, re = _train(kind, specs, "eager")
    captured, rc = _train(kind, specs, "captured")
    assert (re["step_mode"], rc["step_mode"], rc["capture_error"]) == ("eager", "captured", None)
    with torch.no_grad():
        moved = max(float((p - q).abs().max()) for p, q in zip(eager.parameters(), start.parameters()))
        diff = max(float((p - q).abs().max()) for p, q in zip(eager.parameters(), captured.parameters()))
    print(f"{kind}: moved {moved:.3g}, eager vs captured {diff:.3g}")
    assert moved > 1e-3
    assert diff <= 1e-6 * max(1.0, moved), (diff, moved)


def test_uncapturable_step_falls_back_to_eager_and_says_why():
    """GR shares a dropout mask by replaying torch's RNG state, which torch.compile refuses; the
    run goes on eagerly (same parameters as an eager run) and records the reason."""
    torch.set_num_threads(1)
    torch._dynamo.reset()
    eager, _ = _train("single", ["gr"], "eager", steps=2)
    fell, r = _train("single", ["gr"], "captured", steps=2)
    assert r["step_mode"] == "eager" and r["capture_error"]
    for p, q in zip(eager.parameters(), fell.parameters()):
        assert torch.equal(p, q)


def test_momentum_sgd_matches_torch_sgd():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    ref = torch.optim.SGD(a.parameters(), lr=0.1, momentum=0.9)
    ours = MomentumSGD(b.parameters(), 0.1, 0.9)
    for k in range(4):
        x = torch.randn(7, 5, generator=torch.Generator().manual_seed(k))
        ref.zero_grad()
        a(x).square().sum().backward()
        ref.step()
        ours.apply(torch.autograd.grad(b(x).square().sum(), list(b.parameters())))
        if k == 1:
            ref.param_groups[0]["lr"] = 0.01
            ours.set_lr(0.01)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_pilot_times_eager_and_captured_steps_of_every_group(tmp_path, mnist_root):
    """``step_mode="auto"``: both modes timed per group in one run (CPU backend ``eager`` keeps it
    fast), steps/s recorded for both, the faster chosen; GR's capture error is recorded."""
    from deep.experiments.campaign_common import Budget
    from deep.experiments.campaign_yrzsc import TINY, YrzscConfig, groups_for, load_data, pilot

    torch.set_num_threads(1)
    torch._dynamo.reset()
    kw = dict(TINY, step_mode="auto", capture_backend="eager")
    cfg = YrzscConfig(out=tmp_path, data_root=str(mnist_root), archs=("cnn1",),
                      methods=("natural", "gr", "at"), epochs=1, tiny=True, **kw)
    device = torch.device("cpu")
    groups = groups_for(cfg)
    plan = pilot(cfg, groups, load_data(cfg, device), device, Budget(600.0))
    timing = plan["step_timing"]
    assert set(timing) == {g.name for g in groups}
    for name in ("cnn1_natural", "cnn1_at"):
        t = timing[name]
        assert t["eager_steps_per_s"] > 0 and t["captured_steps_per_s"] > 0
        assert t["chosen"] in ("eager", "captured") and plan["step_mode"][name] == t["chosen"]
        faster = max(("eager", "captured"), key=lambda m: t[f"{m}_steps_per_s"])
        assert t["chosen"] == faster
    gr = timing["cnn1_gr:0.5".replace(":", "-")]
    assert gr["captured_steps_per_s"] is None and gr["captured_error"] and gr["chosen"] == "eager"
    assert math.isfinite(plan["step_seconds"]["cnn1_at"])


def test_protocol_constants_follow_the_authors():
    """RST lambda 0.5/1/2 (Table 2's "5" is ".5"), learning rate 1e-4 x 64 on the batch-mean loss,
    and the constant list of remaining deviations goes into every result's "deviations"."""
    from deep.experiments import campaign_yrzsc as cy

    assert "rst:0.5" in cy.METHODS and "rst:5" not in cy.METHODS
    assert cy.DEFAULT_LR == pytest.approx(0.0064, rel=1e-12)
    cfg = cy.YrzscConfig(out="unused")
    assert cfg.lr == pytest.approx(0.0064, rel=1e-12)
    plan = {"epochs": 160, "budget_seconds": 1.0, "n_train": 60000, "n_test": 10000,
            "n_train_eval": 10000, "n_mt": 1000, "n_lip": 10000}
    devs = cy.deviations(cfg, plan, torch.device("cpu"))
    assert all(d in devs for d in cy.PROTOCOL_DEVIATIONS) and len(cy.PROTOCOL_DEVIATIONS) >= 5
    assert not any("learning rate" in d for d in devs)       # 0.0064 is the authors' lr
