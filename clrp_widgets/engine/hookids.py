"""Hook ids that never collide with the hooks a model already carries.

torch numbers hook handles with one process-wide counter (``RemovableHandle.next_id``), but an
unpickled module brings its hook dictionaries along with their old ids and does not advance that
counter. In a fresh process (a dask worker that received a pickled model) the engine's first
hook would get id 0, replace the user's hook stored under 0 for the whole pass, and removing it
afterwards would delete the user's hook for good.
"""

from __future__ import annotations

from torch import nn
from torch.utils.hooks import RemovableHandle

#: torch's per-module hook tables (``_forward_hooks``, ``_state_dict_hooks``, ...)
HOOK_TABLES = tuple(name for name in vars(nn.Module()) if "hooks" in name)


def reserve_hook_ids(model: nn.Module) -> None:
    """Advance torch's hook counter past every hook id that ``model``'s modules carry.

    Call it before registering hooks on ``model``; hold the model's lock around both.
    """
    highest = -1
    for module in model.modules():
        attrs = vars(module)
        for name in HOOK_TABLES:
            table = attrs.get(name)
            if isinstance(table, dict) and table:
                highest = max([highest, *(k for k in table if isinstance(k, int))])
    RemovableHandle.next_id = max(RemovableHandle.next_id, highest + 1)
