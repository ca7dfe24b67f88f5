"""Run the shared harness's ``runner.py`` for one system, with our adapter added to it.

Usage (with the system's virtualenv python): ``python bench/peer_runner.py <system>``.

``runner.py`` imports ``adapters.<name>`` from the shared directory. The peers'
adapters live there; ours lives in ``bench/adapters/`` (it belongs to this
project and changes with it), so it is registered as ``adapters.durable_jobs``
before ``runner.py`` runs, unchanged, as ``__main__``.
"""

from __future__ import annotations

import importlib.util
import runpy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SHARED


def main() -> None:
    system = sys.argv[1]
    runner = SHARED / "runner.py"
    if not runner.exists():
        sys.exit(f"the shared peer harness is missing: {runner} (set BENCH_PEERS_DIR)")
    sys.path.insert(0, str(SHARED))
    import adapters  # noqa: F401 - the shared package; ours joins it below

    ours = Path(__file__).resolve().parent / "adapters" / f"{system}.py"
    if ours.exists():
        spec = importlib.util.spec_from_file_location(f"adapters.{system}", ours)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    sys.argv = [str(runner), system]
    runpy.run_path(str(runner), run_name="__main__")


if __name__ == "__main__":
    main()
