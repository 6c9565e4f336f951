import math

import pytest
import torch

from audit.errors import ModelError
from audit.models import DBVAE, ModelConfig, build_model, dbvae_loss, reparameterize


@pytest.mark.parametrize("size", [16, 32, 64])
def test_shapes_follow_image_size(size):
    model = build_model(ModelConfig(image_size=size, latent_dim=7))
    out = model(torch.rand(3, 3, size, size))
    assert out["logit"].shape == (3,)
    assert out["mu"].shape == out["logvar"].shape == (3, 7)
    assert out["recon"].shape == (3, 3, size, size)


def test_lab_filter_sizes():
    model = DBVAE(ModelConfig())
    convs = [m.out_channels for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs == [12, 24, 48, 72]
    assert model.encoder.head.out_features == 1 + 2 * 100


def test_bad_config_names_the_value():
    with pytest.raises(ModelError, match="multiple of 16"):
        ModelConfig(image_size=30)
    with pytest.raises(ModelError, match="unknown method 'vae'"):
        ModelConfig(method="vae")


def test_reparameterize_uses_half_logvar():
    torch.manual_seed(0)
    mu, logvar = torch.zeros(200_000, 1), torch.full((200_000, 1), math.log(4.0))
    z = reparameterize(mu, logvar)
    assert z.std().item() == pytest.approx(2.0, rel=0.02)   # sigma = exp(0.5 * log 4) = 2


def test_loss_indicator_is_per_sample():
    x = torch.zeros(2, 3, 16, 16)
    out = {"logit": torch.tensor([0.0, 0.0]), "mu": torch.tensor([[1.0], [3.0]]),
           "logvar": torch.tensor([[0.0], [0.0]]), "recon": torch.stack([torch.full((3, 16, 16), 0.5),
                                                                         torch.full((3, 16, 16), 0.9)])}
    y = torch.tensor([1, 0])
    parts = dbvae_loss(out, x, y, kl_weight=0.1)
    bce = math.log(2.0)
    # Only sample 0 (positive) pays reconstruction 0.5 and KL 0.5 * mu^2 = 0.5.
    expected = (bce + 0.5 + 0.1 * 0.5 + bce) / 2
    assert parts["loss"].item() == pytest.approx(expected, rel=1e-6)
    assert parts["recon"].item() == pytest.approx(0.5)
    assert parts["kl"].item() == pytest.approx(0.5)


def test_loss_of_standard_model_is_bce():
    out = {"logit": torch.tensor([10.0, -10.0])}
    parts = dbvae_loss(out, torch.zeros(2, 3, 16, 16), torch.tensor([1, 0]), 0.1)
    assert parts["loss"].item() == pytest.approx(0.0, abs=1e-4)
    assert set(parts) == {"loss", "bce"}


def test_the_adversarial_decoder_trains_its_discriminator_apart(tiny_dataset, tmp_path):
    import pytest
    import torch

    from audit.errors import ModelError
    from audit.models import ModelConfig, PatchDiscriminator, build_model
    from audit.pipeline import train_model
    from audit.training import TrainConfig
    small = dict(image_size=16, latent_dim=8, n_filters=4, dense_units=32)
    cfg = ModelConfig(decoder="adversarial", **small)
    assert PatchDiscriminator(cfg)(torch.zeros(3, 3, 16, 16)).shape == (3, 2, 2)
    torch.manual_seed(0)
    before = {k: v.clone() for k, v in build_model(cfg).state_dict().items()}
    result = train_model(tiny_dataset, tmp_path / "m", cfg, TrainConfig(epochs=1, batch_size=8, seed=0),
                         progress=False)
    after = result.model.state_dict()
    moved = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k].cpu())}
    assert moved == {"encoder", "decoder", "picture_decoder", "discriminator"}
    record = result.history[0]
    assert record["adv_decoder"] > 0 and record["adv_discriminator"] > 0 and record["picture_recon"] > 0
    assert "recon" in record
    # Plain models and standard classifiers have none; the option is checked.
    assert not hasattr(build_model(ModelConfig(**small)), "discriminator")
    with pytest.raises(ModelError, match="with method dbvae"):
        ModelConfig(method="standard", decoder="adversarial")
    with pytest.raises(ModelError, match="unknown decoder"):
        ModelConfig(decoder="sharp")
    with pytest.raises(ModelError, match="adversarial_weight"):
        ModelConfig(decoder="adversarial", adversarial_weight=float("nan"))


def test_the_adversarial_step_gives_each_part_its_own_gradient():
    import copy

    import torch

    from audit.models import ModelConfig, adversarial_losses, adversarial_rows, build_model, dbvae_loss
    from audit.steps import adversarial_step
    torch.manual_seed(0)
    cfg = ModelConfig(decoder="adversarial", image_size=16, latent_dim=8, n_filters=4, dense_units=32)
    model = build_model(cfg)
    reference = copy.deepcopy(model)
    x, y = torch.rand(6, 3, 16, 16), torch.tensor([1, 0, 1, 0, 1, 0])
    rows = adversarial_rows(model, y)
    assert rows.tolist() == [0, 2, 4]

    def losses(net):
        torch.manual_seed(1)  # the same noise and prior draws for both
        net.seed_prior_noise(1)
        out = net(x, fake_rows=rows)
        return dbvae_loss(out, x, y, cfg.kl_weight), *adversarial_losses(net, out, x, rows)
    # Expected: the discriminator's gradient from its loss alone, every other parameter's from the model's
    # loss plus the picture decoder's reconstruction and weighted adversarial terms alone.
    parts, picture_l1, g_loss, d_loss = losses(reference)
    disc = list(reference.discriminator.parameters())
    others = [p for name, p in reference.named_parameters() if not name.startswith("discriminator.")]
    expected = list(torch.autograd.grad(parts["loss"] + picture_l1 + cfg.adversarial_weight * g_loss, others,
                                        retain_graph=True, allow_unused=True))
    expected += list(torch.autograd.grad(d_loss, disc))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    seen = []
    real_step = optimizer.step

    def spy():
        seen.append([None if p.grad is None else p.grad.clone() for p in model.parameters()])
        real_step()
    optimizer.step = spy
    adversarial_step(model, optimizer, *losses(model), cfg.adversarial_weight)
    assert len(seen) == 1
    names = [n for n, _ in model.named_parameters()]
    got = dict(zip(names, seen[0]))
    ordered = ([got[n] for n in names if not n.startswith("discriminator.")]
               + [got[n] for n in names if n.startswith("discriminator.")])
    for want, have in zip(expected, ordered, strict=True):
        assert (want is None) == (have is None)
        if want is not None:
            assert torch.allclose(want, have, atol=1e-6)
    assert any(g is not None and g.abs().sum() > 0 for n, g in got.items() if n.startswith("discriminator."))


def test_the_picture_decoders_terms_reach_it_alone():
    import torch

    from audit.models import ADVERSARIAL_BATCH, ModelConfig, adversarial_losses, adversarial_rows, build_model
    torch.manual_seed(0)
    model = build_model(ModelConfig(decoder="adversarial", image_size=16, latent_dim=8, n_filters=4, dense_units=32))
    x, y = torch.rand(12, 3, 16, 16), torch.tensor([1, 0] * 6)
    rows = adversarial_rows(model, y)
    out = model(x, fake_rows=rows)
    # Every positive rebuilt (up to PICTURE_BATCH); the discriminator judges ADVERSARIAL_BATCH of them and as
    # many prior draws.
    assert out["picture_recon"].shape == (6, 3, 16, 16) and out["fake"].shape == (2 * ADVERSARIAL_BATCH, 3, 16, 16)
    picture_l1, g_loss, _ = adversarial_losses(model, out, x, rows)
    (picture_l1 + g_loss).backward()
    # The latent space the audit reads and the VAE's decoder are left to the classifier's and the VAE's losses.
    assert all(p.grad is None for p in [*model.encoder.parameters(), *model.decoder.parameters()])
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.picture_decoder.parameters())


def test_an_adversarial_run_trains_the_rest_of_the_model_as_a_plain_one(tiny_dataset, tmp_path):
    import torch

    from audit.inference import decode
    from audit.models import ModelConfig
    from audit.pipeline import train_model
    from audit.training import TrainConfig
    small = dict(image_size=16, latent_dim=8, n_filters=4, dense_units=32)
    trained = {}
    for decoder in ("plain", "adversarial"):
        trained[decoder] = train_model(tiny_dataset, tmp_path / decoder, ModelConfig(decoder=decoder, **small),
                                       TrainConfig(epochs=2, batch_size=8, seed=0), progress=False).model
    plain, adversarial = (trained[k].state_dict() for k in ("plain", "adversarial"))
    assert set(adversarial) - set(plain) and all(k.startswith(("picture_decoder.", "discriminator."))
                                                 for k in set(adversarial) - set(plain))
    for key, value in plain.items():
        torch.testing.assert_close(adversarial[key], value, rtol=0, atol=1e-6, msg=key)
    # Pictures come from the picture decoder.
    z = torch.zeros(2, 8).numpy()
    pictures = decode(trained["adversarial"], z, torch.device("cpu"))
    with torch.no_grad():
        expected = (trained["adversarial"].picture_decoder(torch.zeros(2, 8)).clamp(0, 1) * 255).round().byte()
    assert (pictures == expected.permute(0, 2, 3, 1).numpy()).all()


def test_a_model_saved_with_one_adversarial_decoder_draws_with_it(tmp_path):
    import torch

    from audit.checkpoint import model_from_state
    from audit.models import ModelConfig, build_model
    cfg = ModelConfig(decoder="adversarial", image_size=16, latent_dim=8, n_filters=4, dense_units=32)
    torch.manual_seed(0)
    older = {k: v for k, v in build_model(cfg).state_dict().items() if not k.startswith("picture_decoder.")}
    model = model_from_state({"model": older, "model_config": cfg.to_dict()}, tmp_path / "model.pt")
    for key, value in model.picture_decoder.state_dict().items():
        assert torch.equal(value, older["decoder." + key])


def test_the_picture_decoders_figures_average_over_the_steps_it_takes(tiny_dataset, tmp_path, monkeypatch):
    import pytest
    import torch

    import audit.models as models
    import audit.steps as steps
    from audit.models import ModelConfig
    from audit.pipeline import train_model
    from audit.training import TrainConfig
    taken = []

    def fixed(model, optimizer, parts, picture_l1, g_loss, d_loss, weight):
        taken.append(1)
        optimizer.zero_grad()
        return {**parts, "picture_recon": torch.tensor(0.25), "adv_decoder": torch.tensor(1.0),
                "adv_discriminator": torch.tensor(0.5)}
    monkeypatch.setattr(steps, "adversarial_step", fixed)
    monkeypatch.setattr(models, "PICTURE_EVERY", 3)
    result = train_model(tiny_dataset, tmp_path / "m", ModelConfig(decoder="adversarial", image_size=16, latent_dim=8,
                                                                   n_filters=4, dense_units=32),
                         TrainConfig(epochs=1, batch_size=8, seed=0), progress=False)
    record = result.history[0]
    # 6 steps: the picture decoder takes steps 3 and 6 (batches without a positive aside); its figures are
    # the means over those, not over every step.
    assert 1 <= len(taken) <= 2
    assert record["picture_recon"] == pytest.approx(0.25) and record["adv_decoder"] == pytest.approx(1.0)
    assert record["adv_discriminator"] == pytest.approx(0.5) and record["batches"] == 6
