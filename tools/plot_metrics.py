#!/usr/bin/env python
"""Draw a run's loss, learning rate, grad norm and throughput from its metrics.jsonl to one PNG.

    python tools/plot_metrics.py OUTPUT_DIR [OUTPUT_DIR ...] [-o metrics.png]

Several output directories share each panel, one line per run, for comparison.
Validation losses appear as markers on the loss panel. Needs matplotlib (`pip install -e ".[plot]"`).
"""
import argparse
import json
import os
import sys
from typing import Dict, List

PANELS = [("lm_loss", "lm loss"), ("learning_rate", "learning rate"), ("grad_norm", "grad norm"),
          ("tokens_per_s_per_device", "tokens/s per device")]


def read_metrics(output_dir: str) -> Dict[str, List[dict]]:
    """{kind: [records]} from OUTPUT_DIR/metrics.jsonl; bad lines name the file and line."""
    path = os.path.join(output_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist: give the output_dir (--save) of a run")
    by_kind: Dict[str, List[dict]] = {}
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not a JSON line ({exc.msg})") from None
            by_kind.setdefault(record.get("kind", "train"), []).append(record)
    return by_kind


def plot(runs: Dict[str, Dict[str, List[dict]]], out_path: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("plot_metrics needs matplotlib: pip install -e \".[plot]\"") from None
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for ax, (key, title) in zip(axes.flat, PANELS):
        for index, (name, kinds) in enumerate(runs.items()):
            color = f"C{index % 10}"  # one colour per run, across panels and its validation markers
            train = [r for r in kinds.get("train", []) if r.get(key) is not None]
            if train:
                ax.plot([r["iteration"] for r in train], [r[key] for r in train], color=color, label=name)
            if key == "lm_loss":
                valid = [r for r in kinds.get("valid", []) if r.get(key) is not None]
                if valid:
                    ax.plot([r["iteration"] for r in valid], [r[key] for r in valid], "o--", color=color,
                            label=f"{name} (valid)")
        ax.set_title(title)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dirs", nargs="+", help="run output directories holding metrics.jsonl")
    parser.add_argument("-o", "--output", default=None, help="PNG to write (default: <first dir>/metrics.png)")
    args = parser.parse_args(argv)
    try:
        runs = {os.path.basename(os.path.normpath(d)) or d: read_metrics(d) for d in args.output_dirs}
    except (FileNotFoundError, ValueError) as exc:
        print(f"plot_metrics: {exc}", file=sys.stderr)
        return 1
    out = args.output or os.path.join(args.output_dirs[0], "metrics.png")
    plot(runs, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
