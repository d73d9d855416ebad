"""D_channel (DMRNet Eq. 14–15): cosine distance between channels over all observations."""

import pytest
import torch

from mmrobust.analysis.diversity import channel_distance, diversity_values


def test_hand_computed_channels_of_a_feature_map():
    # 2 samples, 3 channels, 2 positions: channel rows over the 4 observations (sample, position)
    f = torch.zeros(2, 3, 1, 2)
    f[:, 0] = torch.tensor([[1.0, 0.0]])  # row 0: [1, 0, 1, 0]
    f[:, 1] = torch.tensor([[0.0, 2.0]])  # row 1: [0, 2, 0, 2]  orthogonal to row 0
    f[:, 2] = torch.tensor([[-3.0, 0.0]])  # row 2: −3 · row 0
    expected = torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, 1.0], [2.0, 1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(channel_distance(f), expected)
    assert sorted(diversity_values(f).tolist()) == pytest.approx([1.0, 1.0, 1.0, 1.0, 2.0, 2.0])  # off-diagonal


def test_inter_modality_vectors_and_dead_channels():
    a = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])  # channel 1 and 2 dead (zero everywhere): dropped
    b = torch.tensor([[1.0, 1.0], [1.0, -1.0]])  # over the 2 samples: [1, 1] and [1, −1]
    torch.testing.assert_close(channel_distance(a, b), torch.tensor([[0.0, 1.0]], dtype=torch.float64))
    assert diversity_values(a, b).shape == (2,)
    with pytest.raises(ValueError, match="same observations"):
        channel_distance(torch.zeros(2, 3, 2, 2), torch.zeros(2, 3, 4, 4))
