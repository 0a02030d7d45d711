"""What a researcher sees on opening TensorBoard on a sweep, in a real browser.

Runs a 2-job sweep (``experiment=digits_pairs``, k = 8 and 16, 300 steps), serves its folder
with TensorBoard and has headless Chromium draw the Scalars, HParams and Custom Scalars
tabs as they open, untouched, into docs/figures/tensorboard_<tab>.png (docs/monitoring.md
shows them). Needs the ``examples`` extra (digits) and a Chromium (Debian:
``apt-get install chromium``)::

    python scripts/tensorboard_screenshots.py [--sweep DIR] [--out docs/figures]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

TABS = ("scalars", "hparams", "custom_scalars")
SWEEP = ["-m", "experiment=digits_pairs", "model.k=8,16", "trainer.max_steps=300"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"tensorboard did not answer at {url} within {seconds:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep", type=Path, help="an existing sweep folder (default: run the 2-job sweep)")
    parser.add_argument("--out", type=Path, default=Path("docs/figures"))
    args = parser.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        raise SystemExit("no Chromium found (Debian: apt-get install chromium)")
    sweep = args.sweep
    if sweep is None:
        sweep = Path(tempfile.mkdtemp()) / "sweep"
        print("running the 2-job sweep into", sweep, flush=True)
        subprocess.run(["jl-train", *SWEEP, f"hydra.sweep.dir={sweep}"], check=True)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(sweep), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"http://localhost:{port}/")
        args.out.mkdir(parents=True, exist_ok=True)
        for tab in TABS:
            target = args.out / f"tensorboard_{tab}.png"
            command = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
            command += ["--window-size=1920,1080", "--virtual-time-budget=15000", f"--screenshot={target.resolve()}"]
            subprocess.run([*command, f"http://localhost:{port}/#{tab}"], check=True, capture_output=True)
            print("wrote", target, flush=True)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
