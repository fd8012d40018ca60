"""Where a detector may make the host wait for the GPU: shared by the CPU and CUDA sync tests.

Keys are (file name, innermost function) as ``anchorage.core.host_sync`` and the CUDA sync
warnings report them.
"""

ALLOWED = {
    # torchvision: NMS itself (its CUDA kernel copies the suppression mask to the host)
    ("boxes.py", "nms"),
    ("boxes.py", "batched_nms"),
    ("boxes.py", "_batched_nms_vanilla"),
    ("boxes.py", "_batched_nms_coordinate_trick"),
    # our multiscale RoIAlign: the per-level group sizes (one read)
    ("extractors.py", "forward"),
    # postprocessors: the one compaction before NMS, NMS over group segments (one read for
    # the segment sizes) and the one read that cuts the final per-image lists
    ("rpn_proposals.py", "__call__"),
    ("rcnn_detections.py", "__call__"),
    ("multiclass_nms.py", "_select"),
    ("batching.py", "grouped_nms"),
    ("batching.py", "per_image_top_n"),
    # the sampled RoIs per image of a train step (one read of the per-image counts)
    ("rcnn_stages.py", "sample"),
}

# Seen by the CPU recorder only: values that are on the host on a GPU run too.
HOST_ONLY = {
    # torchvision's GeneralizedRCNNTransform draws the train size from a CPU tensor
    ("transform.py", "torch_choice"),
    # the target value check runs on CPU targets only (skipped for GPU targets)
    ("detection_batch.py", "check_targets"),
}
