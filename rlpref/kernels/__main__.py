"""``python -m rlpref.kernels build|status``: compile the optional rr CPU kernel, or say whether it is in use."""

from __future__ import annotations

import argparse
import sys
import time

from rlpref import kernels


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rlpref.kernels", description=__doc__)
    ap.add_argument("command", choices=["build", "status"])
    ap.add_argument("--optional", action="store_true",
                    help="build: on failure print a note and exit 0 (rr then runs on the eager path)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.command == "status":
        module = kernels.load()
        state = "loaded" if module is not None else f"not in use, rr runs eagerly: {kernels.load_error()}"
        print(f"rr CPU kernel: {state}; dir {kernels.kernel_dir()}")
        return 0
    t0 = time.perf_counter()
    try:
        path = kernels.build(verbose=args.verbose)
    except Exception as exc:  # a missing compiler, headers or ninja: the eager path still works
        last = (str(exc).strip().splitlines() or [""])[-1]
        msg = f"could not build the rr CPU kernel ({type(exc).__name__}: {last})"
        if args.optional:
            print(f"note: {msg}; rr will use the eager path (slower on CPU, same results)", file=sys.stderr)
            return 0
        print(f"error: {msg}", file=sys.stderr)
        return 1
    print(f"rr CPU kernel ready: {path} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
