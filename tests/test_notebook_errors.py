"""Bad parameters given to a notebook stop it with an error that lists what is valid."""

from __future__ import annotations

import papermill
import pytest

from helpers.course import NOTEBOOKS_DIR


@pytest.mark.parametrize("notebook, parameters, message", [
    ("05_pytorch_finetuning", {"STRATEGY": "bogus"}, "valid strategies: scratch, linear_probe"),
    ("05_pytorch_finetuning", {"WEIGHTS": "course", "LABELS_PER_CLASS": 100000}, "between 1 and"),
    ("05_pytorch_finetuning", {"WEIGHTS": "none", "MODEL": "resnet18", "IMAGE_SIZE": 16}, "use a size from 32"),
    ("04_keras_finetuning", {"MODEL": "resnet152"}, "valid backbones: course_net, mobilenet_v2"),
    ("04_keras_finetuning", {"STRATEGY": "bogus"}, "valid strategies: scratch, linear_probe"),
    ("04_keras_finetuning", {"WEIGHTS": "none", "MODEL": "mobilenet_v2", "IMAGE_SIZE": 16}, "at least 32x32"),
    ("02_math_of_transfer", {"TEMPERATURE": -1.0}, "TEMPERATURE must be > 0"),
])
def test_bad_parameter_names_the_valid_values(tmp_path, notebook, parameters, message):
    with pytest.raises(papermill.PapermillExecutionError, match=message):
        papermill.execute_notebook(str(NOTEBOOKS_DIR / f"{notebook}.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={"PROFILE": "smoke", "DATASET": "synthetic", **parameters},
                                   cwd=str(NOTEBOOKS_DIR), kernel_name="python3", progress_bar=False)
