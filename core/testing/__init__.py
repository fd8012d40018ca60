"""The conformance kit: reusable checks that a component honours its interface.

anchorage's suite runs ``check_entry`` over every registry entry; a plugin author runs it on
theirs::

    from anchorage.core.testing import check_entry

    def test_my_matcher():
        check_entry("matcher", "my_matcher")

Each registered entry is built from its ``examples`` (``register(name, examples=(...))``;
``({},)`` when none), then checked by the check of its registry kind and by the check of each
role it implements, with inputs sized from its validated config (injected ``in_channels``,
``num_classes``, ``box_coder``...).

Modules: ``kit`` (the check tables, ``check_entry``, building examples), ``components`` (kinds
without a role: backbone, neck, anchor generator, box coder, sampler, RoI extractor,
optimizer, lr scheduler), ``roles`` (two-stage, segmentation and style roles; whole models),
``dense`` (dense-detector roles and matchers, and the kit's dense batch), ``classification``
(classification and localization roles), ``data`` (datasets and transforms), ``evaluation``
(metrics). Importing the package registers every check.
"""

from . import classification, components, data, dense, evaluation, roles, set_prediction
from .classification import check_classification_head, check_classification_loss
from .components import (
    check_anchor_generator,
    check_backbone,
    check_box_coder,
    check_lr_scheduler,
    check_neck,
    check_optimizer,
    check_roi_extractor,
    check_sampler,
)
from .data import check_dataset, check_sample, check_transform
from .dense import (
    check_box_loss,
    check_dense_head,
    check_dense_loss,
    check_dense_postprocessor,
    check_matcher,
    dense_anchors,
    dense_predictions,
    dense_targets,
    padded_gt,
)
from .evaluation import check_metric
from .kit import (
    CHECKS,
    ROLE_CHECKS,
    build_example_configs,
    build_examples,
    check_entry,
    check_finite_parameters,
    conformance_check,
    register_checks,
    role_check,
)
from .roles import check_detections, check_loss_terms, check_model, tiny_batch

__all__ = [
    "CHECKS",
    "ROLE_CHECKS",
    "build_example_configs",
    "build_examples",
    "check_anchor_generator",
    "check_backbone",
    "check_box_coder",
    "check_box_loss",
    "check_classification_head",
    "check_classification_loss",
    "check_dataset",
    "check_dense_head",
    "check_dense_loss",
    "check_dense_postprocessor",
    "check_detections",
    "check_entry",
    "check_finite_parameters",
    "check_loss_terms",
    "check_lr_scheduler",
    "check_matcher",
    "check_metric",
    "check_model",
    "check_neck",
    "check_optimizer",
    "check_roi_extractor",
    "check_sample",
    "check_sampler",
    "check_transform",
    "classification",
    "components",
    "conformance_check",
    "data",
    "dense",
    "dense_anchors",
    "dense_predictions",
    "dense_targets",
    "evaluation",
    "padded_gt",
    "register_checks",
    "role_check",
    "roles",
    "set_prediction",
    "tiny_batch",
]
