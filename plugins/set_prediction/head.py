"""``detr_head``: class and box predictions of every decoder layer (DETR, Deformable DETR).

A linear classifier and a 3-layer MLP box branch read each decoder layer's state. Without
references (DETR) the box is ``sigmoid(mlp(h))``; with a reference point or box per query
(Deformable DETR) the MLP predicts an offset in logit space: ``sigmoid(mlp(h) + logit(ref))``,
on (cx, cy) only for a 2-d reference point. One branch is shared by every layer
(``shared: true``, DETR and Deformable DETR) or each layer has its own (iterative box
refinement, where layer l's boxes become layer l+1's references through ``refiner()``).
For a two-stage transformer (injected ``encoder_proposals``) one more classifier and box
branch score the encoder's per-pixel proposals through ``proposer()`` (transformers' extra
``class_embed[L]`` / ``bbox_embed[L]``).
"""

from __future__ import annotations

import copy
import math
from typing import Literal

import attrs
import torch
from torch import nn

from anchorage.core.fields import injected
from anchorage.core.interfaces import BoxRefiner, SetDecoding, SetHead
from anchorage.core.interfaces.set_prediction import Proposer
from anchorage.core.registry import HEADS


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``log(x / (1 - x))`` with ``x`` clamped to [0, 1] and both sides to >= ``eps``."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


class BoxMLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them: ``[...,D] -> [...,4]``."""

    def __init__(self, dim: int, num_layers: int) -> None:
        super().__init__()
        sizes = [dim] * num_layers + [4]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else torch.relu(layer(x))
        return x


@HEADS.register(
    "detr_head",
    examples=(
        {"hidden_dim": 16, "num_classes": 3, "num_layers": 2},
        {"hidden_dim": 16, "num_classes": 3, "num_layers": 2, "score": "sigmoid", "shared": False},
        {
            "hidden_dim": 16, "num_classes": 3, "num_layers": 2, "score": "sigmoid",
            "shared": False, "encoder_proposals": True,
        },
    ),
)  # fmt: skip
class DetrHead(SetHead):
    """DETR's prediction head: ``logits [L,B,Q,K]``, ``boxes [L,B,Q,4]`` cxcywh in 0..1.

    ``score: softmax`` gives K = C+1 columns, column 0 no-object; ``sigmoid`` gives K = C
    with the classifier bias set to the prior ``prior_prob`` (focal-loss training).
    ``references`` of the decoding may be None, ``[L,B,Q,2|4]`` or a sequence of L
    ``[B,Q,2|4]`` tensors (refined references can change width after the first layer).

    ``encoder_proposals`` (injected by the skeleton for a two-stage transformer) adds
    ``proposal_classifier`` and ``proposal_box_branch``, initialised as the others, and then
    zeroes every box branch's width/height bias (the references are boxes from the start, the
    paper's init). ``proposer()`` gives ``propose(query [B,S,D], proposals [B,S,4]) ->
    {logits [B,S,K], boxes [B,S,4] = sigmoid(delta + inverse_sigmoid(proposals)), scores
    [B,S]}``, the score label 1's logit (sigmoid) or log-probability (softmax).
    """

    @attrs.frozen(kw_only=True)
    class Config:
        hidden_dim: int = injected()
        num_classes: int = injected()
        num_layers: int = injected()
        encoder_proposals: bool = injected(default=False)
        score: Literal["softmax", "sigmoid"] = "softmax"
        shared: bool = True
        box_layers: int = attrs.field(default=3, validator=attrs.validators.ge(1))
        prior_prob: float = attrs.field(
            default=0.01, validator=[attrs.validators.gt(0.0), attrs.validators.lt(1.0)]
        )

    @classmethod
    def background_column(cls, cfg: Config) -> bool:
        return cfg.score == "softmax"

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        k = cfg.num_classes + 1 if cfg.score == "softmax" else cfg.num_classes
        classifier = nn.Linear(cfg.hidden_dim, k)
        box = BoxMLP(cfg.hidden_dim, cfg.box_layers)
        if cfg.score == "sigmoid":
            nn.init.constant_(classifier.bias, -math.log((1 - cfg.prior_prob) / cfg.prior_prob))
            nn.init.zeros_(box.layers[-1].weight)
            nn.init.zeros_(box.layers[-1].bias)
            nn.init.constant_(box.layers[-1].bias[2:], -2.0)
        copies = 1 if cfg.shared else cfg.num_layers
        self.classifiers = nn.ModuleList(copy.deepcopy(classifier) for _ in range(copies))
        self.box_branches = nn.ModuleList(copy.deepcopy(box) for _ in range(copies))
        if cfg.encoder_proposals:
            self.proposal_classifier = copy.deepcopy(classifier)
            self.proposal_box_branch = copy.deepcopy(box)
            for branch in (*self.box_branches, self.proposal_box_branch):
                nn.init.zeros_(branch.layers[-1].bias[2:])

    def _branch(self, layer: int) -> int:
        return 0 if self.cfg.shared else layer

    def boxes(
        self, layer: int, hidden: torch.Tensor, reference: torch.Tensor | None
    ) -> torch.Tensor:
        """Layer ``layer``'s boxes ``[B,Q,4]`` cxcywh 0..1 (the ``BoxRefiner`` signature)."""
        delta = self.box_branches[self._branch(layer)](hidden)
        if reference is None:
            return delta.sigmoid()
        ref = inverse_sigmoid(reference)
        if ref.shape[-1] == 4:
            return (delta + ref).sigmoid()
        return torch.cat((delta[..., :2] + ref, delta[..., 2:]), dim=-1).sigmoid()

    def refiner(self) -> BoxRefiner:
        return self.boxes

    def propose(self, query: torch.Tensor, proposals: torch.Tensor) -> dict[str, torch.Tensor]:
        """The encoder proposals' predictions (the ``Proposer`` signature; class docstring)."""
        if not self.cfg.encoder_proposals:
            raise ValueError(
                "detr_head: propose() needs the encoder-proposal branches, which are built "
                "only for a two-stage transformer (encoder_proposals, injected), got none"
            )
        logits = self.proposal_classifier(query)
        delta = self.proposal_box_branch(query)
        boxes = (delta + inverse_sigmoid(proposals)).sigmoid()
        if self.cfg.score == "sigmoid":
            scores = logits[..., 0]
        else:
            scores = logits.log_softmax(-1)[..., 1]
        return {"logits": logits, "boxes": boxes, "scores": scores}

    def proposer(self) -> Proposer:
        return self.propose

    def forward(self, decoding: SetDecoding) -> dict[str, torch.Tensor]:  # type: ignore[override]
        hidden, refs = decoding.hidden, decoding.references
        logits, boxes = [], []
        for layer in range(hidden.shape[0]):
            logits.append(self.classifiers[self._branch(layer)](hidden[layer]))
            boxes.append(self.boxes(layer, hidden[layer], None if refs is None else refs[layer]))
        return {"logits": torch.stack(logits), "boxes": torch.stack(boxes)}
