"""A user's mistake on a Hydra entry point ends in one line naming key, value and what is allowed, exit 2.

Each route a mistake can take is driven through the real entry points (:func:`rlpref.run.cli`, Hydra
included; ``rlpref.synthetic`` and ``rlpref.llm.train``), all in one child process; one case runs as
``python -m rlpref.run`` to check what a shell sees.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Runs every route through its entry point in one child process (Hydra's global state and logging stay
# out of the test process), printing {route: [exit code, stderr]} as JSON; an exception that escapes
# (HYDRA_FULL_ERROR=1) is recorded with exit code "raised" and its traceback.
_DRIVER = """
import contextlib, io, json, os, sys, traceback
from hydra.core.global_hydra import GlobalHydra
from rlpref.run import cli
from rlpref.synthetic.__main__ import main as synthetic_main
from rlpref.llm.train import _main as llm_main
entry = {"rlpref.run": cli, "rlpref.synthetic": synthetic_main, "rlpref.llm.train": llm_main}
out = {}
for name, (prog, overrides, full) in json.loads(sys.argv[1]).items():
    GlobalHydra.instance().clear()
    os.environ.pop("HYDRA_FULL_ERROR", None)
    if full:
        os.environ["HYDRA_FULL_ERROR"] = "1"
    sys.argv = [prog, *overrides, "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            entry[prog]()
        code = 0
    except SystemExit as exc:
        code = exc.code
    except Exception:
        code, err = "raised", io.StringIO(traceback.format_exc())
    out[name] = [code, err.getvalue()]
print(json.dumps(out))
"""

ROUTES = {  # route -> (overrides of rlpref.run, what the one line must say)
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
OTHER_ENTRY_POINTS = {  # route -> (prog, overrides, what the one line must say)
    "synthetic option": ("rlpref.synthetic", ["dataset=nosuch"], "dataset=nosuch: no such option; choose one of: all"),
    "llm key": ("rlpref.llm.train", ["nosuch=1"], "nosuch: no such key"),
    "synthetic value": ("rlpref.synthetic", ["grid.n_trials=abc"], "grid.n_trials='abc': must be an integer >= 1"),
    "synthetic range": ("rlpref.synthetic", ["train.lr=0"], "train.lr=0: must be a number > 0"),
}


@pytest.fixture(scope="module")
def route_results(tmp_path_factory):
    """{route: (exit code, stderr)} of every route of ROUTES and OTHER_ENTRY_POINTS, and 'full trace'."""
    tmp = tmp_path_factory.mktemp("cli")
    where = [f"hydra.run.dir={tmp / 'run'}"]
    routes = {name: ["rlpref.run", [*overrides, *where, f"cache_dir={tmp / 'cache'}"], False]
              for name, (overrides, _) in ROUTES.items()}
    routes.update({name: [prog, [*overrides, *where], False] for name, (prog, overrides, _) in OTHER_ENTRY_POINTS.items()})
    routes["full trace"] = ["rlpref.run", ["teacher.sigma=abc", *where], True]
    proc = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(routes)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _one_line(code, err: str, prog: str, expected: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    assert expected in lines[0], lines[0]


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_user_errors_end_in_one_line_and_exit_2(route_results, route):
    _one_line(*route_results[route], "rlpref.run", ROUTES[route][1])


@pytest.mark.parametrize("route", sorted(OTHER_ENTRY_POINTS))
def test_the_other_hydra_entry_points_report_user_errors_in_one_line(route_results, route):
    prog, _, expected = OTHER_ENTRY_POINTS[route]
    _one_line(*route_results[route], prog, expected)


def test_hydra_full_error_keeps_the_traceback(route_results):
    code, err = route_results["full trace"]
    assert code == "raised" and "Traceback" in err and "teacher.sigma='abc'" in err


def test_a_shell_sees_one_line_and_status_2(tmp_path):
    args = [sys.executable, "-m", "rlpref.run", "teacher.sigma=abc", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == "rlpref.run: error: teacher.sigma='abc': must be a number >= 0"
