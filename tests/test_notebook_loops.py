"""The training loops written out in the notebooks give the same history as the helpers' loops, on a seed."""

from __future__ import annotations

import copy
import time

import numpy as np
import pytest
import torch
from notebook_code import notebook_definition
from torch import nn

from helpers import data, models, runtime, torch_data, torch_train
from helpers.progress import progress_bar


def test_notebook_05_loop_matches_torch_train_fit():
    images = data.make_synthetic(40, 10, seed=0)
    x, y = images.x_train[images.y_train < 3], images.y_train[images.y_train < 3]
    device = torch.device("cpu")
    namespace = {"nn": nn, "torch": torch, "time": time, "progress_bar": progress_bar, "torch_train": torch_train,
                 "runtime": runtime, "device": device}
    train = notebook_definition("05_pytorch_finetuning", "train", namespace)
    torch.manual_seed(0)
    start = torch_train.to_device(models.course_net(3, widths=(8, 8, 16, 16)), device)
    frozen_part = ["stem"]

    def run(loop) -> list[dict]:
        """Train a copy of the same start for 3 epochs with the given loop."""
        model = copy.deepcopy(start)
        frozen = [getattr(model.features, name) for name in frozen_part]
        for module in frozen:
            module.requires_grad_(False)
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9,
                                    nesterov=True, weight_decay=5e-4)
        train_loader = torch_data.make_loader(x, y, train=True, batch_size=16, seed=1)
        val_loader = torch_data.make_loader(x[:30], y[:30], train=False, batch_size=16)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.05, epochs=3,
                                                        steps_per_epoch=len(train_loader))
        return loop(model, train_loader, val_loader, optimizer, scheduler, frozen)

    ours = run(lambda model, tl, vl, opt, sched, frozen: train(model, tl, vl, opt, sched, 3, nn.CrossEntropyLoss(),
                                                               frozen))
    helpers = run(lambda model, tl, vl, opt, sched, frozen: torch_train.fit(
        model, tl, vl, opt, 3, nn.CrossEntropyLoss(), device, scheduler=sched, frozen=frozen))
    assert len(ours) == len(helpers) == 3
    for mine, theirs in zip(ours, helpers, strict=True):
        assert mine.keys() == theirs.keys()
        for key in mine.keys() - {"seconds"}:
            assert mine[key] == pytest.approx(theirs[key], abs=1e-6), key
    assert np.isfinite([row["train_loss"] for row in ours]).all()


def test_notebook_04_train_step_matches_keras_fit():
    from helpers import keras_models

    keras = keras_models.import_keras("tensorflow")
    tf = runtime.import_tensorflow()
    loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    train_step = notebook_definition("04_keras_finetuning", "train_step", {"tf": tf, "keras": keras, "loss": loss})
    keras.utils.set_random_seed(0)
    base, head = keras_models.course_net_keras(3, widths=(8, 8, 16, 16))
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, head(base(inputs, training=False)))
    rng = np.random.default_rng(0)
    batches = [(tf.constant(rng.normal(size=(16, 32, 32, 3)).astype("float32")),
                tf.constant(np.eye(3, dtype="float32")[rng.integers(0, 3, 16)])) for _ in range(3)]
    by_hand, by_fit = (keras.models.clone_model(model) for _ in range(2))
    for copy_ in (by_hand, by_fit):
        copy_.set_weights(model.get_weights())
    sgd = notebook_definition("04_keras_finetuning", "sgd", {"keras": keras, "MOMENTUM": 0.9,  # the notebook's
                                                             "KERAS_WEIGHT_DECAY": 5e-3})  # optimizer settings
    hand_optimizer = sgd()
    hand_losses = [train_step(by_hand, hand_optimizer, x, y) for x, y in batches]
    by_fit.compile(optimizer=sgd(), loss=loss)
    fit_loss = by_fit.fit((batch for batch in batches), epochs=1, steps_per_epoch=3, verbose=0,
                          shuffle=False).history["loss"][0]
    assert np.mean(hand_losses) == pytest.approx(fit_loss, rel=1e-5)
    for mine, theirs in zip(by_hand.get_weights(), by_fit.get_weights(), strict=True):
        np.testing.assert_allclose(mine, theirs, atol=1e-5)
    assert not np.allclose(by_hand.get_weights()[0], model.get_weights()[0])  # the steps did train
