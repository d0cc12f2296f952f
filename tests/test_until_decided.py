"""`ttrlab sweep --until-decided`: real sweeps of a planted kind (a known effect plus seeded noise,
tests/kinds/planted_kind.py) under a small claims file. A real effect gets seeds look by look and
stops at the first look that decides it; a null effect stops at the declared horizon or the
budget, never decided as an effect; the dry run says what round 1 would add."""
import sqlite3
import textwrap

import pytest

from conftest import KINDS_DIR
from ttrlab.cli import main
from ttrlab.report.aggregate import build_cells
from ttrlab.report.claims import decide, load_claims
from ttrlab.sweep.store import FINISHED, ResultStore

CLAIMS = textwrap.dedent("""\
    version: 1
    alpha: 0.05
    sequential: {looks: [3, 6, 10], spending: pocock}
    claims:
      - id: effect
        figure: "1"
        role: primary
        claim: the treatment raises the score
        design: contrast
        kind: planted
        baseline: {arm: control}
        where: {arm: treatment}
        metric: score
        expect: higher
    """)


@pytest.fixture
def planted(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(KINDS_DIR))
    monkeypatch.setenv("PYTHONPATH", str(KINDS_DIR))
    monkeypatch.setenv("TTRLAB_PLUGINS", "planted_kind")
    from ttrlab.kinds.registry import load_plugins

    load_plugins()
    claims = tmp_path / "claims.yaml"
    claims.write_text(CLAIMS)

    def spec(effect: float) -> str:
        path = tmp_path / f"spec_{effect}.yaml"
        path.write_text(f"name: planted\nkind: planted\nseeds: [0, 1, 2]\nbase: {{effect: {effect}, noise: 1.0, salt: 3}}\n"
                        "axes: {arm: [treatment, control]}\n")
        return str(path)

    return spec, str(claims)


def _seeds(db) -> list[int]:
    with sqlite3.connect(db) as connection:
        return sorted({int(s) for (s,) in connection.execute("select json_extract(config, '$.seed') from runs")})


def test_a_real_effect_gets_seeds_until_the_first_look_that_decides_it(planted, tmp_path, capsys):
    spec, claims = planted
    db = str(tmp_path / "r.sqlite")
    assert main(["sweep", spec(1.5), "--db", db, "--executor", "inline", "--quiet", "--until-decided",
                 "--claims", claims]) == 0
    out = capsys.readouterr().out
    declared = load_claims(claims)
    with ResultStore(db, create=False) as store:
        decision = decide(build_cells(store.runs(status=FINISHED)), declared)[0]
    assert decision.decided and decision.look_seeds in declared.sequential.looks
    assert len(_seeds(db)) == decision.look_seeds  # no seed beyond the look that decided it
    # salt 3's draws: not decided at 3 seeds (p 0.068), decided at the look of 6 (p 0.0033)
    assert len(_seeds(db)) == 6 and "until decided, round 1: effect to 6 seeds" in out
    assert "decided: effect" in out


def test_a_null_effect_is_never_decided_as_an_effect_and_stops_at_the_horizon(planted, tmp_path, capsys):
    spec, claims = planted
    db = str(tmp_path / "r.sqlite")
    assert main(["sweep", spec(0.0), "--db", db, "--executor", "inline", "--quiet", "--until-decided",
                 "--claims", claims, "--max-seeds", "6"]) == 0
    out = capsys.readouterr().out
    assert len(_seeds(db)) <= 6 and "decided: none" in out


def test_the_budget_stops_the_loop_and_the_dry_run_plans_round_one(planted, tmp_path, capsys):
    spec, claims = planted
    db = str(tmp_path / "r.sqlite")
    assert main(["sweep", spec(1.5), "--db", db, "--executor", "inline", "--quiet", "--until-decided",
                 "--claims", claims, "--budget", "0"]) == 0
    assert _seeds(db) == [0, 1, 2]
    assert "over the 0.00 left" in capsys.readouterr().out
    assert main(["sweep", spec(1.5), "--db", db, "--until-decided", "--claims", claims, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "0 of its 6 runs to run first" in out and "effect: to 6 seeds, 6 runs" in out


@pytest.mark.parametrize("flags, message", [
    (["--max-seeds", "11"], "between 1 and the claims file's last declared look, 10"),
    (["--budget", "-1"], "must be a number of hours >= 0"),
])
def test_bad_until_decided_options_are_one_line(planted, tmp_path, capsys, flags, message):
    spec, claims = planted
    code = main(["sweep", spec(1.0), "--db", str(tmp_path / "r.sqlite"), "--executor", "inline", "--quiet",
                 "--until-decided", "--claims", claims, *flags])
    assert code == 2 and message in capsys.readouterr().err


def test_until_decided_options_need_until_decided(planted, tmp_path, capsys):
    spec, _ = planted
    assert main(["sweep", spec(1.0), "--db", str(tmp_path / "r.sqlite"), "--budget", "1"]) == 2
    assert "go with --until-decided" in capsys.readouterr().err
