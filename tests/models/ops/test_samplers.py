import torch

from framework.models.ops.assigners import IGNORE, NEGATIVE
from framework.models.ops.samplers import RandomSampler, random_subset


def test_random_subset_takes_quota_per_row_from_candidates_only():
    torch.manual_seed(0)
    cand = torch.rand(4, 50) > 0.5
    quota = torch.tensor([0, 3, 10, 100])
    sel = random_subset(cand, quota)
    assert not (sel & ~cand).any()
    assert sel.sum(1).tolist() == [0, 3, 10, int(cand[3].sum())]
    bounded = random_subset(cand, quota.clamp(max=10), max_quota=10)  # topk of 10 instead of a sort of 50
    assert not (bounded & ~cand).any() and bounded.sum(1).tolist() == [0, 3, 10, 10]


def test_random_subset_is_uniform_over_the_candidates():
    torch.manual_seed(0)
    cand = torch.zeros(1, 40, dtype=torch.bool)
    cand[0, 5:25] = True
    counts = sum(random_subset(cand, torch.tensor([5]), max_quota=8).float() for _ in range(4000))
    assert counts[0, ~cand[0]].sum() == 0
    freq = counts[0, cand[0]] / 4000  # each of 20 candidates is drawn with probability 5/20
    assert (freq - 0.25).abs().max() < 0.04


def test_sampler_balances_positives_and_negatives_per_image():
    torch.manual_seed(0)
    assigned = torch.full((2, 1000), NEGATIVE)
    assigned[0, :300] = 0  # many positives: capped at num * pos_fraction
    assigned[1, :10] = 1  # few positives: negatives fill the rest
    assigned[:, 990:] = IGNORE
    pos, neg = RandomSampler(256, 0.5).sample(assigned)
    assert pos.sum(1).tolist() == [128, 10] and neg.sum(1).tolist() == [128, 246]
    assert not (pos & (assigned < 0)).any() and not (neg & (assigned != NEGATIVE)).any()
    # uniform: the positives of image 0 come from all over its 300 candidates
    assert pos[0, :150].sum() > 40 and pos[0, 150:300].sum() > 40
