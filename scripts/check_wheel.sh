#!/usr/bin/env bash
# The package as a user without the checkout gets it: build the wheel, install it into a clean
# virtual environment outside the checkout, and run jl-train and jl-embed from there. The
# configs must come from inside the installed package (Hydra's package search path).
#
#   bash scripts/check_wheel.sh          # CI runs it after the tests (.ci/run)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "check_wheel: building the wheel"
python3 -m pip wheel --quiet --no-deps --wheel-dir "$work/dist" "$repo"
rm -rf "$repo/build"
python3 -m venv "$work/venv"
echo "check_wheel: installing it into a clean venv"
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check torch==2.13.0 "$work"/dist/jl_lightning-*.whl \
    > "$work/pip.log" 2>&1 || { cat "$work/pip.log"; exit 1; }
cd "$work"   # nothing of the checkout is reachable from here
if "$work/venv/bin/python" -c "import jl_lightning, sys; sys.exit(jl_lightning.__file__.startswith('$repo'))"; then :; else
    echo "check_wheel: the venv imports jl_lightning from the checkout" >&2; exit 1
fi
"$work/venv/bin/jl-train" debug=fast hydra.run.dir="$work/run" > "$work/train.out" 2>&1 || { cat "$work/train.out"; exit 1; }
tail -n 1 "$work/train.out"
"$work/venv/bin/python" -c "import numpy as np; d = np.load('$work/run/embedding.npy').shape[1]; np.save('$work/new.npy', np.random.default_rng(0).normal(size=(7, d)))"
"$work/venv/bin/jl-embed" "$work/run" "$work/new.npy" "$work/embedded.npy"
"$work/venv/bin/python" - "$work" <<'PY'
import json, sys
from pathlib import Path
import numpy as np
work = Path(sys.argv[1])
embedded, matrix = np.load(work / "embedded.npy"), np.load(work / "run" / "embedding.npy")
new = np.load(work / "new.npy")
expected = new.astype(matrix.dtype) @ matrix.T
assert embedded.shape == expected.shape and np.allclose(embedded, expected, rtol=1e-5, atol=1e-6), "jl-embed differs"
assert json.loads((work / "run" / "summary.json").read_text())["k"] == matrix.shape[0]
print(f"check_wheel: jl-train and jl-embed ran from the installed wheel ({matrix.shape[0]}x{matrix.shape[1]} map)")
PY
