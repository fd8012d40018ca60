"""transformers' ``DetrForObjectDetection`` / ``DeformableDetrForObjectDetection`` state dicts
→ ``set_prediction`` (``tools/convert_weights.py --from transformers``).

Supported: the non-timm ResNet backbone (``use_timm_backbone: false``, transformers' own
``ResNetBackbone``), whose names map onto torchvision's ResNet; DETR's transformer (separate
q/k/v projections → ``nn.MultiheadAttention``'s packed ``in_proj``); Deformable DETR's
(``transformer_state_from_transformers``). DETR's classifier puts the
no-object class last; ours puts it in column 0, so its rows are rotated by one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from anchorage.core.errors import CheckpointError
from anchorage.plugins.models.convert import register_converter

Tensor = torch.Tensor

_BN = ("weight", "bias", "running_mean", "running_var")


def resnet_state_from_transformers(
    state: Mapping[str, Tensor], prefix: str = "model.backbone.model."
) -> dict[str, Tensor]:
    """transformers' ``ResNetBackbone`` keys under ``prefix`` → torchvision ResNet keys
    (``conv1``, ``bn1``, ``layer{s}.{j}.conv{k}``, ``downsample.0/1``) under ``backbone.body.``.
    """
    rules = (
        (r"embedder\.embedder\.convolution\.weight", "conv1.weight"),
        (r"embedder\.embedder\.normalization\.(\w+)", r"bn1.\1"),
        (
            r"encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.convolution\.weight",
            lambda m: f"layer{int(m[1]) + 1}.{m[2]}.downsample.0.weight",
        ),
        (
            r"encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.normalization\.(\w+)",
            lambda m: f"layer{int(m[1]) + 1}.{m[2]}.downsample.1.{m[3]}",
        ),
        (
            r"encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d+)\.convolution\.weight",
            lambda m: f"layer{int(m[1]) + 1}.{m[2]}.conv{int(m[3]) + 1}.weight",
        ),
        (
            r"encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d+)\.normalization\.(\w+)",
            lambda m: f"layer{int(m[1]) + 1}.{m[2]}.bn{int(m[3]) + 1}.{m[4]}",
        ),
    )
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :]
        if rest.endswith("num_batches_tracked"):
            continue
        for pattern, repl in rules:
            match = re.fullmatch(pattern, rest)
            if match:
                name = repl(match) if callable(repl) else match.expand(repl)
                out[f"backbone.body.{name}"] = value
                break
        else:
            raise CheckpointError(f"transformers ResNet backbone: unexpected key {key!r}")
    if not out:
        raise CheckpointError(
            f"transformers state dict: no ResNet backbone keys under {prefix!r} (only the "
            "non-timm ResNet backbone converts: use_timm_backbone=False)"
        )
    return out


def _attention(state: Mapping[str, Tensor], src: str, dst: str) -> dict[str, Tensor]:
    """Separate ``q/k/v/o_proj`` → ``nn.MultiheadAttention``'s ``in_proj_*`` and ``out_proj``."""
    get = _getter(state)
    return {
        f"{dst}.in_proj_weight": torch.cat([get(f"{src}.{p}_proj.weight") for p in "qkv"]),
        f"{dst}.in_proj_bias": torch.cat([get(f"{src}.{p}_proj.bias") for p in "qkv"]),
        f"{dst}.out_proj.weight": get(f"{src}.o_proj.weight"),
        f"{dst}.out_proj.bias": get(f"{src}.o_proj.bias"),
    }


def _getter(state: Mapping[str, Tensor]):  # noqa: ANN202 - a small closure
    def get(key: str) -> Tensor:
        try:
            return state[key]
        except KeyError:
            raise CheckpointError(f"transformers state dict: missing key {key!r}") from None

    return get


def _copy(state: Mapping[str, Tensor], pairs: dict[str, str]) -> dict[str, Tensor]:
    get = _getter(state)
    return {dst: get(src) for src, dst in pairs.items()}


def _linear_norm(src: str, dst: str) -> dict[str, str]:
    return {f"{src}.weight": f"{dst}.weight", f"{src}.bias": f"{dst}.bias"}


def _layer_count(state: Mapping[str, Tensor], prefix: str) -> int:
    found = {int(m[1]) for k in state if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    return max(found) + 1 if found else 0


def detr_transformer_state(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """DETR's encoder, decoder, query embeddings → ``detr_transformer`` keys."""
    out: dict[str, Tensor] = {}
    for i in range(_layer_count(state, "model.encoder.layers.")):
        src, dst = f"model.encoder.layers.{i}", f"transformer.encoder.{i}"
        out |= _attention(state, f"{src}.self_attn", f"{dst}.self_attn")
        pairs = (
            _linear_norm(f"{src}.self_attn_layer_norm", f"{dst}.attn_block.norm")
            | _linear_norm(f"{src}.final_layer_norm", f"{dst}.ffn_block.norm")
            | _linear_norm(f"{src}.mlp.fc1", f"{dst}.ffn.fc1")
            | _linear_norm(f"{src}.mlp.fc2", f"{dst}.ffn.fc2")
        )
        out |= _copy(state, pairs)
    for i in range(_layer_count(state, "model.decoder.layers.")):
        src, dst = f"model.decoder.layers.{i}", f"transformer.decoder.{i}"
        out |= _attention(state, f"{src}.self_attn", f"{dst}.self_attn")
        out |= _attention(state, f"{src}.encoder_attn", f"{dst}.cross_attn")
        pairs = (
            _linear_norm(f"{src}.self_attn_layer_norm", f"{dst}.self_block.norm")
            | _linear_norm(f"{src}.encoder_attn_layer_norm", f"{dst}.cross_block.norm")
            | _linear_norm(f"{src}.final_layer_norm", f"{dst}.ffn_block.norm")
            | _linear_norm(f"{src}.mlp.fc1", f"{dst}.ffn.fc1")
            | _linear_norm(f"{src}.mlp.fc2", f"{dst}.ffn.fc2")
        )
        out |= _copy(state, pairs)
    out |= _copy(
        state,
        _linear_norm("model.decoder.layernorm", "transformer.decoder_norm")
        | {"model.query_position_embeddings.weight": "transformer.query_pos.weight"},
    )
    return out


def detr_head_state(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """DETR's classifier (no-object row moved from last to first) and box MLP → ``detr_head``."""
    get = _getter(state)
    out = {
        "head.classifiers.0.weight": get("class_labels_classifier.weight").roll(1, dims=0),
        "head.classifiers.0.bias": get("class_labels_classifier.bias").roll(1, dims=0),
    }
    for i in range(_layer_count(state, "bbox_predictor.layers.")):
        branch = _linear_norm(f"bbox_predictor.layers.{i}", f"head.box_branches.0.layers.{i}")
        out |= _copy(state, branch)
    out |= _copy(state, _linear_norm("model.input_projection", "input_projection.levels.0"))
    return out


def deformable_detr_state(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Deformable DETR's input projections, transformer and per-layer heads → ours.

    ``model.input_proj.i`` (conv + GroupNorm) → ``input_projection.levels.i`` for the backbone
    levels, then ``input_projection.extra.j``; the transformer through
    ``transformer_state_from_transformers``. Heads: transformers ties every layer's
    ``class_embed``/``bbox_embed`` to layer 0's, except the box branches with box refinement
    (recognised by ``model.decoder.bbox_embed``), which are per layer: those give a head with
    ``shared: false`` (each layer its own copy of the tied classifier), the others ``shared:
    true``. Two-stage (``model.enc_output``, ``two_stage: true``): the L decoder layers' heads
    are per layer (transformers ties none of them then) and the extra ``class_embed.L`` /
    ``bbox_embed.L`` score the encoder proposals: ``head.proposal_classifier`` /
    ``head.proposal_box_branch``.
    """
    try:
        transformer = transformer_state_from_transformers(state)
    except KeyError as exc:
        raise CheckpointError(f"transformers Deformable DETR state dict: {exc.args[0]}") from None
    out = {f"transformer.{k}": v for k, v in transformer.items()}
    projections = _layer_count(state, "model.input_proj.")
    backbone = sum(1 for k in state if re.fullmatch(r"model\.input_proj\.\d+\.0\.weight", k)
                   and state[k].shape[-1] == 1)  # fmt: skip
    for i in range(projections):
        dst = (
            f"input_projection.levels.{i}"
            if i < backbone
            else f"input_projection.extra.{i - backbone}"
        )
        for part in ("0", "1"):
            out |= _copy(state, _linear_norm(f"model.input_proj.{i}.{part}", f"{dst}.{part}"))
    layers = _layer_count(state, "model.decoder.layers.")
    per_layer = any(k.startswith("model.decoder.bbox_embed.") for k in state)
    heads = {i: (f"head.classifiers.{i}", f"head.box_branches.{i}") for i in range(layers)}
    if not per_layer:
        heads = {0: heads[0]}
    if "model.enc_output.weight" in state:
        heads[layers] = ("head.proposal_classifier", "head.proposal_box_branch")
    for i, (classifier, box) in heads.items():
        out |= _copy(state, _linear_norm(f"class_embed.{i}", classifier))
        for k in range(_layer_count(state, f"bbox_embed.{i}.layers.")):
            out |= _copy(state, _linear_norm(f"bbox_embed.{i}.layers.{k}", f"{box}.layers.{k}"))
    return out


_DEFORMABLE_ATTENTION = ("sampling_offsets", "attention_weights", "value_proj", "output_proj")
_PARAMS = ("weight", "bias")
_TWO_STAGE = {
    "enc_output": "output_proj", "enc_output_norm": "output_norm", "pos_trans": "query_proj",
    "pos_trans_norm": "query_norm",
}  # fmt: skip


def transformer_state_from_transformers(
    state: Mapping[str, Tensor], prefix: str = "model."
) -> dict[str, Tensor]:
    """transformers' ``DeformableDetrModel`` weights → ``deformable_detr_transformer`` keys.

    Reads ``{prefix}level_embed``, ``query_position_embeddings``, ``reference_points`` (or,
    two-stage — recognised by ``{prefix}enc_output.weight`` — ``enc_output``,
    ``enc_output_norm``, ``pos_trans`` and ``pos_trans_norm`` for ``two_stage``) and every
    ``encoder.layers.i`` / ``decoder.layers.i`` (layer counts from the keys present);
    the decoder's separate q/k/v projections become ``nn.MultiheadAttention``'s ``in_proj``.
    Other keys (backbone, input projections, heads) are ignored. For the default layers
    (``deformable_encoder_layer`` / ``deformable_decoder_layer``). Raises ``KeyError`` naming
    every missing key.
    """
    out: dict[str, Tensor] = {}
    missing: list[str] = []

    def take(src: str, dst: str) -> None:
        if prefix + src in state:
            out[dst] = state[prefix + src]
        else:
            missing.append(prefix + src)

    take("level_embed", "level_embed")
    if prefix + "enc_output.weight" in state:
        for src, dst in _TWO_STAGE.items():
            for p in _PARAMS:
                take(f"{src}.{p}", f"two_stage.{dst}.{p}")
    else:
        take("query_position_embeddings.weight", "query_embed.weight")
        for p in _PARAMS:
            take(f"reference_points.{p}", f"reference_points.{p}")
    for i in range(_layer_count(state, prefix + "encoder.layers.")):
        _deformable_layer(take, f"encoder.layers.{i}.", f"encoder.{i}.", "self_attn")
    decoder_layers = _layer_count(state, prefix + "decoder.layers.")
    if decoder_layers == 0:
        missing.append(prefix + "decoder.layers.0.*")
    for i in range(decoder_layers):
        src, dst = f"decoder.layers.{i}.", f"decoder.{i}."
        _deformable_layer(take, src, dst, "encoder_attn", "cross_attn")
        for p in _PARAMS:
            names = [f"{prefix}{src}self_attn.{x}_proj.{p}" for x in "qkv"]
            missing.extend(n for n in names if n not in state)
            if all(n in state for n in names):
                out[f"{dst}self_attn.in_proj_{p}"] = torch.cat([state[n] for n in names])
            take(f"{src}self_attn.o_proj.{p}", f"{dst}self_attn.out_proj.{p}")
            take(f"{src}self_attn_layer_norm.{p}", f"{dst}self_attn_norm.{p}")
    if missing:
        raise KeyError(f"transformer_state_from_transformers: missing keys {missing}")
    return out


def _deformable_layer(
    take: Any, src: str, dst: str, attention: str, renamed: str | None = None
) -> None:
    """The keys encoder and decoder layers share: deformable attention, its norm, the FFN."""
    renamed = renamed or attention
    norm = "self_attn_norm" if attention == "self_attn" else "cross_attn_norm"
    for p in _PARAMS:
        for name in _DEFORMABLE_ATTENTION:
            take(f"{src}{attention}.{name}.{p}", f"{dst}{renamed}.{name}.{p}")
        take(f"{src}{attention}_layer_norm.{p}", f"{dst}{norm}.{p}")
        take(f"{src}mlp.fc1.{p}", f"{dst}ffn.fc1.{p}")
        take(f"{src}mlp.fc2.{p}", f"{dst}ffn.fc2.{p}")
        take(f"{src}final_layer_norm.{p}", f"{dst}ffn_norm.{p}")


@register_converter("transformers", "set_prediction")
def convert_transformers_detr(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A transformers DETR or Deformable DETR detection state dict → ``set_prediction``.

    Deformable DETR is recognised by its ``model.level_embed``, its two-stage variant by
    ``model.enc_output`` (load it into a spec with ``two_stage: true``, ``with_box_refine:
    true`` and a ``shared: false`` head).
    """
    backbone = resnet_state_from_transformers(state)
    if "model.level_embed" in state:
        return backbone | deformable_detr_state(state)
    return backbone | detr_transformer_state(state) | detr_head_state(state)
