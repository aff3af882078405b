"""Bad parameters given to a notebook stop it with an error that lists what is valid."""

from __future__ import annotations

import nbformat
import papermill
import pytest

from helpers.runner import NOTEBOOKS_DIR

pytestmark = pytest.mark.notebook


@pytest.mark.parametrize("notebook, parameters, message", [
    ("05_pytorch_finetuning", {"STRATEGY": "bogus"}, "STRATEGY='bogus' is not one of: scratch, linear_probe"),
    ("05_pytorch_finetuning", {"WEIGHTS": "course", "DATASET": "auto", "LABELS_PER_CLASS": 5000}, "between 1 and"),
    ("05_pytorch_finetuning", {"WEIGHTS": "none", "MODEL": "resnet18", "IMAGE_SIZE": 16}, "use a size from 32"),
    ("04_keras_finetuning", {"MODEL": "resnet152"}, "MODEL='resnet152' is not one of: course_net, mobilenet_v2"),
    ("04_keras_finetuning", {"STRATEGY": "bogus"}, "STRATEGY='bogus' is not one of: scratch, linear_probe"),
    ("04_keras_finetuning", {"WEIGHTS": "none", "MODEL": "mobilenet_v2", "IMAGE_SIZE": 16}, "at least 32x32"),
    ("05_pytorch_finetuning", {"LR": -1}, "LR=-1 is out of range"),
    ("05_pytorch_finetuning", {"CROSS_FIT": 1}, "CROSS_FIT=1 is not one of: 0, 2, 3"),
    ("05_pytorch_finetuning", {"STRATEGY": "linear_probe", "CROSS_FIT": 3}, "use it with STRATEGY 'finetune_full'"),
    ("07_domain_adaptation", {"CORRUPTION": "fog"}, "CORRUPTION='fog' is not one of: gaussian_noise"),
    ("07_domain_adaptation", {"SEVERITY": 6}, "SEVERITY=6 is not one of: 1, 2, 3, 4, 5"),
    ("02_math_of_transfer", {"TEMPERATURE": -1.0}, "TEMPERATURE=-1.0 is out of range: it must be >= 0.01"),
    ("05_pytorch_finetuning", {"STRATEGY": "lp_ft", "LABELS_PER_CLASS": 3, "CROSS_FIT": 2},
     "each fold's LP-FT chooses its probe by cross-validation on the other folds' 1 image"),
])
def test_bad_parameter_names_the_valid_values(tmp_path, notebook, parameters, message):
    with pytest.raises(papermill.PapermillExecutionError, match=message):
        papermill.execute_notebook(str(NOTEBOOKS_DIR / f"{notebook}.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={"PROFILE": "smoke", "DATASET": "synthetic", **parameters},
                                   cwd=str(NOTEBOOKS_DIR), kernel_name="python3", progress_bar=False)


def test_cifar_fs_without_a_copy_is_refused_before_the_sinusoids(tmp_path):
    notebook = NOTEBOOKS_DIR / "11_meta_learning_zero_shot.ipynb"
    with pytest.raises(papermill.PapermillExecutionError, match="CIFAR-100 is not cached at") as error:
        papermill.execute_notebook(str(notebook), str(tmp_path / "out.ipynb"),
                                   parameters={"PROFILE": "smoke", "DATASET": "synthetic", "EPISODE_DATA": "cifar_fs"},
                                   cwd=str(NOTEBOOKS_DIR), kernel_name="python3", progress_bar=False)
    cells = nbformat.read(notebook, as_version=4).cells
    first_training = next(i for i, cell in enumerate(cells) if "train_sine(" in cell.source)
    assert error.value.cell_index < first_training
