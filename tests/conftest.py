"""Shared test settings: deterministic, small, and CPU-only.

``make test`` runs the suite on two pytest-xdist workers (one file per worker at a time); each
worker then gets one torch thread, so the two never oversubscribe a 2-core machine.
"""

import os

import torch

torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)
torch.manual_seed(0)
