"""Shared test settings: deterministic, small, and CPU-only."""

import torch

torch.set_num_threads(2)
torch.manual_seed(0)
