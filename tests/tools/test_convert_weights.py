"""tools/convert_weights.py and its library function, on a small torchvision SSD."""

import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD

from anchorage.core import CheckpointError, build_component, build_model, load_checkpoint, load_spec
from anchorage.core.cli import run_tool
from anchorage.plugins.models.convert import CONVERTERS, convert_weights

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "convert_weights.py"
RATIOS = [[2], [2], [2]]
SCALES = [0.2, 0.4, 0.7, 0.9]
MODEL = {
    "type": "single_shot",
    "num_classes": 2,
    "preprocess": {"fixed_size": [64, 64], "size_divisible": 1},
    "backbone": {"type": "tiny_ssd_base", "base_channels": [4, 8], "extra_channels": [8]},
    "anchor_generator": {"type": "ssd_default_boxes", "aspect_ratios": RATIOS, "scales": SCALES},
    "postprocessor": {"type": "multiclass_nms", "score_thresh": 0.2},
}


@pytest.fixture
def files(tmp_path):
    torch.manual_seed(0)
    backbone = build_component(
        "backbone",
        {
            "type": "tiny_ssd_base",
            **{k: MODEL["backbone"][k] for k in ("base_channels", "extra_channels")},
        },
    )
    ref = SSD(backbone, DefaultBoxGenerator(RATIOS, scales=SCALES), (64, 64), 3, score_thresh=0.2)
    src = tmp_path / "tv.pth"
    torch.save(ref.state_dict(), src)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"model": MODEL}))
    return ref.eval(), src, spec


def test_converted_weights_reproduce_torchvision(files, tmp_path):
    ref, src, spec_path = files
    spec = load_spec(spec_path)
    out = convert_weights("torchvision", src, spec, tmp_path / "ours.pt")
    model = build_model(spec).eval()
    load_checkpoint(model, out)
    images = [torch.rand(3, 50, 70), torch.rand(3, 64, 30)]
    with torch.no_grad():
        expected, got = ref(images), model(images)
    for e, o in zip(expected, got):
        assert len(e["scores"]) > 0
        assert torch.equal(o["labels"], e["labels"])
        torch.testing.assert_close(o["boxes"], e["boxes"], atol=1e-4, rtol=0)
        torch.testing.assert_close(o["scores"], e["scores"], atol=1e-4, rtol=0)


def test_mismatch_and_unknown_model_type_are_checkpoint_errors(files, tmp_path):
    _, src, spec_path = files
    wrong = load_spec(spec_path, ["model.num_classes=5"])
    with pytest.raises(CheckpointError, match="shape"):
        convert_weights("torchvision", src, wrong, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="no detectron converter"):
        convert_weights("detectron", src, load_spec(spec_path), tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()
    assert ("torchvision", "single_shot") in CONVERTERS


def _tool(*args):
    return subprocess.run(
        [sys.executable, str(TOOL), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )


def test_command_line_in_process(files, tmp_path, capsys):
    _, src, spec_path = files
    main = runpy.run_path(str(TOOL))["main"]
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0 and "--from" in capsys.readouterr().out
    assert main(["--list"]) == 0 and "torchvision\tsingle_shot" in capsys.readouterr().out
    argv = [str(src), "--spec", str(spec_path), "--out", str(tmp_path / "b.pt")]
    assert run_tool(main, [*argv, "--set", "model.num_classes=4"]) == 2
    assert "does not fit" in capsys.readouterr().err


@pytest.mark.slow
def test_command_line_subprocess(files, tmp_path):
    _, src, spec_path = files
    ok = _tool("--from", "torchvision", src, "--spec", spec_path, "--out", tmp_path / "o.pt")
    assert ok.returncode == 0, ok.stderr
    assert "wrote" in ok.stdout and (tmp_path / "o.pt").is_file()


def test_help_cites_eval_as_it_is() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, str(TOOL), "--help"],
        capture_output=True,
        text=True,
    )
    assert "--checkpoint" not in done.stdout and "tools/eval.py SPEC CHECKPOINT" in done.stdout
