"""Process-wide settings every test runs under, as the CLI runs.

``rlpref.video.headless_gl`` must run before the first ``import mujoco``; without this, the rendering test
passes only when it happens to run before every other test that builds a MuJoCo env. Torch and BLAS are
pinned to one thread through the same :func:`rlpref.runtime.pin_threads` the entry points call: on two
cores, small torch ops spread over both threads ran the end-to-end tests many times slower whenever
anything else shared the machine.
"""

import pytest

from rlpref.video import headless_gl

headless_gl()


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    from rlpref.runtime import pin_threads

    pin_threads(1)
