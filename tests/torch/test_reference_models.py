"""The trained reference models load and classify the held-out digits."""
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
pytest.importorskip("sklearn", reason="scikit-learn (the digits data) is a test requirement")

from qkernels.torch.reference_models import MODELS, accuracy, digits, load  # noqa: E402

pytestmark = pytest.mark.torch

# held-out accuracy measured when the weights were trained (scripts/train_reference_models.py)
MIN_ACCURACY = {"darknet": 0.99, "resnet": 0.99, "mobilenetv2": 0.98, "mlp": 0.94}


@pytest.mark.parametrize("name", list(MODELS))
def test_reference_model_accuracy(name):
    (_, _), (x, y) = digits()
    assert len(y) == 355
    net = load(name)
    assert accuracy(net, x, y) >= MIN_ACCURACY[name]


def test_unknown_model_name():
    from qkernels.torch.reference_models import build

    with pytest.raises(ValueError, match="darknet"):
        build("vgg")
