"""Choose MuJoCo's off-screen GL before any test module imports MuJoCo.

``rlpref.video.headless_gl`` must run before the first ``import mujoco``; without this, the rendering test
passes only when it happens to run before every other test that builds a MuJoCo env.
"""

from rlpref.video import headless_gl

headless_gl()
