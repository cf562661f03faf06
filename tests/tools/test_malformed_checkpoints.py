"""Files that load safely but are not (fit) checkpoints get one paragraph from every entry point, never a traceback:
a torchvision state dict, a checkpoint of ours without `epoch`, an empty dict, a bare tensor, a truncated checkpoint
and a text file, given to tools/train.py resume=, tools/test.py, tools/infer.py, tools/export.py and
Predictor.from_checkpoint. The paragraph names the file, says what it holds and what to do.

The tools run in this process (their script as `__main__`, with sys.argv patched): a subprocess would spend ~5 s of
CPU importing torch. One subprocess (tools/train.py resume=) checks the real exit status and stderr."""
from __future__ import annotations

import logging
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from framework.config.cli import check_overrides
from framework.config.instantiation import instantiate
from framework.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from framework.inference import Predictor

from .test_train_and_test import FAST

KINDS = ("torchvision", "no_epoch", "empty", "tensor", "truncated", "text")
CLASSES = ["circle", "square", "triangle", "cross"]

# what the paragraph must say the file holds, and what to do, per kind (the path is checked separately)
HOLDS = {
    "torchvision": ["a state dict of 354 tensors with keys like backbone.body.conv1.weight", "no config"],
    "no_epoch": ["a checkpoint of this framework with model weights and config but no `epoch`"],
    "empty": ["it holds an empty dict"],
    "tensor": ["it holds a single tensor of shape (3, 224, 224) (torch.float32)"],
    "truncated": ["it holds a zip archive that is truncated or damaged"],
    "text": ["it holds text (", "starting 'model: retinanet_r50_fpn'"],
}
TODO = {
    "torchvision": ["convert it into a checkpoint of ours with `python tools/convert_torchvision.py --arch retinanet "
                    "--weights {path} --out "],
    "no_epoch": ["can still be evaluated (python tools/test.py checkpoint={path})", "but not resumed",
                 "start a new run"],
    "empty": ["Pass a checkpoint written by tools/train.py"],
    "tensor": ["Pass a checkpoint written by tools/train.py"],
    "truncated": ["Pass a checkpoint written by tools/train.py", "copy it again"],
    "text": ["Pass a checkpoint written by tools/train.py"],
}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, shapes_root: Path) -> dict[str, Path]:
    """The six files, made once: the checkpoint of ours is a small model's (shapes_demo), built in this process."""
    import torchvision

    folder = tmp_path_factory.mktemp("malformed")
    cfg = check_overrides("train", [*FAST, f"dataset.root={shapes_root}", f"dataset.num_classes={len(CLASSES)}"])
    config = OmegaConf.to_container(cfg, resolve=False)
    config.update(experiment_name="shapes_demo", work_dir=str(folder))  # as the runner saves them (resolved)
    model = instantiate(cfg.model)
    real = {"model": model.state_dict(), "optimizer": None, "scheduler": None, "epoch": 1, "iter": 6,
            "batch_in_epoch": 0, "best": {}, "config": config, "meta": {"classes": CLASSES}}
    paths = {kind: folder / f"{kind}.pth" for kind in KINDS}
    save_checkpoint({k: v for k, v in real.items() if k != "epoch"}, paths["no_epoch"])
    whole = save_checkpoint(real, folder / "whole.pth").read_bytes()
    paths["truncated"].write_bytes(whole[: len(whole) // 2])
    tv = torchvision.models.detection.retinanet_resnet50_fpn(weights=None, weights_backbone=None)
    torch.save(tv.state_dict(), paths["torchvision"])
    torch.save({}, paths["empty"])
    torch.save(torch.zeros(3, 224, 224), paths["tensor"])
    paths["text"].write_text("model: retinanet_r50_fpn\nepoch: 12\n")  # a config mistaken for a checkpoint
    return paths


def image(shapes_root: Path) -> Path:
    return sorted((shapes_root / "images" / "val").glob("*.jpg"))[0]


def run_in_process(repo_root: Path, tool: str, args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """Run tools/<tool>.py as `__main__` in this process; its exit status and what it printed."""
    monkeypatch.chdir(repo_root)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setattr(sys, "argv", [f"tools/{tool}.py", *args])
    loggers = [logging.getLogger(), logging.getLogger("framework")]
    saved = [(lg.handlers[:], lg.level) for lg in loggers]
    code = 0
    try:
        runpy.run_path(str(repo_root / "tools" / f"{tool}.py"), run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:  # Hydra configured logging to this test's captured streams: put back what was there
        for lg, (handlers, level) in zip(loggers, saved):
            for h in lg.handlers:
                if h not in handlers:
                    h.close()
            lg.handlers[:] = handlers
            lg.setLevel(level)
    out, err = capsys.readouterr()
    return code, out + err


def assert_paragraph(text: str, kind: str, path: Path, purpose: str) -> None:
    """One paragraph (no traceback) naming the file, what it holds, what was expected and what to do."""
    assert "Traceback" not in text, text[-3000:]
    message = text[text.index("Error: ") + len("Error: "):] if "Error: " in text else text
    message = message.split("\n(Set HYDRA_FULL_ERROR=1")[0].strip()
    assert "\n" not in message, message
    assert str(path) in message, message
    for part in HOLDS[kind] + [t.format(path=path) for t in TODO[kind]]:
        assert part in message, f"{part!r} not in: {message}"
    if kind in ("truncated", "text"):
        assert "it is not a checkpoint written by this framework" in message
    elif purpose == "resume":
        assert "Resuming needs a checkpoint that tools/train.py wrote during a run" in message
    else:
        assert "need a checkpoint of this framework: a dict with `model` (the weights) and `config`" in message


def tool_args(tool: str, path: Path, shapes_root: Path, out: Path) -> list[str]:
    common = [f"dataset.root={shapes_root}", "dataset.num_workers=0", f"hydra.run.dir={out}"]
    return {
        "train": [*FAST, "trainer.max_epochs=1", "dataset.scan_images=false", f"resume={path}", *common],
        "test": [f"checkpoint={path}", *common],
        "infer": [f"checkpoint={path}", f"input={image(shapes_root)}", "save_images=false", *common],
        "export": [f"checkpoint={path}", "verify=false", f"output={out / 'model.onnx'}", *common],
    }[tool]


@pytest.mark.parametrize("tool", ["train", "test", "infer", "export"])
@pytest.mark.parametrize("kind", KINDS)
def test_tool_gives_one_paragraph(repo_root, shapes_root, files, kind, tool, tmp_path, monkeypatch, capsys):
    path = files[kind]
    args = tool_args(tool, path, shapes_root, tmp_path / "out")
    if tool == "export":  # the export itself is not what is tested: stop once the checkpoint gave a model
        import framework.export
        from framework.config.validation import ConfigError

        def reached(detector, *args, **kwargs):
            assert detector.classes == CLASSES
            raise ConfigError("export reached")

        monkeypatch.setattr(framework.export, "export_onnx", reached)
    accepted = kind == "no_epoch" and tool != "train"  # no training state: evaluation, inference, export take it
    missing = tmp_path / "missing"
    if accepted and tool in ("test", "infer"):  # then stop at the next step, a user error about something else
        args = [a for a in args if not a.startswith(("dataset.root=", "input="))]
        args += [f"dataset.root={missing}"] if tool == "test" else [f"input={missing}", f"dataset.root={shapes_root}"]
    code, text = run_in_process(repo_root, tool, args, monkeypatch, capsys)
    assert code == 2 and "Traceback" not in text, text[-3000:]
    if accepted:
        error = text[text.index("Error: "):]
        assert str(path) not in error and "checkpoint" not in error.split(". ")[0], error
        assert {"test": str(missing), "infer": f"input={missing}", "export": "export reached"}[tool] in error, error
        return
    assert_paragraph(text, kind, path, "resume" if tool == "train" else "model")
    if tool == "train":  # refused before any training step
        assert not (tmp_path / "out" / "checkpoints").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_predictor_from_checkpoint(shapes_root, files, kind):
    path = files[kind]
    if kind == "no_epoch":
        predictor = Predictor.from_checkpoint(path)
        assert predictor.classes == CLASSES and set(predictor.predict(image(shapes_root))) >= {"boxes", "scores"}
        return
    with pytest.raises(CheckpointError) as info:
        Predictor.from_checkpoint(path)
    assert_paragraph(str(info.value), kind, path, "model")


def test_torchvision_advice_works(repo_root, files, tmp_path, capsys):
    """The command the paragraph gives converts the file into a checkpoint that loads (run in this process)."""
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(files["torchvision"], purpose="model")
    command = re.search(r"`python (tools/convert_torchvision\.py [^`]*)`", str(info.value))[1].split()
    out = Path(command[command.index("--out") + 1])
    command[command.index("--out") + 1] = str(tmp_path / out.name)  # the suggested name, in a folder of this test
    assert out == files["torchvision"].with_name("torchvision_converted.pth")
    convert = runpy.run_path(str(repo_root / command[0]))["main"]
    assert convert(command[1:]) == 0, capsys.readouterr().err
    ckpt = load_checkpoint(tmp_path / out.name, purpose="resume")  # a converted checkpoint resumes as epoch 0
    assert ckpt["epoch"] == 0 and len(ckpt["meta"]["classes"]) == 80


def test_resume_in_a_real_process(repo_root, shapes_root, files, tmp_path):
    """The exit status and stderr of a real tools/train.py process (the in-process runs catch SystemExit)."""
    path = files["torchvision"]
    args = tool_args("train", path, shapes_root, tmp_path / "out")
    proc = subprocess.run([sys.executable, "tools/train.py", *args], cwd=repo_root, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.startswith("Error: Cannot resume from") or "\nError: Cannot resume from" in proc.stderr, \
        proc.stderr[-3000:]
    assert_paragraph(proc.stderr, "torchvision", path, "resume")
