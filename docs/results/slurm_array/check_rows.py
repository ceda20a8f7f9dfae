"""Compose and validate every row of a sweep table without running it; print each run's budget and the keys
of its shared stages, then how many distinct artefacts of each stage the table makes.

    scripts/slurm_paper_sigma25.sh rows > rows.txt && python docs/results/slurm_array/check_rows.py rows.txt
"""

import collections
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from rlpref.control.pipeline import stage_keys, validate

CONF = Path(__file__).resolve().parents[3] / "conf"


def main(table: str) -> None:
    rows = [line.split() for line in Path(table).read_text().splitlines()]
    keys = collections.defaultdict(set)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for row in rows:
            spec = validate(OmegaConf.to_container(compose("config", overrides=row), resolve=True))
            k, b = stage_keys(spec), spec.budget
            for stage, key in k.items():
                keys[stage].add(key)
            protocol = spec.protocol.name if spec.run.reward != "oracle" else "-"
            print(spec.env.id, spec.loss, spec.run.reward, spec.teacher.sigma, spec.seed, protocol, b.source_steps,
                  b.agent_steps, b.n_feedback, *(k.get(s, "-")[:6] for s in ("source", "segments", "feedback")))
    print({stage: len(v) for stage, v in keys.items()})


if __name__ == "__main__":
    main(sys.argv[1])
