"""Repository-wide pytest setup: the notebooks under ``notebooks/`` run in quick mode.

``python -m pytest`` also executes the notebooks (nbmake, see ``[tool.pytest.ini_options]``); their
kernels inherit this process's environment, so ``MEDGEN_QUICK=1`` makes each one use tiny sizes and
a handful of steps. Run ``MEDGEN_QUICK=0 python -m pytest notebooks`` to execute them at full size.
"""

import os

os.environ.setdefault("MEDGEN_QUICK", "1")
