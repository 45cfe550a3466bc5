"""The conservation ledger: per-node sums, with the sum of handed-down relevance taken once."""

from __future__ import annotations

import torch

from clrp_widgets.engine.graph import Ledger


def test_relevance_handed_down_unchanged_is_summed_once():
    ledger = Ledger()
    ledger.start()
    R, rel, below = torch.rand(2, 5), torch.rand(2, 3, 4), torch.rand(2, 7)
    ledger.record("upper", R, (rel,))
    ledger.record("lower", rel, (below,))  # the same tensor arrives at the next node
    (_, out_u, in_u), (_, out_l, in_l) = ledger.records
    torch.testing.assert_close(out_u, R.sum(1))
    assert out_l is in_u  # reused, not summed again
    torch.testing.assert_close(out_l, rel.reshape(2, -1).sum(1))
    torch.testing.assert_close(in_l, below.sum(1))


def test_a_tensor_changed_in_place_or_another_tensor_is_summed_afresh():
    ledger = Ledger()
    ledger.start()
    rel = torch.rand(2, 6)
    ledger.record("upper", torch.rand(2, 4), (rel,))
    rel.mul_(3)  # changed since it was summed
    ledger.record("lower", rel, (None, torch.rand(2, 6), torch.rand(2, 6)))
    torch.testing.assert_close(ledger.records[1][1], rel.sum(1))
    same_values = rel.clone()  # equal values, another tensor: no reuse by identity
    ledger.record("other", same_values, (same_values,))
    assert ledger.records[2][1] is not ledger.records[1][2]
    handed = ledger.records[2][2]  # what "other" handed down: same_values itself
    ledger.start()  # a new pass forgets what was handed down
    assert ledger.records == []
    ledger.record("next pass", same_values, (torch.rand(2, 6),))
    assert ledger.records[0][1] is not handed


def test_operands_that_are_not_per_sample_leave_no_record():
    ledger = Ledger()
    ledger.start()
    ledger.record("broadcast", torch.rand(2, 3), (torch.rand(3),))
    assert ledger.records == []
