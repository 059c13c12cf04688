"""gate.policy on real embedded stores: the article's near-tie, a clearly worse challenger,
and the decision line that says a promotion was made on noise."""

from __future__ import annotations

from pathlib import Path

from conftest import edit_config, registry_snapshot, run_cli
from retrainer.config import load
from retrainer.cycle import judge_version, run_cycle

NOISE = "the difference is within noise: 95% interval -76..+43 crosses 0"


def test_article_near_tie_non_inferiority_promotes_what_superiority_with_confidence_keeps(
        proj: Path) -> None:
    """The article's retrain: mse -15 on 67 clean rows, 95% interval about -76..+43."""
    project = proj  # the article's version 1 as champion: a copy of the session's
    edit_config(project, gate={"confidence": 0.95})
    kept = run_cycle(load(project / "retrainer.yaml"))
    assert kept["decision"] == "kept_champion"
    assert kept["policy"] == {"name": "superiority", "margin": None, "confidence": 0.95,
                              "interval_confidence": 0.95}
    assert "95% CI [-76.42, 42.91] includes 0" in kept["reason"]
    assert kept["decision_notes"] == []

    # Non-inferiority with a 1% margin: the interval's worse end (+1.3%) is past it, and the
    # point estimate is inside: too few rows, and it says how many would do.
    edit_config(project, gate={"confidence": None, "policy": "non_inferiority",
                               "margin": 0.01})
    thin = judge_version(load(project / "retrainer.yaml"), "2")
    assert thin["decision"] == "kept_champion"
    assert "mse 3171.03 vs champion 3185.98 (-0.5%, 95% [-2.4%, +1.3%])" in thin["reason"]
    assert "the evidence is too thin for the 1% margin: about 103 clean rows would be " \
           "needed (67 here)" in thin["reason"]
    assert thin["policy"]["interval_confidence"] == 0.95  # null confidence: 0.95 for NI
    assert registry_snapshot(project)["aliases"]["champion"] == "1"

    edit_config(project, gate={"margin": 0.05})
    promoted = judge_version(load(project / "retrainer.yaml"), "2")
    assert promoted["decision"] == "promoted", promoted["reason"]
    assert "at worst within the 5% margin" in promoted["reason"]
    # The "must beat" checks do not apply under non_inferiority; the r2 floor still does.
    names = [c["name"] for c in promoted["checks"]]
    assert "mse within the 5% margin" in names and "r2 floor" in names
    assert not any(n.endswith("improves") or n.endswith("beats champion") for n in names)
    assert promoted["decision_notes"] == []  # no noise note: the policy answered the noise
    assert registry_snapshot(project)["aliases"]["champion"] == "2"


def test_a_clearly_worse_challenger_is_confidently_worse_under_both_policies(
        project: Path) -> None:
    run_cycle(load(project / "retrainer.yaml"))
    edit_config(project, gate={"policy": "non_inferiority", "margin": 0.01},
                train={"entrypoint": "train.py:train",
                       "params": {"alpha": 1000.0, "solver": "cholesky"}})
    worse = run_cycle(load(project / "retrainer.yaml"))
    assert worse["decision"] == "kept_champion"
    detail = next(c["detail"] for c in worse["checks"] if c["name"] == "mse within the 1% margin")
    assert detail.endswith("the challenger is confidently worse, beyond the 1% margin")
    lo, _ = worse["differences"]["mse"]["ci95"]
    assert lo > 0.01 * worse["champion"]["metrics"]["mse"]

    edit_config(project, gate={"policy": "superiority", "confidence": 0.95})
    again = judge_version(load(project / "retrainer.yaml"), worse["challenger"]["version"])
    assert again["decision"] == "kept_champion"
    assert "the challenger is confidently worse" in again["reason"]
    assert "includes 0" not in again["reason"]
    assert registry_snapshot(project)["aliases"]["champion"] == "1"


def test_a_promotion_on_noise_says_so_on_the_decision_line(proj: Path) -> None:
    project = proj  # the article's version 1 as champion: a copy of the session's
    human = run_cli("run", cwd=project, env={"COLUMNS": "250"}, timeout=300)
    assert human.code == 0, human.stderr
    assert f"promoted ({NOISE}): version 2" in human.stdout
    history = run_cli("history", "--json", "-n", "1", cwd=project).json()["entries"][0]
    assert history["reason"].startswith(NOISE)


def test_noise_is_not_claimed_when_the_interval_clears_zero(project: Path) -> None:
    edit_config(project, train={"entrypoint": "train.py:train",
                                "params": {"alpha": 1000.0, "solver": "cholesky"}},
                gate={"thresholds": {}})  # no r2 floor: a far worse first champion
    assert run_cycle(load(project / "retrainer.yaml"))["decision"] == "first_champion"
    edit_config(project, train={"entrypoint": "train.py:train",
                                "params": {"alpha": 1.0, "solver": "cholesky"}})
    better = run_cycle(load(project / "retrainer.yaml"))
    assert better["decision"] == "promoted"
    _, hi = better["differences"]["mse"]["ci95"]
    assert hi < 0 and better["decision_notes"] == []
    assert "noise" not in better["reason"]
