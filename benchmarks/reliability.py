#!/usr/bin/env python
"""The reliability battery, run from the outside: every case a careless or hostile user tried.

Each case writes what it needs (specs, files, checkpoints) into a fresh temporary folder, runs
one tool (or two, in turn) as a user would, bounded in time and in memory (an address-space
limit), and compares the exit status and the tool's error line with what the case expects.
A case holds when both match, nothing printed a traceback, and its after-check (what is left
on disk) passes. Prints a Markdown table: case, held / FAILED, seconds, the observed line.
``benchmarks/results/reliability_battery.md`` lists the cases with the tests that pin them.

``T`` below is ``tools/train.py specs/tiny_ssd_shapes.yaml`` on 4 + 2 images, 2 steps.

examples:
  python benchmarks/reliability.py              # every case, 2 at a time (a few minutes)
  python benchmarks/reliability.py --fast       # the quick ones (CI runs these)
  python benchmarks/reliability.py --only symlink_loop --only huge_num_classes
"""

from __future__ import annotations

import os
import pickle
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from anchorage.core.cli import make_parser, run_tool

ROOT = Path(__file__).resolve().parents[1]
DEMO = "specs/tiny_ssd_shapes.yaml"
MEMORY = 6 * 2**30  # address-space bound per command (torch maps ~3 GB of libraries)


@dataclass(frozen=True)
class Case:
    """``setup(tmp)`` writes the inputs and returns the commands to run in turn (argv lists,
    a ``.py`` first item run with this interpreter; see ``_run`` for a step that sends a
    signal); the last one is judged:
    ``code`` and ``line`` (a regex searched in its error line) must match; ``after(tmp)``
    returns what is wrong on disk afterwards, or None."""

    name: str
    what: str
    setup: Callable[[Path], list]
    code: int
    line: str
    fast: bool = False
    timeout: float = 180.0
    after: Callable[[Path], str | None] = field(default=lambda tmp: None)


def small(tmp: Path, cache: Path, work: str = "w", *more: str) -> list[str]:
    """``T``: the demo spec on 4 + 2 cached images, 2 steps, into ``tmp / work``."""
    sets = [
        f"data.train.dataset.root={cache}", "data.train.dataset.num_images=4",
        f"data.val.dataset.root={cache}", "data.val.dataset.num_images=2",
        "data.train.batch_size=2", "data.val.batch_size=2", "train.max_iters=2",
        "train.warmup_iters=1", "train.log_images=0", *more,
    ]  # fmt: skip
    argv = ["tools/train.py", DEMO, "--work-dir", str(tmp / work), "--no-progress"]
    return argv + [a for s in sets for a in ("--set", s)]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def print_spec(path: Path, *sets: str) -> list[str]:
    return ["tools/print_spec.py", str(path), *[a for s in sets for a in ("--set", s)]]


class _Payload:
    """Pickles to a call of ``os.system``: the checkpoint a hostile user hands over."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


def cases(cache: Path) -> list[Case]:
    def loop(tmp: Path) -> list:
        (tmp / "loopA.yaml").symlink_to("loopB.yaml")
        (tmp / "loopB.yaml").symlink_to("loopA.yaml")
        return [print_spec(write(tmp / "top.yaml", "_base_: loopA.yaml\n"))]

    def base(target: str) -> Callable[[Path], list]:
        def setup(tmp: Path) -> list:
            if target == "folder":
                (tmp / "dir.yaml").mkdir()
            elif target == "fifo":
                os.mkfifo(tmp / "pipe.yaml")
            name = {"folder": "dir.yaml", "fifo": "pipe.yaml"}.get(target, target)
            return [print_spec(write(tmp / "top.yaml", f"_base_: {name}\n"))]

        return setup

    def bomb(tmp: Path) -> list:
        lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
        return [print_spec(write(tmp / "bomb.yaml", "\n".join(lines) + "\n"))]

    def deep(tmp: Path) -> list:
        return [print_spec(write(tmp / "deep.yaml", "a: " + "[" * 5000 + "]" * 5000 + "\n"))]

    def malicious(tmp: Path) -> list:
        with open(tmp / "evil.pt", "wb") as f:
            pickle.dump({"model": _Payload(tmp / "ran")}, f)
        return [["tools/eval.py", DEMO, str(tmp / "evil.pt")]]

    def empty_ckpt(tmp: Path) -> list:
        (tmp / "empty.pt").write_bytes(b"")
        return [["tools/eval.py", DEMO, str(tmp / "empty.pt")]]

    def thin_image(tmp: Path) -> list:
        from PIL import Image

        Image.new("RGB", (5000, 1)).save(tmp / "thin.png")
        return [["tools/infer.py", DEMO, str(tmp / "none.pt"), str(tmp / "thin.png"),
                 "--out", str(tmp / "out")]]  # fmt: skip

    def out_is_file(tmp: Path) -> list:
        from PIL import Image

        Image.new("RGB", (32, 32)).save(tmp / "a.png")
        return [["tools/infer.py", DEMO, str(tmp / "none.pt"), str(tmp / "a.png"),
                 "--out", str(write(tmp / "out", "a file"))]]  # fmt: skip

    def no_temp_left(tmp: Path) -> str | None:
        temps = [p.name for p in tmp.rglob(".*.tmp")]
        return f"temp files left: {temps}" if temps else None

    def nothing_ran(tmp: Path) -> str | None:
        return "the pickled command ran" if (tmp / "ran").exists() else None

    def full_disk(tmp: Path) -> list:
        disk = tmp / "disk"
        disk.mkdir()
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(disk)], capture_output=True
        )
        if mounted.returncode != 0:
            raise Unavailable("needs a 16 KB tmpfs mount (root)")
        first = small(tmp, cache)
        return [first, ["tools/eval.py", DEMO, str(tmp / "w" / "last.pt"), "--set",
                        f"data.val.dataset.root={cache}", "--set", "data.val.dataset.num_images=2",
                        "--no-progress", "--detections", str(disk / "dets.json")]]  # fmt: skip

    def unmount(tmp: Path) -> str | None:
        subprocess.run(["umount", str(tmp / "disk")], capture_output=True)
        return no_temp_left(tmp)

    def sigterm_resume(tmp: Path) -> list:
        # 40 images in batches of 2: SIGTERM at iteration 2 of the 20 of the first epoch
        own = (f"data.train.dataset.root={tmp / 'cache'}", "data.train.dataset.num_images=40",
               "train.max_iters=null", "train.epochs=1", "train.log_interval=1")  # fmt: skip
        first = small(tmp, cache, "w", *own)
        metrics = tmp / "w" / "metrics.jsonl"
        return [(first, ("SIGTERM", metrics, r'"iteration": 2\b'), 143), [*first, "--resume"]]

    def resumed(tmp: Path) -> str | None:
        import torch

        state = torch.load(tmp / "w" / "last.pt", weights_only=True)
        done = (state["epoch"], state["iteration"])
        return None if done == (1, 20) else f"last.pt at epoch, iteration {done}, not (1, 20)"

    def work_dir_file(tmp: Path) -> list:
        write(tmp / "f", "a file")
        return [small(tmp, cache, "f")]

    def rerun(tmp: Path) -> list:
        return [small(tmp, cache), small(tmp, cache)]

    return [
        Case("symlink_loop", "_base_ a symlink loop (loopA -> loopB -> loopA)", loop, 2,
             r"symlink loop: .*loopA\.yaml -> .*loopB\.yaml -> .*loopA\.yaml", fast=True),
        Case("base_dev_zero", "_base_: /dev/zero", base("/dev/zero"), 2,
             r"/dev/zero: exists but is a character device", fast=True),
        Case("base_folder", "_base_ a folder", base("folder"), 2,
             r"exists but is a folder, not a spec file", fast=True),
        Case("base_fifo", "_base_ a FIFO (never opened)", base("fifo"), 2,
             r"exists but is a named pipe \(FIFO\)", fast=True, timeout=60),
        Case("huge_num_classes", "--set model.num_classes=1000000000000",
             lambda tmp: [print_spec(ROOT / DEMO, "model.num_classes=1000000000000")], 2,
             r"model\.num_classes: 1000000000000 makes a model of 41\.6 PB", fast=True),
        Case("int_beyond_int64", "--set model.num_classes=99999999999999999999",
             lambda tmp: [print_spec(ROOT / DEMO, "model.num_classes=99999999999999999999")],
             2, r"out of range \(it must fit in 64 bits\)"),
        Case("long_set_value", "a 120 KB --set value", lambda tmp: [print_spec(
             ROOT / DEMO, "model.backbone.type=" + "a" * 120_000)], 2,
             r"^error: --set model\.backbone\.type=a{60}…a{12} \(120020 characters\).{0,400}$",
             fast=True),
        Case("alias_bomb", "1 KB spec of aliases 8 levels deep", bomb, 2,
             r"refused: the YAML expands to more than", fast=True, timeout=60),
        Case("deep_nesting", "5,000-deep nesting", deep, 2, r"nested deeper than"),
        Case("pickled_code", "eval.py on a checkpoint pickling os.system", malicious, 2,
             r"evil\.pt: (refused to load|not a readable checkpoint).*nothing in it was run",
             after=nothing_ran),
        Case("empty_checkpoint", "eval.py on a 0-byte checkpoint", empty_ckpt, 2,
             r"the file ends early \(0 bytes"),
        Case("work_dir_file", "T with --work-dir a file", work_dir_file, 2,
             r"work dir .* is a file, not a folder", fast=True),
        Case("work_dir_256_bytes", "T with a 256-byte work-dir name",
             lambda tmp: [small(tmp, cache, "w" * 256)], 2,
             r"a name in it is 256 bytes; file systems allow at most 255", fast=True),
        Case("work_dir_unicode_255", "T into 'wörk 日本' and a 255-byte name, both train",
             lambda tmp: [small(tmp, cache, "wörk 日本"), small(tmp, cache, "w" * 255)], 0,
             r'"iteration": 2'),
        Case("rerun_without_resume", "T twice into one work dir", rerun, 2,
             r"--resume.*--overwrite|--overwrite.*--resume"),
        Case("thin_image", "infer.py on a 1x5000 image", thin_image, 2,
             r"image is 1x5000 pixels .* side ratio", fast=True),
        Case("infer_out_file", "infer.py --out a file", out_is_file, 2, r"--out .* is a file"),
        Case("full_disk_eval", "eval.py --detections onto a full 16 KB disk", full_disk, 2,
             r"disk full / not writable: .*dets\.json", after=unmount),
        Case("sigterm_then_resume", "SIGTERM in the first epoch of T, then --resume",
             sigterm_resume, 0, r'"iteration": 20', after=resumed, timeout=300),
    ]  # fmt: skip


class Unavailable(Exception):
    """The machine cannot run this case (a mount that needs root); reported, not failed."""


@dataclass
class Outcome:
    case: Case
    held: bool | None  # None: not run here
    seconds: float
    line: str


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def _run(step: list | tuple, timeout: float) -> tuple[int, str, str]:
    """Run one step: an argv, or ``(argv, (signal, file, regex), expected exit status)`` that
    sends the signal once ``file`` matches ``regex`` and must exit with that status."""
    argv, trigger, expected = step if isinstance(step, tuple) else (step, None, None)
    argv = [sys.executable, *argv] if argv[0].endswith(".py") else list(argv)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ANCHORAGE_DISABLE_PLUGIN_AUTOLOAD": "1"}
    child = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_limit_memory,
    )  # fmt: skip
    if trigger is not None:
        name, file, pattern = trigger
        deadline = time.monotonic() + timeout
        while child.poll() is None and time.monotonic() < deadline:
            if file.is_file() and re.search(pattern, file.read_text(errors="replace")):
                child.send_signal(getattr(signal, name))
                break
            time.sleep(0.02)
    out, err = child.communicate(timeout=timeout)
    if expected is not None and child.returncode != expected:
        raise StepFailed(f"{' '.join(argv[1:3])}: exit {child.returncode}, not {expected}: "
                         f"{error_line(out, err)}")  # fmt: skip
    return child.returncode, out, err


class StepFailed(Exception):
    """A step before the judged one did not end as the case needs."""


def error_line(out: str, err: str) -> str:
    """The line a user reads: the ``error:`` line, else stderr's last, else stdout's last."""
    for text in (err, out):
        errors = [x for x in text.splitlines() if x.startswith("error:")]
        if errors:
            return errors[-1]
    for text in (err, out):
        lines = [x for x in text.splitlines() if x.strip()]
        if lines:
            return lines[-1]
    return ""


def run_case(case: Case) -> Outcome:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        try:
            steps = case.setup(tmp)
        except Unavailable as exc:
            return Outcome(case, None, 0.0, f"not run: {exc}")
        try:
            for step in steps[:-1]:
                _run(step, case.timeout)
            code, out, err = _run(steps[-1], case.timeout)
        except subprocess.TimeoutExpired:
            case.after(tmp)
            return Outcome(case, False, time.perf_counter() - start, f"past {case.timeout} s")
        except StepFailed as exc:
            case.after(tmp)
            return Outcome(case, False, time.perf_counter() - start, str(exc))
        line = error_line(out, err)
        wrong = case.after(tmp)
        held = (
            code == case.code
            and re.search(case.line, line) is not None
            and "Traceback" not in out + err
            and wrong is None
        )
        shown = line if len(line) <= 300 else line[:240] + f"… ({len(line)} characters)"
        if code != case.code:
            shown = f"exit {code}: {shown}"
        if wrong:
            shown += f" [{wrong}]"
        return Outcome(case, held, time.perf_counter() - start, shown)


def prepare_cache(cache: Path) -> None:
    """Generate the shapes images the training cases share, once, before they run at once."""
    from anchorage.core import load_spec
    from anchorage.core.data import build_dataset

    sets = [f"data.train.dataset.root={cache}", "data.train.dataset.num_images=4",
            f"data.val.dataset.root={cache}", "data.val.dataset.num_images=2"]  # fmt: skip
    spec = load_spec(ROOT / DEMO, sets)
    for split in ("train", "val"):
        build_dataset(spec, split)


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(__doc__, spec=False)
    parser.add_argument("--fast", action="store_true", help="only the quick cases")
    parser.add_argument("--only", action="append", default=[], help="run this case (repeat)")
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as cache_dir:
        cache = Path(cache_dir)
        chosen = [c for c in cases(cache) if (not args.fast or c.fast)]
        if args.only:
            unknown = set(args.only) - {c.name for c in chosen}
            if unknown:
                parser.error(f"--only: no case {sorted(unknown)}; see --list")
            chosen = [c for c in chosen if c.name in args.only]
        if args.list:
            for c in chosen:
                print(f"{c.name:24} {'fast ' if c.fast else '     '}{c.what}")
            return 0
        prepare_cache(cache)
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            outcomes = list(pool.map(run_case, chosen))
    print("| case | what | result | s | observed |")
    print("|---|---|---|---|---|")
    for o in outcomes:
        result = {True: "held", False: "FAILED", None: "not run"}[o.held]
        observed = o.line.replace("|", "\\|")
        print(f"| {o.case.name} | {o.case.what} | {result} | {o.seconds:.1f} | {observed} |")
    failed = [o.case.name for o in outcomes if o.held is False]
    held = sum(o.held is True for o in outcomes)
    print(f"\n{held} held, {len(failed)} failed, {len(outcomes) - held - len(failed)} not run")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
