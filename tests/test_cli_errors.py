"""A user's mistake on ``python -m rlpref.run`` ends in one line naming key, value and what is allowed, exit 2.

Each route a mistake can take is driven through the real entry point (:func:`rlpref.run.cli`, Hydra
included) in-process; one case runs as its own process to check what a shell sees.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from rlpref.run import cli


@pytest.fixture
def run_cli(tmp_path, monkeypatch, capsys):
    """run_cli(*overrides) -> (exit code, stderr) of ``python -m rlpref.run <overrides>``, in-process."""
    from hydra.core.global_hydra import GlobalHydra

    def _run(*overrides: str) -> tuple[int, str]:
        GlobalHydra.instance().clear()
        monkeypatch.setattr(sys, "argv", ["rlpref.run", *overrides, f"hydra.run.dir={tmp_path / 'run'}",
                                          f"cache_dir={tmp_path / 'cache'}"])
        with pytest.raises(SystemExit) as exit_info:
            cli()
        return exit_info.value.code, capsys.readouterr().err
    return _run


ROUTES = {  # overrides -> what the one line must say
    "bad value": (["teacher.sigma=abc"], "teacher.sigma='abc': must be a number >= 0"),
    "out of range": (["budget.n_feedback=1"], "budget.n_feedback=1: must be an integer >= 2"),
    "bad choice": (["protocol.query_schedule=linear"], "protocol.query_schedule='linear': must be one of: constant, hyperbolic"),
    "unknown key": (["teacher.sigmaa=0.1"], "teacher.sigmaa: no such key"),
    "moved key": (["budget.online_rounds=0"], "budget.online_rounds was moved: use protocol=offline_rounds"),
    "moved section": (["online.refit=gated"], "online.refit was moved: use protocol.iteration.refit"),
    "unknown option": (["env=HalfCheetah-v9"], "env=HalfCheetah-v9: no such option; choose one of: Ant-v5"),
    "unknown env id": (["env=gym", "env.id=NoSuchEnv-v0"], "env.id='NoSuchEnv-v0': not a registered Gymnasium env"),
    "missing module": (["env=gym", "env.id=no_such_module:Thing-v0"], "env.id='no_such_module:Thing-v0': not a registered"),
    "no env id": (["env=gym"], "env.id is required with env=gym"),
    "tuned file, other env": (["env=Pendulum-v1", "env.id=CartPole-v1"], "tuned for Pendulum-v1; for another env use env=gym"),
    "budget too small for rounds": (["protocol=offline_rounds", "budget=smoke"], "budget.n_feedback=300 leaves -240 offline"),
}


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_user_errors_end_in_one_line_and_exit_2(run_cli, route):
    overrides, expected = ROUTES[route]
    code, err = run_cli(*overrides)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlpref.run: error: "), err
    assert expected in lines[0], lines[0]
    assert "Traceback" not in err


def test_a_shell_sees_one_line_and_status_2_and_the_trace_on_request(tmp_path):
    args = [sys.executable, "-m", "rlpref.run", "teacher.sigma=abc", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == "rlpref.run: error: teacher.sigma='abc': must be a number >= 0"
    full = subprocess.run(args, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "HYDRA_FULL_ERROR": "1"})
    assert full.returncode != 0 and "Traceback" in full.stderr and "teacher.sigma='abc'" in full.stderr
