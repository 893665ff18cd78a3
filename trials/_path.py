"""Make the repository root importable however the trial is started.

NNI runs `trialCommand` from `trialCodeDirectory` (a copy of it on remote machines) and users run
`python trials/prune.py` from the shell; both put `trials/` on sys.path, not the root with `common/`.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
