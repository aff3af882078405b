"""Plumbing for notebook 11: sinusoid tasks, relabelled episodes, the small meta-learning CNN, attribute tables.

The lesson's own code (the inner loop, the MAML, FOMAML and Reptile updates, ANIL, the prototype loss, the DAP
scores, ESZSL) is written in the notebook; this module only samples tasks, builds networks and checks inputs.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .data import ImageData
from .torch_data import BatchTransform
from .transferability import sample_episode

PARTS = ("all", "sinusoid", "episodes", "zero_shot")
EPISODE_DATA = ("course", "cifar_fs")  # the course's CIFAR-10 split, or CIFAR-FS (CIFAR-100, 64/16/20 classes)
# CIFAR-FS (Bertinetto et al., 2019): CIFAR-100's classes split into 64 meta-training, 16 validation and 20 test
# classes, as torchmeta's and learn2learn's copies of the split list them; the training classes are the other 64.
CIFAR_FS_TEST = ("baby", "bed", "bicycle", "chimpanzee", "fox", "leopard", "man", "pickup_truck", "plain", "poppy",
                 "rocket", "rose", "snail", "sweet_pepper", "table", "telephone", "wardrobe", "whale", "woman", "worm")
CIFAR_FS_VALIDATION = ("beaver", "beetle", "butterfly", "camel", "cattle", "crab", "crocodile", "flatfish", "lamp",
                       "maple_tree", "motorcycle", "otter", "sea", "shark", "television", "tractor")
SINE_AMPLITUDE = (0.1, 5.0)  # Finn et al. (2017), section 5.1: amplitude, phase and input ranges of a task
SINE_PHASE = (0.0, float(np.pi))
SINE_X = (-5.0, 5.0)

# Binary attributes of the ten CIFAR-10 classes, written from what a person knows about each class (Lampert et al.'s
# attribute tables were made the same way, by people, not from images). One row per class, one column per attribute.
ATTRIBUTE_NAMES = ("man-made", "animal", "has wheels", "flies", "has four legs", "furry", "domestic",
                   "larger than a person", "carries people", "lives in or on water", "green or brown surroundings")
CIFAR10_ATTRIBUTES: dict[str, tuple[int, ...]] = {
    #               man  ani  whe  fly  leg  fur  dom  big  car  wat  gre
    "airplane":   (1,   0,   1,   1,   0,   0,   0,   1,   1,   0,   0),
    "automobile": (1,   0,   1,   0,   0,   0,   0,   1,   1,   0,   0),
    "bird":       (0,   1,   0,   1,   0,   0,   0,   0,   0,   0,   1),
    "cat":        (0,   1,   0,   0,   1,   1,   1,   0,   0,   0,   0),
    "deer":       (0,   1,   0,   0,   1,   1,   0,   1,   0,   0,   1),
    "dog":        (0,   1,   0,   0,   1,   1,   1,   0,   0,   0,   1),
    "frog":       (0,   1,   0,   0,   1,   0,   0,   0,   0,   1,   1),
    "horse":      (0,   1,   0,   0,   1,   1,   1,   1,   1,   0,   1),
    "ship":       (1,   0,   0,   0,   0,   0,   0,   1,   1,   1,   0),
    "truck":      (1,   0,   1,   0,   0,   0,   0,   1,   0,   0,   0),
}

# The synthetic stand-in's classes are drawn patterns (helpers.data.SYNTHETIC_CLASSES); a table for them lets the
# zero-shot part run without CIFAR-10, though what it measures there means little.
SYNTHETIC_ATTRIBUTE_NAMES = ("straight lines", "horizontal", "vertical", "diagonal", "rises to the right", "curved",
                             "repeated", "one shape")
SYNTHETIC_ATTRIBUTES: dict[str, tuple[int, ...]] = {
    "h-stripes": (1, 1, 0, 0, 0, 0, 1, 0), "v-stripes": (1, 0, 1, 0, 0, 0, 1, 0),
    "diag-stripes": (1, 0, 0, 1, 1, 0, 1, 0), "antidiag-stripes": (1, 0, 0, 1, 0, 0, 1, 0),
    "checkers": (0, 1, 1, 0, 0, 0, 1, 0), "rings": (0, 0, 0, 0, 0, 1, 1, 0), "blob": (0, 0, 0, 0, 0, 1, 0, 1),
    "gradient": (0, 0, 0, 0, 0, 0, 0, 0), "dots": (0, 0, 0, 0, 0, 1, 1, 1), "cross": (1, 1, 1, 0, 0, 0, 0, 1),
}


def attribute_table(class_names: Sequence[str]) -> dict:
    """Return the attribute table for a dataset's classes: {"attributes": names, "rows": {class: 0/1 row}} (a copy)."""
    for names, rows in ((ATTRIBUTE_NAMES, CIFAR10_ATTRIBUTES), (SYNTHETIC_ATTRIBUTE_NAMES, SYNTHETIC_ATTRIBUTES)):
        if set(class_names) <= set(rows):
            return {"attributes": list(names), "rows": {name: list(row) for name, row in rows.items()}}
    raise ValueError(f"No attribute table describes the classes {list(class_names)}; tables exist for CIFAR-10 "
                     f"{sorted(CIFAR10_ATTRIBUTES)} and the synthetic stand-in. Write one: a row of 0/1 per class")


def sample_sine_tasks(count: int, points: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Draw `count` sinusoid tasks, `points` inputs each: (amplitudes, phases, x, y), x and y (count, points, 1)."""
    amplitude = rng.uniform(*SINE_AMPLITUDE, size=(count, 1, 1))
    phase = rng.uniform(*SINE_PHASE, size=(count, 1, 1))
    x = rng.uniform(*SINE_X, size=(count, points, 1))
    return amplitude, phase, x, amplitude * np.sin(x + phase)


def sine_net(hidden: int = 40) -> nn.Sequential:
    """Build the regressor of Finn et al.'s sinusoid experiment: 1 -> 40 -> 40 -> 1 with ReLUs."""
    return nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))


def conv4(n_way: int, width: int = 32) -> nn.Sequential:
    """Finn et al.'s four-block CNN (3x3 conv, batch norm, ReLU, 2x2 max-pool) with a linear head of `n_way` outputs.

    Batch norm keeps no running statistics: every forward pass normalizes with the batch in hand, as the MAML
    reference code does, so the network is a pure function of its parameters (what `torch.func` needs).
    """
    def block(c_in: int, c_out: int) -> nn.Sequential:
        """One conv-BN-ReLU-pool block."""
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out, track_running_stats=False),
                             nn.ReLU(), nn.MaxPool2d(2))

    body = nn.Sequential(block(3, width), block(width, width), block(width, width), block(width, width), nn.Flatten())
    return nn.Sequential(OrderedDict(body=body, head=nn.Linear(4 * width, n_way)))  # 32x32 -> 2x2 after four pools


def normalized(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC images as one normalized float NCHW tensor (CIFAR-10 statistics), in memory for fast episodes."""
    as_chw = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    return BatchTransform(train=False, image_size=images.shape[1])(as_chw)


def cifar_fs_split(cifar100: ImageData) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """CIFAR-FS from CIFAR-100: (images, labels) of the 64 meta-training classes and of the 20 test classes.

    Each class keeps all 600 of its images (CIFAR-100's train and test images together, as CIFAR-FS does); the 16
    validation classes are left out. Labels keep CIFAR-100's class numbers.
    """
    names = list(cifar100.class_names)
    unknown = sorted(set(CIFAR_FS_TEST + CIFAR_FS_VALIDATION) - set(names))
    if len(names) != 100 or unknown:
        raise ValueError(f"CIFAR-FS needs CIFAR-100's 100 fine classes; this data has {len(names)} classes"
                         + (f" and lacks {unknown}" if unknown else "") + ". Load it with data.load_cifar100()")
    images = np.concatenate([cifar100.x_train, cifar100.x_test])
    labels = np.concatenate([cifar100.y_train, cifar100.y_test])
    test_ids = [names.index(name) for name in CIFAR_FS_TEST]
    train_ids = [i for i, name in enumerate(names) if name not in CIFAR_FS_TEST + CIFAR_FS_VALIDATION]
    pick = lambda ids: (images[np.isin(labels, ids)], labels[np.isin(labels, ids)])  # noqa: E731
    return pick(train_ids), pick(test_ids)


def relabelled_episode(labels: np.ndarray, n_way: int, k_shot: int, query: int, rng: np.random.Generator
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draw an N-way K-shot episode whose classes get the labels 0..N-1 in a random order, new for every episode.

    Returns (support indices, support labels, query indices, query labels, the classes in label order). With the
    labels shuffled per episode, no class keeps an output unit, so nothing can be learned but how to adapt.
    """
    support, query_index, classes = sample_episode(labels, n_way, k_shot, query, rng)  # classes in random order
    new_label = {int(c): i for i, c in enumerate(classes)}
    relabel = np.vectorize(new_label.__getitem__, otypes=[np.int64])
    return support, relabel(labels[support]), query_index, relabel(labels[query_index]), classes


def attribute_matrix(class_names: Sequence[str], table: dict[str, Sequence[int]] | None = None) -> np.ndarray:
    """Return the attribute rows of `class_names` from `table` (default: the course's CIFAR-10 table), as a 0/1 matrix.

    Refuses a class the table lacks, rows of different lengths, values other than 0 and 1, and two classes with
    the same row.
    """
    table = CIFAR10_ATTRIBUTES if table is None else table
    missing = [name for name in class_names if name not in table]
    if missing:
        raise ValueError(f"The attribute table has no row for {missing}; it describes {sorted(table)}. Add a row "
                         f"of 0/1 values per missing class (one per attribute), or use classes the table has")
    flat = lambda row: (isinstance(row, Sequence) and not isinstance(row, str)  # noqa: E731
                        and all(isinstance(v, int | float | np.integer | np.floating) for v in row))
    malformed = [name for name in class_names if not flat(table[name])]
    if malformed:
        raise ValueError(f"The attribute rows of {malformed} are not flat lists of 0/1 numbers (nested lists, text or "
                         f"other values): give each class one list with a 0 or 1 per attribute")
    lengths = {len(table[name]) for name in class_names}
    if lengths == {0}:
        raise ValueError("The attribute rows are empty: give each class at least one 0/1 attribute value")
    if len(lengths) != 1:
        raise ValueError(f"Attribute rows differ in length ({sorted(lengths)}): every class needs one value per "
                         f"attribute")
    matrix = np.array([list(table[name]) for name in class_names], dtype=float)
    if not np.isin(matrix, (0, 1)).all():
        raise ValueError(f"Attribute values must be 0 or 1; found {sorted(set(np.unique(matrix).tolist()) - {0, 1})}")
    check_distinct(matrix, class_names)
    return matrix


def check_distinct(matrix: np.ndarray, class_names: Sequence[str]) -> None:
    """Refuse two classes with the same attribute row: no attribute classifier could tell them apart."""
    seen: dict[tuple, str] = {}
    for name, row in zip(class_names, matrix, strict=True):
        key = tuple(row)
        if key in seen:
            raise ValueError(f"{seen[key]!r} and {name!r} have the same attributes, so zero-shot recognition cannot "
                             f"separate them; add an attribute on which they differ")
        seen[key] = name


def constant_attributes(matrix: np.ndarray) -> np.ndarray:
    """Return the attributes that take one value in every row of `matrix` (nothing there to learn from)."""
    return np.flatnonzero(matrix.min(0) == matrix.max(0))


def tied_in_source_span(source: np.ndarray, target: np.ndarray, names: Sequence[str]) -> list[tuple[str, str]]:
    """Pairs of target classes whose rows differ only outside the span of the source rows.

    A model whose attribute space is spanned by the source classes' rows (ESZSL's V is) scores such a pair
    identically for every image: it cannot tell them apart, whatever the features.
    """
    projected = target @ np.linalg.pinv(source) @ source
    return [(names[i], names[j]) for i in range(len(names)) for j in range(i + 1, len(names))
            if np.allclose(projected[i], projected[j], atol=1e-9)]


def attribute_groups(source: np.ndarray) -> list[list[int]]:
    """Group the learnable attributes by identical source columns: each group is learned as one attribute."""
    groups: dict[tuple, list[int]] = {}
    for column in np.setdiff1d(np.arange(source.shape[1]), constant_attributes(source)):
        groups.setdefault(tuple(source[:, column]), []).append(int(column))
    return list(groups.values())


def dap_tied_pairs(source: np.ndarray, target: np.ndarray, names: Sequence[str]) -> list[tuple[str, str]]:
    """Pairs of target classes that direct attribute prediction scores identically on every image.

    Attributes with identical source columns get identical training labels, so their classifiers and priors are
    identical too; DAP's score then depends only on how many attributes of each such group a class has. Two
    target classes tie when those counts match in every group (attributes no source class varies are left out).
    """
    counts = np.stack([target[:, columns].sum(1) for columns in attribute_groups(source)], 1)
    return [(names[i], names[j]) for i in range(len(names)) for j in range(i + 1, len(names))
            if np.array_equal(counts[i], counts[j])]


def dap_scores(probs: np.ndarray, signatures: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """DAP's log scores (images, classes): sum over attributes of log p(a = a^z | x) minus log p(a = a^z).

    Lampert et al. (2014), eq. 3, in logs; written by the learner in notebook 11's exercise 11.2.
    """
    eps = 1e-6
    probs, prior = np.clip(probs, eps, 1 - eps), np.clip(prior, eps, 1 - eps)
    match = np.log(probs) @ signatures.T + np.log(1 - probs) @ (1 - signatures).T
    return match - (signatures @ np.log(prior) + (1 - signatures) @ np.log(1 - prior))


def break_ties(scores: np.ndarray, rng: np.random.Generator, step: float = 1e-4) -> np.ndarray:
    """Scores with exact ties made into a random order: each row's classes get offsets 0, step, 2 step... shuffled.

    The argmax of the result is a fair coin flip among classes that tied, and the probabilities made from it
    agree with that argmax (a `step` of 1e-4 in log-score survives float32); scores further apart keep their order.
    """
    order = rng.permuted(np.tile(np.arange(scores.shape[1]), (len(scores), 1)), axis=1)
    return scores + step * order


def source_only(labels: np.ndarray, source_classes: Sequence[int]) -> np.ndarray:
    """Return `labels` unchanged if every one is a source class; else refuse: zero-shot never sees a target label."""
    foreign = sorted(set(np.unique(labels).tolist()) - set(source_classes))
    if foreign:
        raise ValueError(f"Labels of classes {foreign} reached zero-shot training, which may only see the source "
                         f"classes {list(source_classes)}: the target classes must be recognised with zero labels")
    return labels


def stacking_offsets(scores: np.ndarray, seen: Sequence[int], steps: int = 201) -> np.ndarray:
    """Offsets gamma for calibrated stacking, from all-seen to all-unseen predictions on these scores."""
    is_seen_class = np.isin(np.arange(scores.shape[1]), seen)
    spread = np.abs(scores[:, is_seen_class].max(1) - scores[:, ~is_seen_class].max(1)).max() + 1e-6
    return np.linspace(-spread, spread, steps)


def harmonic_mean(a: float, b: float) -> float:
    """Harmonic mean of seen and unseen accuracy (0 when either is 0): the generalised setting's summary."""
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def area_under_curve(acc_seen: np.ndarray, acc_unseen: np.ndarray) -> float:
    """Area under the seen-unseen accuracy curve (AUSUC, Chao et al., 2016), independent of any one gamma."""
    order = np.argsort(acc_unseen)
    x, y = acc_unseen[order], acc_seen[order]
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))
