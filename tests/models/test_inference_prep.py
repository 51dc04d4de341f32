import pytest
import torch
from model_helpers import make_nontrivial, random_pair
from torch import nn

from fume.models import create_model, list_models
from fume.models.prepare import fold_batch_norm, prepare_for_inference


@pytest.mark.parametrize("name", list(list_models()))
def test_prepared_model_computes_the_same_outputs(name):
    model = make_nontrivial(create_model(name)).eval()
    prepared = prepare_for_inference(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in prepared.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    co2, ch4 = random_pair(2, 64, 96)
    mask = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    with torch.no_grad():
        expected, got = model(co2, ch4, mask), prepared(co2, ch4, mask)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-4)


def test_fold_batch_norm_refuses_a_training_model():
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norm(create_model("fastscnn").train())
