"""The base test every registered network must pass: registering a model is all it takes.

Each model is built at its paper's default in_channels (1 for CT, 3 for X-ray) and 2 classes
and run in eval mode on one 256 x 256 image. Gradients and the state_dict round trip do not
depend on the image size, so they are checked on a 64 x 64 image, 16x cheaper on the CPU
(models with a fixed ``img_size``, the TransUNets, are built for it).
"""

import io
import re
from types import SimpleNamespace

import pytest
import torch
from torch.nn import functional as F

from lightning_modules.nets import create_model, list_models, model_entry

SIZE = 256
SMALL = 64
ODD_SIZE = 250  # divisible by 2 only: no encoder-decoder's stride divides it
# the heaviest on 2 CPU cores (10-20 s each; 30-65 GMACs or 105 M parameters): `make test-slow`
SLOW = {"transunet", "dense_aspp", "deeplabv3plus_resnet101", "ms_scse_fc_densenet"}


def build(name: str, seed: int, size: int = SIZE):
    """``name`` at its paper's channels, seeded; built for ``size`` if its builder asks."""
    entry = model_entry(name)
    torch.manual_seed(seed)
    kwargs = {"img_size": size} if entry.fixed_size else {}
    in_channels = entry.defaults.get("in_channels", 1)
    classes = entry.defaults.get("classes", 2)
    model = create_model(name, in_channels=in_channels, classes=classes, **kwargs)
    return model.eval(), in_channels, classes  # eval: running BN statistics, deterministic


def image(in_channels: int, size: int) -> torch.Tensor:
    return torch.rand(1, in_channels, size, size, generator=torch.Generator().manual_seed(0))


@pytest.fixture(
    scope="module",
    params=[pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in list_models()],
)
def case(request):
    name = request.param
    model, in_channels, classes = build(name, seed=0)
    with torch.no_grad():
        logits = model(image(in_channels, SIZE))
    small = build(name, seed=0, size=SMALL)[0] if model_entry(name).fixed_size else model
    return SimpleNamespace(
        name=name, model=model, small=small, logits=logits, in_channels=in_channels, classes=classes
    )


def test_forward_gives_finite_logits_per_class_and_pixel(case):
    assert case.logits.shape == (1, case.classes, SIZE, SIZE)
    assert torch.isfinite(case.logits).all()


def test_backward_reaches_every_trainable_parameter(case):
    logits = case.small(image(case.in_channels, SMALL))
    target = torch.randint(0, case.classes, (1, SMALL, SMALL), generator=torch.Generator())
    F.cross_entropy(logits, target).backward()
    trainable = [(n, p) for n, p in case.small.named_parameters() if p.requires_grad]
    assert trainable
    unreached = [n for n, p in trainable if p.grad is None]
    assert not unreached, f"{case.name}: no gradient for {unreached[:5]}"
    broken = [n for n, p in trainable if not torch.isfinite(p.grad).all()]
    assert not broken, f"{case.name}: non-finite gradient in {broken[:5]}"


def test_size_not_divisible_by_the_stride_is_refused_clearly_or_handled(case):
    try:
        with torch.no_grad():
            logits = case.model(image(case.in_channels, ODD_SIZE))
    except (ValueError, RuntimeError) as error:  # refused: the message names size and rule
        assert str(ODD_SIZE) in str(error), f"{case.name}: {error}"
        assert re.search(r"divisible|multiple", str(error), re.IGNORECASE), f"{case.name}: {error}"
    else:  # handled: the logits still cover every input pixel
        assert logits.shape == (1, case.classes, ODD_SIZE, ODD_SIZE)


def test_state_dict_round_trip_gives_identical_outputs(case):
    buffer = io.BytesIO()
    torch.save(case.small.state_dict(), buffer)
    buffer.seek(0)
    fresh = build(case.name, seed=1, size=SMALL)[0]
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    x = image(case.in_channels, SMALL)
    with torch.no_grad():
        assert torch.equal(fresh(x), case.small(x))


def test_unknown_name_lists_the_registered_models():
    with pytest.raises(KeyError, match="no_such_net") as error:
        create_model("no_such_net")
    assert all(name in str(error.value) for name in list_models())


def test_every_entry_declares_its_paper_and_defaults():
    assert {"unet", "efa_net", "transunet", "transunet_lite"} <= set(list_models("ct"))
    for name in list_models():
        entry = model_entry(name)
        assert entry.paper in {"ct", "xray", ""}, name
        assert set(entry.defaults) <= {"in_channels", "classes"}, name
        assert entry.description, name


def meta_forward(name: str, side: int, built_for: int | None = None) -> torch.Tensor:
    """Logits of ``name`` on one ``side x side`` zero image, on the meta device (shapes only);
    a fixed-size network is built for ``built_for`` (default ``side``)."""
    entry = model_entry(name)
    in_channels = entry.defaults.get("in_channels", 1)
    kwargs = {"img_size": built_for or side} if entry.fixed_size else {}
    with torch.device("meta"):
        model = create_model(name, in_channels=in_channels, **kwargs).eval()
        with torch.no_grad():
            return model(torch.zeros(1, in_channels, side, side))


@pytest.mark.parametrize("name", list_models())
def test_entry_input_size_facts_are_the_rules_the_network_enforces(name):
    entry = model_entry(name)
    multiple = entry.size_multiple
    side = multiple * ((SMALL // multiple) | 1)  # an odd multiple: twice the rule would fail
    assert meta_forward(name, side).shape[-2:] == (side, side)
    if multiple > 1:
        with pytest.raises((ValueError, RuntimeError), match=r"divisible|multiple"):
            meta_forward(name, side + multiple // 2)
    if entry.fixed_size:  # built for one size: another multiple is refused too
        with pytest.raises(ValueError, match=f"{side} x {side}"):
            meta_forward(name, side + multiple, built_for=side)
