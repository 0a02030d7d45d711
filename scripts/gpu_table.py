"""One table of what ``bash scripts/gpu_checks.sh OUT`` measured, read from OUT's logs.

    python scripts/gpu_table.py outputs/gpu          # markdown on stdout (gpu_checks.sh keeps it as table.md)

Rows: the device; the GPU tests (passed / failed / skipped); each probe of bench_scale.py (the
certifying and the refresh pass, a training step, memory beyond the data); the first 500
steps of the default run at 10^6 points (its wall time, fit time, every exact pass with its
seconds, epsilon); bench_ddp.py --gpu's last lines. A step that did not run or failed says so
in its row instead of a figure.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

PASS_LINE = re.compile(r"step (\d+): exact pass over (\d+) pairs in ([\d.]+) s, epsilon ([\d.e+-]+)")


def read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def rows(out: Path) -> list[tuple[str, str]]:
    found = [("device", read(out / "device.txt").strip() or "not recorded")]
    tests = read(out / "pytest_gpu.log").strip().splitlines()
    found.append(("GPU tests (tests/test_gpu.py)", tests[-1].strip("= ") if tests else "did not run"))
    probes = [ast.literal_eval(line) for line in read(out / "scale.log").splitlines() if line.startswith("{'n'")]
    for probe in probes:
        found.append(
            (
                f"n = {probe['n']:.0e}: certifying / refresh pass, step",
                f"{probe['certify_s']:.1f} s / {probe['refresh_s']:.1f} s, {probe['step_s'] * 1e3:.1f} ms "
                f"({probe['extra_mb']:.0f} MB beyond the data)",
            )
        )
    if not probes:
        found.append(("exact pass and step (bench_scale.py)", "did not run or failed: scale.log"))
    log = read(out / "default_1e6_train.log") or read(out / "default_1e6.log")
    passes = PASS_LINE.findall(log)
    for step, pairs, seconds, eps in passes:
        found.append(
            (
                f"10^6 default run, exact pass at step {step}",
                f"{float(seconds):.1f} s over {int(pairs):.2e} pairs, epsilon {float(eps):.4f}",
            )
        )
    try:
        summary = json.loads(read(out / "default_1e6_summary.json"))
        found.append(
            (
                "10^6 default run, 500 steps",
                f"fit {summary.get('fit_seconds', float('nan')):.0f} s, certified epsilon "
                f"{summary.get('best_distortion', float('nan')):.4f}, steps {summary.get('steps')}",
            )
        )
    except ValueError:
        found.append(("10^6 default run, 500 steps", "did not finish: default_1e6.log"))
    ddp = [line for line in read(out / "ddp_gpu.log").splitlines() if line.strip()]
    found.append(("bench_ddp.py --gpu", " / ".join(ddp[-2:])[:200] if ddp else "did not run"))
    return found


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_dir():
        print("gpu_table.py: error: give the folder gpu_checks.sh wrote (OUT_DIR)", file=sys.stderr)
        return 2
    print("| check | result |\n|---|---|")
    for name, value in rows(Path(args[0])):
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
