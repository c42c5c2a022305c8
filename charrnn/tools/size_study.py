"""The measured table behind `model.size: auto` (docs/model-size.md): which size trains best in a
budget, at fixed step counts so that the machine's load does not enter the result.

    python -m charrnn.tools.size_study --shakespeare tinyshakespeare.txt --code-dir /usr/lib/python3.11 \
        --work /tmp/size-study --jobs 2
    python -m charrnn.tools.size_study --work /tmp/size-study --table

Each row is one `charrnn train` run of a candidate size (charrnn/train/autosize.py's CANDIDATES)
for the steps that size makes in a budget of B minutes on the reference machine (STEP_SECONDS:
its measured seconds per training step, 2 cores), ending with one validation pass. Runs go `jobs`
at a time with one thread each; the results are appended to WORK/results.jsonl as they finish,
and a run already there is skipped, so an interrupted study continues where it stopped.

Corpora (built under WORK, never copied into the project):
  shk-1M    the given Shakespeare text (tinyshakespeare: 1.1 MB)
  shk-100K  its first 100,000 characters
  code-10M  the .py files under --code-dir in sorted order, up to 10,000,000 characters
  code-1M   its first 1,000,000 characters
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from charrnn.train.autosize import CANDIDATES, CORPORA, STEP_SECONDS

# (corpus, budget in reference minutes, candidate names, validation characters evaluated)
GRID = [
    ("shk-1M", 1, ("2x128", "2x256", "2x384"), None),
    ("code-10M", 1, ("2x128", "2x256", "2x384"), 200_000),
    ("shk-100K", 1, ("2x128", "2x128-d3", "2x256-d3"), None),
    ("shk-1M", 3, ("2x128", "2x256", "2x384"), None),
    ("code-10M", 3, ("2x256", "2x384", "2x512"), 200_000),
    ("shk-100K", 3, ("2x128-d3", "2x256-d3", "2x256-d5"), None),
    ("shk-1M", 10, ("2x256-d1", "2x384-d1"), None),
    ("code-10M", 10, ("2x256", "2x384"), 200_000),
    ("shk-100K", 1, ("2x256",), None),
    ("shk-100K", 3, ("2x256",), None),
    ("code-1M", 1, ("2x128", "2x256", "2x384"), None),
]


def build_corpora(work: Path, shakespeare: Path, code_dir: Path) -> dict[str, Path]:
    """The study's three texts under `work` (made once)."""
    paths = {"shk-1M": shakespeare, "shk-100K": work / "shk-100K.txt",
             "code-10M": work / "code-10M.txt", "code-1M": work / "code-1M.txt"}
    if not paths["shk-100K"].exists():
        paths["shk-100K"].write_text(shakespeare.read_text(encoding="utf-8")[:100_000], encoding="utf-8")
    if not paths["code-10M"].exists():
        parts, n = [], 0
        for f in sorted(code_dir.rglob("*.py")):
            try:
                text = f.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            parts.append(text)
            n += len(text)
            if n >= 10_000_000:
                break
        paths["code-10M"].write_text("".join(parts)[:10_000_000], encoding="utf-8")
    if not paths["code-1M"].exists():
        code = paths["code-10M"].read_text(encoding="utf-8")
        paths["code-1M"].write_text(code[:1_000_000], encoding="utf-8")
    return paths


def steps_for(candidate: str, minutes: float) -> int:
    """The steps `candidate` makes in `minutes` on the reference machine."""
    return round(minutes * 60 / STEP_SECONDS[CANDIDATES[candidate].hidden_size])


def run_one(corpus: str, path: Path, minutes: float, name: str, eval_chars, work: Path) -> dict:
    """Train one candidate for its steps and return the row (val_loss from the final pass)."""
    c, steps = CANDIDATES[name], steps_for(name, minutes)
    out = work / f"{corpus}_{minutes}_{name}"
    sets = {"model.layers": c.layers, "model.hidden_size": c.hidden_size, "model.dropout": c.dropout,
            "train.max_steps": steps, "train.eval_every": steps, "train.checkpoint_every": steps,
            "train.threads": 1, "train.out_dir": out, "train.eval_chars": eval_chars or "null"}
    cmd = [sys.executable, "-m", "charrnn", "train", "--data", str(path), "-q"]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    last = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in last if "val_loss" in r][-1]
    return {"corpus": corpus, "minutes": minutes, "candidate": name, "steps": steps,
            "val_loss": round(val["val_loss"], 4), "seconds": val["time"]}


def markdown(rows: list[dict]) -> str:
    """The results as docs/model-size.md shows them: a row per corpus and budget, a column per
    candidate (validation loss, steps), the lowest in bold."""
    names = [n for n in CANDIDATES if any(r["candidate"] == n for r in rows)]
    lines = ["| corpus | budget | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
    cells = sorted({(r["corpus"], r["minutes"]) for r in rows}, key=lambda c: (c[0], c[1]))
    for corpus, minutes in cells:
        here = {r["candidate"]: r for r in rows if (r["corpus"], r["minutes"]) == (corpus, minutes)}
        best = min(r["val_loss"] for r in here.values())
        shown = [(f"**{here[n]['val_loss']:.4f}**" if here[n]["val_loss"] == best
                  else f"{here[n]['val_loss']:.4f}") + f" ({here[n]['steps']:,})"
                 if n in here else "" for n in names]
        lines.append(f"| {corpus} | {minutes} min | " + " | ".join(shown) + " |")
    return "\n".join(lines)


def measured_rows(rows: list[dict]) -> str:
    """The results as charrnn/train/autosize.py's MEASURED lines (the corpora of its rule)."""
    kept = sorted((r for r in rows if r["corpus"] in CORPORA),
                  key=lambda r: (r["corpus"], list(CANDIDATES).index(r["candidate"]), r["steps"]))
    return "\n".join(f'    ("{r["corpus"]}", {r["minutes"]}, "{r["candidate"]}", {r["steps"]}, '
                     f'{r["val_loss"]}),' for r in kept)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shakespeare", type=Path)
    p.add_argument("--code-dir", type=Path)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--table", action="store_true", help="print the results as a table and stop")
    p.add_argument("--rows", action="store_true", help="print them as autosize.MEASURED and stop")
    a = p.parse_args(argv)
    if a.table or a.rows:
        rows = [json.loads(line) for line in (a.work / "results.jsonl").read_text().splitlines()]
        print(markdown(rows) if a.table else measured_rows(rows))
        return
    if a.shakespeare is None or a.code_dir is None:
        p.error("the study needs --shakespeare FILE and --code-dir DIR")
    a.work.mkdir(parents=True, exist_ok=True)
    corpora = build_corpora(a.work, a.shakespeare, a.code_dir)
    results = a.work / "results.jsonl"
    done = {(r["corpus"], r["minutes"], r["candidate"])
            for r in map(json.loads, results.read_text().splitlines())} if results.exists() else set()
    todo = [(c, m, n, e) for c, m, names, e in GRID for n in names if (c, m, n) not in done]

    def job(t):
        row = run_one(t[0], corpora[t[0]], t[1], t[2], t[3], a.work)
        with results.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)

    with ThreadPoolExecutor(a.jobs) as pool:
        list(pool.map(job, todo))


if __name__ == "__main__":
    main()
