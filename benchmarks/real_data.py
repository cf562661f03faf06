#!/usr/bin/env python
"""The benchmark users care about: a detector trained from scratch on a small set of real photos, on the same
wall-clock budget, against ultralytics YOLOv8 through its own CLI and torchvision's FCOS through a short
torchvision-style loop, every side's test-split detections scored by our COCO evaluation (tools/eval_results.py).

    python benchmarks/real_data.py                                 # all rows, 600 s of training each (~75 min)
    python benchmarks/real_data.py --rows recipe --budget 300      # one row, shorter
    python benchmarks/real_data.py --rows recipe --sides ours --tag dfl_off --ours-extra model.head.reg_max=null

Data: BCCD (364 blood-smear photos, VOC XML, 3 classes; trainval 292 / test 72), read in place from
../shared/data/bccd (`--data`); ultralytics gets the same splits in YOLO layout via tools/convert_dataset.py
(images linked, not copied). Rows:
  same     our yolo_cspdarknet_s size n vs YOLOv8n with the same settings (imgsz, batch, AdamW, lr), our default
           schedule on our side;
  recipe   each side's own recipe at the same imgsz and batch: experiment=yolov8 vs ultralytics' defaults;
  fcos     experiment=fcos_1x with a ResNet-18 trunk (from scratch) vs torchvision's FCOS-R18 trained by a short
           torchvision-reference loop (SGD, warmup, hflip) on the same budget.
Ultralytics is installed into its own virtualenv (`--venv`, created on first use with `pip install ultralytics`):
a comparator, never a dependency of ours. Each side keeps the checkpoint its tool calls best (both select on the
test split each epoch: the same optimism on both sides). Prints a Markdown table; writes JSON to --out.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ROWS = ("same", "recipe", "fcos")
IMG_SIZE, BATCH, LR = 320, 16, 0.002  # the issue's settings: ultralytics' CLI with optimizer=AdamW lr0=0.002
YOLO_COMMON = ["model=yolo_cspdarknet_s", "model.backbone.size=n", "pipeline=yolo_style",
               f"dataset.img_size={IMG_SIZE}", f"dataset.batch_size={BATCH}"]
OURS = {
    "same": [*YOLO_COMMON, "optimizer=adamw", f"optimizer.lr={LR}"],
    "recipe": ["experiment=yolov8", "model.backbone.size=n", f"dataset.img_size={IMG_SIZE}",
               f"dataset.batch_size={BATCH}"],
    # no ImageNet weights offline: the trunk trains from scratch, all of it, with live BatchNorm (as torchvision does
    # when it gets no weights); 480x640 is the photos' own size
    "fcos": ["experiment=fcos_1x", "model/backbone=resnet18", "model.backbone.pretrained=false",
             "model.backbone.frozen_stages=-1", "model.backbone.norm_frozen=false", "model.backbone.norm_eval=false",
             "dataset.min_size=480", "dataset.max_size=640", "dataset.batch_size=4", "dataset.val_batch_size=4"],
}
ULTRALYTICS = {
    "same": [f"imgsz={IMG_SIZE}", f"batch={BATCH}", "optimizer=AdamW", f"lr0={LR}"],
    "recipe": [f"imgsz={IMG_SIZE}", f"batch={BATCH}"],
}


def run(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> None:
    """Run a command with its output in `log`; a failure shows the log's tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        code = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    if code:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{' '.join(cmd[:4])} … failed ({code}); last lines of {log}:\n{tail}")


def eval_results(results: Path, data: Path, out: Path) -> dict[str, float]:
    """Our COCO evaluation of a results file against BCCD's test split: the same scorer for every side."""
    run([sys.executable, "tools/eval_results.py", f"results={results}", "dataset=voc07", f"dataset.root={data}",
         "dataset.metric=coco", "evaluation.plots=false", f"hydra.run.dir={out}"], out / "eval.log")
    metrics = json.loads((out / "metrics.json").read_text())["bbox"]
    return {"AP50": metrics["bbox/mAP_50"], "AP": metrics["bbox/mAP"]}


# ------------------------------------------------------------------------------------------------------ ours
def train_ours(row: str, data: Path, budget: float, out: Path, extra: list[str]) -> Path:
    """tools/train.py on BCCD with `trainer.max_time` = the budget; returns the best checkpoint."""
    run_dir = out / "run"
    cmd = [sys.executable, "tools/train.py", *OURS[row], "dataset=voc07", f"dataset.root={data}", "dataset.metric=coco",
           f"trainer.max_time={budget / 3600}", "trainer.progress_bar=false", "evaluation.plots=false",
           "trainer.vis_images=0", f"hydra.run.dir={run_dir}", *extra]
    run(cmd, out / "train.log")
    best = run_dir / "checkpoints" / "best.pth"
    return best if best.is_file() else run_dir / "checkpoints" / "last.pth"


def score_ours(ckpt: Path, data: Path, out: Path) -> dict[str, float]:
    test_dir = out / "test"
    run([sys.executable, "tools/test.py", f"checkpoint={ckpt}", f"dataset.root={data}", "dataset.metric=coco",
         "evaluation.plots=false", f"output_dir={test_dir}"], out / "test.log")
    return eval_results(test_dir / "results.bbox.json", data, out / "eval")


def epochs_trained(out: Path) -> int | None:
    """The last epoch in our run's metrics.jsonl."""
    path = out / "run" / "metrics.jsonl"
    if not path.is_file():
        return None
    epochs = [json.loads(line).get("epoch", 0) for line in path.read_text().splitlines() if line.strip()]
    return max(epochs) if epochs else None


# ------------------------------------------------------------------------------------------------ ultralytics
def ultralytics_python(venv: Path) -> Path:
    """The virtualenv's python with ultralytics importable, created and filled on first use."""
    python = venv / "bin" / "python"
    if not python.is_file():
        subprocess.check_call([sys.executable, "-m", "venv", "--system-site-packages", str(venv)])
    if subprocess.call([str(python), "-c", "import ultralytics"], stderr=subprocess.DEVNULL):
        print(f"Installing ultralytics into {venv} (a comparator only: never imported by the framework)")
        subprocess.check_call([str(python), "-m", "pip", "install", "-q", "ultralytics"])
    return python


def yolo_layout(data: Path, out: Path) -> Path:
    """BCCD's trainval/test splits in YOLO layout (tools/convert_dataset.py; images linked); returns data.yaml."""
    yaml = out / "data.yaml"
    if not yaml.is_file():  # ultralytics validates on `val`: BCCD's test split, as our runs do
        run([sys.executable, "tools/convert_dataset.py", "--from", "voc", "--src", str(data), "--to", "yolo",
             "--out", str(out), "--splits", "trainval:train", "test:val"], out.parent / "convert.log")
    return yaml


PREDICT = r'''
import json, sys
from ultralytics import YOLO
weights, listing, out, imgsz = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
images = json.load(open(listing))
model = YOLO(weights)
records = []
for image_id, path in images:
    result = model.predict(path, imgsz=imgsz, conf=0.001, iou=0.7, max_det=300, device="cpu", verbose=False)[0]
    for (x0, y0, x1, y1), score, cls in zip(result.boxes.xyxy.tolist(), result.boxes.conf.tolist(),
                                            result.boxes.cls.tolist()):
        records.append({"image_id": image_id, "category_id": int(cls) + 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
                        "score": score})
json.dump(records, open(out, "w"))
'''


def test_listing(data: Path, out: Path) -> Path:
    """[image_id, path] of BCCD's test split as our VOC loader numbers it, for ultralytics' predictions."""
    from framework.data.datasets.voc import VOCDetection

    dataset = VOCDetection(str(data), years=["2007"], image_set="test")
    path = out / "test_images.json"
    path.write_text(json.dumps([[dataset.image_id(i), str(dataset.image_path(i))] for i in range(len(dataset))]))
    return path


def train_ultralytics(python: Path, row: str, data_yaml: Path, budget: float, out: Path) -> Path:
    """`yolo detect train` with `time=` the budget (ultralytics fits its schedule to it); returns best.pt."""
    yolo = python.parent / "yolo"
    cmd = [str(yolo), "detect", "train", "model=yolov8n.yaml", f"data={data_yaml}", *ULTRALYTICS[row],
           f"time={budget / 3600}", "epochs=300", "device=cpu", "plots=False", "pretrained=False", "amp=False",
           f"project={out}", "name=run", "exist_ok=True", "seed=0"]
    run(cmd, out / "train.log", env={**os.environ, "YOLO_VERBOSE": "True"})
    weights = out / "run" / "weights"
    return weights / "best.pt" if (weights / "best.pt").is_file() else weights / "last.pt"


def score_ultralytics(python: Path, weights: Path, listing: Path, data: Path, out: Path, imgsz: int) -> dict:
    results = out / "results.bbox.json"
    script = out / "predict.py"
    script.write_text(PREDICT)
    run([str(python), str(script), str(weights), str(listing), str(results), str(imgsz)], out / "predict.log")
    return eval_results(results, data, out / "eval")


def ultralytics_epochs(out: Path) -> int | None:
    path = out / "run" / "results.csv"
    if not path.is_file():
        return None
    return max(0, len(path.read_text().strip().splitlines()) - 1)


# ------------------------------------------------------------------------------------------ torchvision FCOS
def train_torchvision_fcos(data: Path, budget: float, out: Path, batch: int = 4, lr: float = 0.0025) -> Path:
    """torchvision's FCOS with a ResNet-18 FPN trunk from scratch (BatchNorm live, every layer trained: what
    torchvision's builders do without weights), trained the way its detection references do (SGD momentum 0.9,
    weight decay 1e-4, linear warmup over the first 1000 iterations from lr/1000, horizontal flip, the lr scaled to
    the batch: 0.01 per 16 images) until the budget is spent; results on the test split as COCO JSON."""
    import torch
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7
    from torchvision.transforms import v2

    from framework.data.datasets.voc import VOCDetection

    torch.manual_seed(0)
    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5,
                                   norm_layer=torch.nn.BatchNorm2d, returned_layers=[2, 3, 4],
                                   extra_blocks=LastLevelP6P7(256, 256))
    model = FCOS(backbone, num_classes=3, min_size=480, max_size=640)
    train_set = VOCDetection(str(data), years=["2007"], image_set="trainval", filter_empty=True,
                             transforms=v2.RandomHorizontalFlip(0.5))
    loader = torch.utils.data.DataLoader(train_set, batch_size=batch, shuffle=True, num_workers=2, drop_last=True,
                                         collate_fn=lambda s: tuple(zip(*s)))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    warmup = min(1000, len(loader) - 1)
    start, step, epoch = time.monotonic(), 0, 0
    model.train()
    while time.monotonic() - start < budget:
        epoch += 1
        for images, targets in loader:
            factor = min(1.0, 0.001 + (1 - 0.001) * step / warmup)
            for group in optimizer.param_groups:
                group["lr"] = lr * factor
            images = [im.float() / 255 for im in images]
            targets = [{"boxes": t["boxes"].as_subclass(torch.Tensor), "labels": t["labels"]} for t in targets]
            loss = sum(model(images, targets).values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if time.monotonic() - start >= budget:
                break
    model.eval()
    test_set = VOCDetection(str(data), years=["2007"], image_set="test")
    records = []
    with torch.no_grad():
        for i in range(len(test_set)):
            image, _ = test_set[i]
            det = model([image.float() / 255])[0]
            for (x0, y0, x1, y1), score, label in zip(det["boxes"].tolist(), det["scores"].tolist(),
                                                      det["labels"].tolist()):
                records.append({"image_id": test_set.image_id(i), "category_id": test_set.label_to_cat_id[label],
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "score": score})
    out.mkdir(parents=True, exist_ok=True)
    (out / "epochs.txt").write_text(str(epoch))
    results = out / "results.bbox.json"
    results.write_text(json.dumps(records))
    return results


# ------------------------------------------------------------------------------------------------------ main
def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| row | ours | AP50 | AP50:95 | epochs | theirs | AP50 | AP50:95 | epochs | AP50:95 ratio |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        o, t = r.get("ours") or {}, r.get("theirs") or {}
        ratio = o["AP"] / t["AP"] if o and t and t["AP"] > 0 else None
        lines.append(f"| {r['row']}{' (' + r['tag'] + ')' if r.get('tag') else ''} | {r.get('ours_name', '')} | "
                     f"{o.get('AP50', float('nan')):.3f} | {o.get('AP', float('nan')):.3f} | {o.get('epochs')} | "
                     f"{r.get('theirs_name', '')} | {t.get('AP50', float('nan')):.3f} | {t.get('AP', float('nan')):.3f} | "
                     f"{t.get('epochs')} | {'' if ratio is None else f'{ratio:.2f}'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "bccd",
                        help="BCCD in VOC layout (the folder holding VOC2007)")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {ROWS}")
    parser.add_argument("--sides", default="ours,theirs", help="ours, theirs or both")
    parser.add_argument("--budget", type=float, default=600.0, help="training seconds per run (wall clock)")
    parser.add_argument("--venv", type=Path, default=Path.home() / ".cache" / "framework-benchmarks" / "ultralytics")
    parser.add_argument("--work", type=Path, default=REPO / "work_dirs" / "real_data")
    parser.add_argument("--ours-extra", nargs="*", default=[], help="extra overrides for our runs (ablations)")
    parser.add_argument("--tag", default="", help="names this run in the table and the JSON (ablations)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "real_data.json")
    args = parser.parse_args(argv)
    data = args.data.resolve()
    if not (data / "VOC2007").is_dir():
        parser.error(f"--data {data} holds no VOC2007 folder. The default is shared/data/bccd beside this checkout; "
                     f"from a clone elsewhere pass --data /path/to/shared/data/bccd")
    rows = [r for r in args.rows.split(",") if r]
    unknown = set(rows) - set(ROWS)
    if unknown:
        parser.error(f"unknown rows {sorted(unknown)}; choose from {ROWS}")
    sides = set(args.sides.split(","))
    stamp = time.strftime("%Y%m%d_%H%M%S")
    work = args.work / (stamp + (f"_{args.tag}" if args.tag else ""))
    results: list[dict[str, Any]] = []
    python = listing = data_yaml = None
    if "theirs" in sides and any(r in ULTRALYTICS for r in rows):
        python = ultralytics_python(args.venv)
        data_yaml = yolo_layout(data, args.work / "bccd_yolo")
        work.mkdir(parents=True, exist_ok=True)
        listing = test_listing(data, work)
    for row in rows:
        entry: dict[str, Any] = {"row": row, "tag": args.tag, "budget_s": args.budget,
                                 "ours_name": "fcos_1x R18" if row == "fcos" else
                                 ("experiment=yolov8 n" if row == "recipe" else "yolo_cspdarknet_s n"),
                                 "theirs_name": "torchvision FCOS R18" if row == "fcos" else
                                 ("ultralytics YOLOv8n defaults" if row == "recipe" else "ultralytics YOLOv8n")}
        if "ours" in sides:
            out = work / row / "ours"
            started = time.monotonic()
            ckpt = train_ours(row, data, args.budget, out, args.ours_extra)
            entry["ours"] = {**score_ours(ckpt, data, out), "epochs": epochs_trained(out),
                             "wall_s": round(time.monotonic() - started, 1), "overrides": OURS[row] + args.ours_extra}
        if "theirs" in sides:
            out = work / row / "theirs"
            started = time.monotonic()
            if row == "fcos":
                scores = eval_results(train_torchvision_fcos(data, args.budget, out), data, out / "eval")
                epochs = int((out / "epochs.txt").read_text())
            else:
                weights = train_ultralytics(python, row, data_yaml, args.budget, out)
                scores = score_ultralytics(python, weights, listing, data, out, IMG_SIZE)
                epochs = ultralytics_epochs(out)
            entry["theirs"] = {**scores, "epochs": epochs, "wall_s": round(time.monotonic() - started, 1)}
        results.append(entry)
        print(markdown([entry]), flush=True)
    table = markdown(results)
    print(table)
    payload = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                           "python": platform.python_version()},
               "budget_s": args.budget, "work_dir": str(work), "rows": results, "table": table}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    runs = previous.get("runs", []) if isinstance(previous, dict) else []
    args.out.write_text(json.dumps({"runs": [*runs, payload]}, indent=2))
    return payload


if __name__ == "__main__":
    main()
