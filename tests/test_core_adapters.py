"""register_adapter: a project's own attention class becomes injectable, with nothing else changed."""
import copy

import pytest
import torch
import torch.nn as nn

from dropkey_core import (DropKeyAttentionMixin, attention_layers, inject_dropkey, register_adapter,
                          sample_method_keep_mask)

from attention_inputs import paper_reference


class ProjectAttention(nn.Module):
    """A project's own multi-head self-attention, unknown to dropkey_core."""

    def __init__(self, dim=16, num_heads=2):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def split(self, x):
        batch, tokens, dim = x.shape
        return self.qkv(x).reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)

    def forward(self, x):
        q, k, v = self.split(x)
        weights = ((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((weights @ v).transpose(1, 2).flatten(2))


@register_adapter(f"{__name__}.ProjectAttention")
def _project_attention_forward(self, x):
    q, k, v = self.split(x)
    out, _ = self._attend(q, k, v)
    return self.proj(out.transpose(1, 2).flatten(2))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = ProjectAttention()
        self.mlp = nn.Linear(16, 16)

    def forward(self, x):
        return self.mlp(x + self.attn(x))


def test_registered_class_is_swapped_with_weights_unchanged_and_drops_in_training():
    torch.manual_seed(0)
    model = nn.Sequential(Block(), Block()).eval()
    original = copy.deepcopy(model)
    state = {key: value.clone() for key, value in model.state_dict().items()}
    attention = model[0].attn

    layers = inject_dropkey(model, 0.5, schedule="linear_decrease")

    assert [(l.name, l.type, l.method) for l in layers] == [
        ("0.attn", f"{__name__}.ProjectAttention", "dropkey"),
        ("1.attn", f"{__name__}.ProjectAttention", "dropkey")]
    assert [l.drop_ratio for l in layers] == pytest.approx([0.5, 0.0])
    assert model[0].attn is attention  # the same object, its class swapped
    assert isinstance(attention, ProjectAttention) and isinstance(attention, DropKeyAttentionMixin)
    assert list(model.state_dict()) == list(state)
    assert all(torch.equal(model.state_dict()[key], value) for key, value in state.items())

    x = torch.randn(3, 9, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), original(x))
        model.train()
        torch.manual_seed(4)
        keep = sample_method_keep_mask("dropkey", (3, 2, 9, 9), 0.5)
        torch.manual_seed(4)
        trained = model[0].attn(x)
    assert not keep.all() and keep.any(-1).all(), "the check needs drops and no empty row"
    q, k, v = original[0].attn.split(x)
    expected = original[0].attn.proj(paper_reference(q, k, v, keep).transpose(1, 2).flatten(2))
    torch.testing.assert_close(trained, expected)
    assert attention_layers(model) == layers
