"""A user's mistake on ``python -m rlpref.run`` ends in one line naming key, value and what is allowed, exit 2.

Each route a mistake can take is driven through the real entry point (:func:`rlpref.run.cli`, Hydra
included), all in one child process; one case runs as ``python -m rlpref.run`` to check what a shell sees.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


# Runs every route through the real entry point in one child process (Hydra's global state and logging stay
# out of the test process), printing {route: [exit code, stderr]} as JSON.
_DRIVER = """
import contextlib, io, json, sys
from hydra.core.global_hydra import GlobalHydra
from rlpref.run import cli
out = {}
for name, overrides in json.loads(sys.argv[1]).items():
    GlobalHydra.instance().clear()
    sys.argv = ["rlpref.run", *overrides, "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            cli()
        code = 0
    except SystemExit as exc:
        code = exc.code
    out[name] = [code, err.getvalue()]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def route_results(tmp_path_factory):
    """{route: (exit code, stderr)} of ``python -m rlpref.run <overrides>`` for every route of ROUTES."""
    tmp = tmp_path_factory.mktemp("cli")
    routes = {name: [*overrides, f"hydra.run.dir={tmp / 'run'}", f"cache_dir={tmp / 'cache'}"]
              for name, (overrides, _) in ROUTES.items()}
    proc = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(routes)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


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
def test_user_errors_end_in_one_line_and_exit_2(route_results, route):
    code, err = route_results[route]
    expected = ROUTES[route][1]
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


@pytest.mark.parametrize("prog, override, expected", [
    ("rlpref.synthetic", "dataset=nosuch", "dataset=nosuch: no such option; choose one of: all, deterministic"),
    ("rlpref.llm.train", "nosuch=1", "nosuch: no such key"),
])
def test_the_other_hydra_entry_points_report_user_errors_in_one_line(tmp_path, prog, override, expected):
    proc = subprocess.run([sys.executable, "-m", prog, override, f"hydra.run.dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == f"{prog}: error: {proc.stderr.strip().split('error: ', 1)[1]}"
    assert len(proc.stderr.strip().splitlines()) == 1 and expected in proc.stderr, proc.stderr
