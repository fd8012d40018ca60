"""Data: the ``data`` spec section, datasets, validation, transforms, batching, loaders."""

from .batching import collate_detection, pad_targets
from .dataset import DetectionDataset, decode_masks, semantic_from_instances
from .export import dataset_to_coco, to_coco_results
from .loader import (
    ShardSampler,
    build_dataloader,
    build_dataset,
    class_names_from_spec,
    data_section,
    seed_worker,
    split_config,
)
from .section import SPLITS, DataSection, SplitConfig
from .transforms import Pipeline, build_transforms, sanitize_labels_getter
from .validation import (
    ImageRecord,
    RawAnnotation,
    RawImage,
    ValidationReport,
    validate_images,
)

__all__ = [
    "SPLITS",
    "DataSection",
    "DetectionDataset",
    "ImageRecord",
    "Pipeline",
    "RawAnnotation",
    "RawImage",
    "ShardSampler",
    "SplitConfig",
    "ValidationReport",
    "build_dataloader",
    "build_dataset",
    "build_transforms",
    "class_names_from_spec",
    "collate_detection",
    "data_section",
    "dataset_to_coco",
    "decode_masks",
    "pad_targets",
    "sanitize_labels_getter",
    "seed_worker",
    "semantic_from_instances",
    "split_config",
    "to_coco_results",
    "validate_images",
]
