"""Keras side: backend choice, the ported course model, freezing and BatchNorm modes, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import keras_models, models

keras = keras_models.import_keras("tensorflow")


def test_ported_course_model_computes_what_the_pytorch_one_does():
    torch.manual_seed(0)
    torch_model = models.course_net()
    with torch.no_grad():  # give the batch norms non-trivial statistics
        for module in torch_model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    torch_model.eval()
    base, head = keras_models.course_net_keras()
    keras_models.copy_torch_weights(torch_model, base, head)
    images = np.random.default_rng(0).normal(0, 1, (4, 32, 32, 3)).astype("float32")
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()
    got = keras.ops.convert_to_numpy(head(base(images, training=False)))
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_frozen_base_called_in_inference_mode_keeps_its_statistics():
    base, _ = keras_models.course_net_keras()
    base.trainable = False
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.Dense(5)(base(inputs, training=False)))
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [keras.ops.convert_to_numpy(w) for w in base.weights]
    model.fit(np.random.rand(16, 32, 32, 3).astype("float32") * 5, np.arange(16) % 5, epochs=1, verbose=0)
    for old, new in zip(before, base.weights, strict=True):
        np.testing.assert_array_equal(old, keras.ops.convert_to_numpy(new))
    base.trainable = True
    assert all(layer.trainable for layer in base.layers)


def test_unfrozen_base_keeps_batchnorm_statistics_only_when_its_batchnorm_layers_stay_frozen():
    """Keras 3: fit's training=True overrides a nested training=False; notebook 04's unfreeze keeps BN frozen."""
    from notebook_code import notebook_definition

    base, _ = keras_models.course_net_keras()
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.Dense(5)(base(inputs, training=False)))
    x, y = np.random.rand(16, 32, 32, 3).astype("float32") * 5, np.arange(16) % 5
    batchnorm = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]

    def fit_moves_statistics() -> bool:
        """Fit one epoch; say whether any BatchNorm moving mean changed."""
        model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        before = [keras.ops.convert_to_numpy(layer.moving_mean) for layer in batchnorm]
        model.fit(x, y, epochs=1, verbose=0)
        return any(not np.array_equal(old, keras.ops.convert_to_numpy(layer.moving_mean))
                   for old, layer in zip(before, batchnorm, strict=True))

    base.trainable = True
    assert fit_moves_statistics()  # the guide's training=False did not hold (what notebooks 02 and 04 say)
    unfreeze = notebook_definition("04_keras_finetuning", "unfreeze", {
        "keras": keras, "keras_models": keras_models, "STRATEGY": "finetune_full", "model_name": "course_net"})
    unfreeze(base)
    kernel = keras.ops.convert_to_numpy(base.get_layer("stem_0").kernel).copy()
    assert not fit_moves_statistics()
    assert not np.array_equal(kernel, keras.ops.convert_to_numpy(base.get_layer("stem_0").kernel))  # still trains


def test_top_block_of_the_course_model():
    base, _ = keras_models.course_net_keras()
    names = [layer.name for layer in keras_models.top_block_layers(base, "course_net")]
    assert names[0].startswith("stage3") and names[-1] == "norm"


def test_bad_names_and_sizes_say_what_is_valid():
    with pytest.raises(ValueError, match="tensorflow, torch"):
        keras_models.import_keras("jax")
    with pytest.raises(ValueError, match="mobilenet_v2, efficientnetb0, vgg16"):
        keras_models.source_base("auto", "resnet152", "smoke", 32)
    with pytest.raises(ValueError, match="imagenet, course, none, auto"):
        keras_models.source_base("coco", "course_net", "smoke", 32)
    with pytest.raises(ValueError, match="at least 32x32"):
        keras_models.source_base("none", "mobilenet_v2", "smoke", 16)


def test_imagenet_offline_without_cache_names_prefetch(data_root, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(data_root / "keras"))
    with pytest.raises(FileNotFoundError, match="make prefetch"):
        keras_models.source_base("imagenet", "mobilenet_v2", "smoke", 32)


def test_history_rows_use_the_pytorch_names():
    class History:
        history = {"loss": [1.0, 0.5], "categorical_accuracy": [0.3, 0.6], "val_loss": [0.9, 0.6],
                   "val_categorical_accuracy": [0.4, 0.5]}

    rows = keras_models.history_rows(History(), offset=2)
    assert rows[1] == {"epoch": 4, "train_loss": 0.5, "train_acc": 0.6, "val_loss": 0.6, "val_acc": 0.5}


def notebook_vgg16_baseline():
    """Notebook 04's VGG16 baseline function, as the notebook defines it."""
    from notebook_code import notebook_definition

    from helpers import splits

    return notebook_definition("04_keras_finetuning", "vgg16_baseline",
                               {"keras": keras, "keras_models": keras_models, "splits": splits, "np": np})


def test_vgg16_baseline_trains_its_head_on_frozen_features(monkeypatch):
    from helpers import data

    def small_base(include_top, weights, input_shape):  # a stand-in: random deep VGG16 features collapse
        return keras.Sequential([keras.Input(input_shape), keras.layers.Conv2D(32, 5, activation="relu"),
                                 keras.layers.MaxPooling2D(4)])

    monkeypatch.setattr(keras_models, "keras_application", lambda name: small_base)
    keras.utils.set_random_seed(0)
    synthetic = data.make_synthetic(50, 10, seed=0)
    result = notebook_vgg16_baseline()(synthetic.x_train, synthetic.y_train, synthetic.x_test, synthetic.y_test,
                                       10, epochs=25, weights=None)
    assert result["test_acc"] > 0.2 and result["val_acc"] > 0.2  # chance is 0.1 (fixed seed; 50 validation images)


def test_failed_weight_download_says_how_to_retry_or_go_offline(monkeypatch):
    def unreachable(include_top, weights, input_shape):  # what Keras raises when the download fails
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- Name or service not known")

    monkeypatch.setattr(keras_models, "keras_application", lambda name: unreachable)
    with pytest.raises(OSError, match="make prefetch.*WORKBOOK_OFFLINE=1"):
        notebook_vgg16_baseline()(np.zeros((2, 32, 32, 3), np.uint8), np.zeros(2), np.zeros((2, 32, 32, 3), np.uint8),
                                  np.zeros(2), 10)


@pytest.mark.notebook
def test_notebook_runs_on_the_torch_backend(tmp_path, data_root):
    import json

    import papermill

    from helpers.runner import NOTEBOOKS_DIR

    papermill.execute_notebook(str(NOTEBOOKS_DIR / "04_keras_finetuning.ipynb"), str(tmp_path / "out.ipynb"),
                               parameters={"PROFILE": "smoke", "DATASET": "synthetic", "KERAS_BACKEND": "torch",
                                           "WEIGHTS": "none", "MODEL": "course_net", "STRATEGY": "lp_ft",
                                           "OUTPUT_DIR": str(tmp_path / "run")},
                               cwd=str(NOTEBOOKS_DIR), kernel_name="python3", progress_bar=False)
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["config"]["keras_backend"] == "torch"
    assert 0.0 <= record["metrics"]["test_acc"] <= 1.0 and len(record["test_predictions"]) > 0


def test_a_diverged_keras_fit_stops_with_the_divergence_message():
    from helpers import runtime

    runtime.name_divergence_suspects({"LR": 10.0})
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(10.0), loss="mse")
    inputs = np.random.default_rng(0).normal(0, 100, (64, 4)).astype("float32")
    with pytest.raises(runtime.DivergedError, match=r"loss became (nan|inf).*Look at LR=10.0"):
        model.fit(inputs, inputs.sum(1), epochs=20, batch_size=8, verbose=0,
                  callbacks=[keras_models.stop_on_non_finite_loss(keras)])
