"""docs/studies/all.sh's bookkeeping: the provenance of a step, the tables a benchmark printed, the wall time of
the study and the concatenated tables.

    python docs/studies/all_report.py provenance-now FILE   this process's provenance block (as results.json's)
    python docs/studies/all_report.py provenance DIR        a summary of every provenance block under DIR
    python docs/studies/all_report.py log-tables LOG ...    the markdown tables a benchmark printed, with captions
    python docs/studies/all_report.py log-text LOG ...      a script's output, as a code block
    python docs/studies/all_report.py json-rows FILE ...    one row per JSON object (a file, or a log's last line)
    python docs/studies/all_report.py walltime OUT          wall time per step and in all; this machine's CPU
    python docs/studies/all_report.py concat OUT            OUT/results_tables.md

``OUT/walltime.tsv`` has one line per attempt of a step, ``step<TAB>start<TAB>end<TAB>seconds<TAB>commit``
(all.sh appends it when the attempt ends, finished or interrupted); the total wall time is the sum of every
line, so a study spread over several sessions adds up. ``concat`` orders the finished steps (those with
``OUT/<step>/table.md``) by where their section title (``OUT/<step>/title.txt``) stands in docs/results.md,
and puts each table under its title and the CPU of its runs.
"""

from __future__ import annotations

import glob
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS_MD = os.path.join(ROOT, "docs", "results.md")
WALLTIME = "walltime.tsv"
PROVENANCE = "provenance.json"  # a bench step's: the provenance of the process that ran it
TABLES = "results_tables.md"


# -- provenance -------------------------------------------------------------------------------------------


def provenance_blocks(folder: str) -> list:
  """Every provenance block under ``folder``: each ``results.json``'s (and, for a run resumed in another
  environment, each recorded part's: ``provenance_segments``) and each :data:`PROVENANCE` file."""
  blocks = []
  for path in sorted(glob.glob(os.path.join(folder, "**", "results.json"), recursive=True)
                     + glob.glob(os.path.join(folder, "**", PROVENANCE), recursive=True)):
    try:
      with open(path) as f:
        data = json.load(f)
    except (OSError, ValueError):
      continue
    block = data.get("provenance") if os.path.basename(path) == "results.json" else data
    if isinstance(block, dict):
      blocks.append(block)
    if os.path.basename(path) == "results.json":
      segments = data.get("provenance_segments") or []
      blocks += [s["provenance"] for s in segments if isinstance(s.get("provenance"), dict)]
  return blocks


def cpu_text(cpu: dict | None) -> str:
  """``MODEL NAME, family F, model M; avx2 yes, avx512f no, amx no`` of a provenance ``cpu`` entry."""
  if not cpu:
    return "not recorded"
  isa = cpu.get("isa") or []
  flags = {"avx2": "avx2" in isa, "avx512f": "avx512f" in isa, "amx": any(f.startswith("amx") for f in isa)}
  return (f"{cpu.get('model_name')}, family {cpu.get('family')}, model {cpu.get('model')}; "
          + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in flags.items()))


def _counted(values) -> str:
  counts = {}
  for v in values:
    counts[v] = counts.get(v, 0) + 1
  return ", ".join(f"{v} ({n})" if len(counts) > 1 else str(v) for v, n in counts.items()) or "not recorded"


def provenance_summary(folder: str) -> str:
  """The commits, CPUs, jax/jaxlib versions and convolution lowerings recorded under ``folder`` (markdown), each
  value with its number of blocks when they differ."""
  blocks = provenance_blocks(folder)
  if not blocks:
    return "Provenance: none recorded under this step's folder.\n"

  def commit(b):
    lw = b.get("lwcl") or {}
    return f"{(lw.get('commit') or '?')[:7]}{' (dirty)' if lw.get('dirty') else ''}"

  packages = lambda b: b.get("packages") or {}  # noqa: E731
  return "\n".join([
      f"Provenance ({len(blocks)} provenance blocks: results.json files and the benchmarks' {PROVENANCE}):",
      "",
      f"- commit: {_counted(commit(b) for b in blocks)}",
      f"- CPU: {_counted(cpu_text(b.get('cpu')) for b in blocks)}",
      f"- jax {_counted(packages(b).get('jax') for b in blocks)}, jaxlib "
      f"{_counted(packages(b).get('jaxlib') for b in blocks)}",
      f"- convolutions: {_counted(b.get('conv_impl') or '-' for b in blocks)}"]) + "\n"


def step_cpu(folder: str) -> str:
  """The CPU(s) of a step's provenance blocks, one text."""
  return _counted(cpu_text(b.get("cpu")) for b in provenance_blocks(folder))


def provenance_now(path: str) -> None:
  """Writes this process's provenance block (:func:`lwcl.platform.provenance.collect`) to ``path``."""
  import lwcl  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import  (its __version__)
  from lwcl.platform import provenance  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    json.dump(provenance.collect(), f, indent=1)


# -- what scripts printed ---------------------------------------------------------------------------------


def log_tables(text: str) -> str:
  """The markdown tables in a benchmark's output (runs of lines starting with ``|``), each after the last
  non-empty line before it (its caption), separated by blank lines; the last 20 lines as a code block
  when there is no table."""
  lines = text.splitlines()
  blocks, i = [], 0
  while i < len(lines):
    if lines[i].lstrip().startswith("|"):
      j = i
      while j < len(lines) and lines[j].lstrip().startswith("|"):
        j += 1
      caption = next((lines[k].strip() for k in range(i - 1, -1, -1) if lines[k].strip()), "")
      blocks.append(([caption, ""] if caption and not caption.startswith("|") else []) + lines[i:j])
      i = j
    else:
      i += 1
  if not blocks:
    return log_text(text)
  return "\n\n".join("\n".join(b) for b in blocks) + "\n"


def log_text(text: str, last: int = 20) -> str:
  """The last ``last`` non-empty lines of a script's output as a code block."""
  lines = [line for line in text.splitlines() if line.strip()][-last:]
  return "```\n" + "\n".join(lines) + "\n```\n"


def _flat(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    elif not isinstance(v, list):
      out[f"{prefix}{k}"] = v
  return out


def json_rows(paths) -> str:
  """One markdown row per file: a JSON file's object, or the last line of a log that is a JSON object (what
  ``bin/bench stream throughput`` prints); nested objects as dotted columns, lists left out.

  Raises:
    ValueError: a file without a JSON object.
  """
  rows = []
  for path in paths:
    with open(path, errors="replace") as f:
      text = f.read()
    candidates = [text] + [line for line in reversed(text.splitlines()) if line.strip().startswith("{")][:1]
    data = None
    for c in candidates:
      try:
        data = json.loads(c)
        break
      except ValueError:
        continue
    if not isinstance(data, dict):
      raise ValueError(f"{path}: no JSON object (a .json file, or a log whose last such line is one)")
    rows.append((os.path.splitext(os.path.basename(path))[0], _flat(data)))
  keys = list(dict.fromkeys(k for _, row in rows for k in row))
  fmt = lambda v: "-" if v is None else (f"{v:,.1f}" if isinstance(v, float) else str(v))  # noqa: E731
  return "\n".join(["| file | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
                   + [f"| {name} | " + " | ".join(fmt(row.get(k)) for k in keys) + " |" for name, row in rows]) + "\n"


def _logs(paths, render) -> str:
  out = []
  for path in paths:
    with open(path, errors="replace") as f:
      out.append(f"`{os.path.basename(path)}`:\n\n{render(f.read())}")
  return "\n".join(out)


# -- wall time --------------------------------------------------------------------------------------------


def read_walltime(path: str) -> list:
  """The rows of a walltime.tsv: ``[(step, start, end, seconds, commit, note)]``, seconds a float, note the
  optional sixth field ('' when absent; all.sh writes ``killed`` for an attempt that was SIGKILLed, whose end
  is its last heartbeat, and ``failed (exit N)`` for one that stopped on an error or a signal).

  Raises:
    ValueError: a line that does not have five or six fields, or whose seconds are not a number.
  """
  rows = []
  with open(path) as f:
    for n, line in enumerate(f, 1):
      if not line.strip() or line.startswith("#"):
        continue
      fields = line.rstrip("\n").split("\t")
      if len(fields) not in (5, 6):
        raise ValueError(f"{path}:{n}: {len(fields)} fields, not step, start, end, seconds, commit[, note]")
      try:
        seconds = float(fields[3])
      except ValueError:
        raise ValueError(f"{path}:{n}: seconds {fields[3]!r} is not a number") from None
      rows.append((fields[0], fields[1], fields[2], seconds, fields[4], fields[5] if len(fields) == 6 else ""))
  return rows


def walltime_summary(rows) -> dict:
  """``{'steps': {step: {'seconds', 'attempts'}} in first-seen order, 'total_seconds', 'attempts', 'killed',
  'commits'}`` of :func:`read_walltime`'s rows: the total is the sum over every attempt of every step;
  ``killed`` counts the attempts ended by SIGKILL (their time runs to their last heartbeat), ``failed`` those
  stopped by an error or a signal."""
  steps = {}
  for step, _, _, seconds, _, _ in rows:
    s = steps.setdefault(step, {"seconds": 0.0, "attempts": 0})
    s["seconds"] += seconds
    s["attempts"] += 1
  commits = list(dict.fromkeys(r[4] for r in rows))
  return {"steps": steps, "total_seconds": sum(r[3] for r in rows), "attempts": len(rows),
          "killed": sum(r[5] == "killed" for r in rows), "failed": sum(r[5].startswith("failed") for r in rows),
          "commits": commits}


def attempts_text(summary: dict) -> str:
  """``N step attempts`` and, when some were killed or failed, how many (and how a killed one's time was
  counted)."""
  killed, failed = summary["killed"], summary.get("failed", 0)
  notes = ([f"{killed} killed by SIGKILL, counted to their last heartbeat"] if killed else []) + (
      [f"{failed} stopped by an error or a signal"] if failed else [])
  return f"{summary['attempts']} step attempts" + (f" ({'; '.join(notes)})" if notes else "")


def duration(seconds: float) -> str:
  """``1 h 02 min 03 s`` (hours only when there are any)."""
  s = int(round(seconds))
  h, m = s // 3600, s % 3600 // 60
  return (f"{h} h {m:02d} min {s % 60:02d} s" if h else f"{m} min {s % 60:02d} s")


def walltime_text(out: str) -> str:
  """The per-step and total wall time of ``out/walltime.tsv`` and this machine's CPU, as printed at the end."""
  path = os.path.join(out, WALLTIME)
  summary = walltime_summary(read_walltime(path) if os.path.exists(path) else [])
  lines = [f"{'step':<24} {'seconds':>10} {'attempts':>9}"]
  lines += [f"{step:<24} {s['seconds']:>10.0f} {s['attempts']:>9}" for step, s in summary["steps"].items()]
  lines.append(f"total wall time: {summary['total_seconds']:.0f} s ({duration(summary['total_seconds'])}), the sum "
               f"over {attempts_text(summary)} in {path}; commits {', '.join(summary['commits']) or '-'}")
  from lwcl.platform import provenance  # pylint: disable=g-import-not-at-top
  lines.append(f"CPU: {cpu_text(provenance.cpu_info())}")
  return "\n".join(lines) + "\n"


# -- the concatenated tables ------------------------------------------------------------------------------


def section_titles(path: str = RESULTS_MD) -> list:
  """The ``## `` section titles of docs/results.md, in order."""
  with open(path) as f:
    return [line[3:].strip() for line in f if line.startswith("## ")]


def concat(out: str) -> str:
  """Writes ``out/results_tables.md`` (see the module's docstring); returns its path."""
  titles = section_titles()
  steps = []
  for table in glob.glob(os.path.join(out, "*", "table.md")):
    folder = os.path.dirname(table)
    with open(os.path.join(folder, "title.txt")) as f:
      title = f.read().strip()
    steps.append((titles.index(title) if title in titles else len(titles), title, folder))
  path = os.path.join(out, WALLTIME)
  summary = walltime_summary(read_walltime(path) if os.path.exists(path) else [])
  parts = ["# docs/results.md's CPU tables, regenerated", "",
           f"By `docs/studies/all.sh {out}` ({len(steps)} steps finished). Total wall time of the steps: "
           f"{summary['total_seconds']:.0f} s ({duration(summary['total_seconds'])}), the sum over "
           f"{attempts_text(summary)} in `{WALLTIME}` (commits {', '.join(summary['commits']) or '-'}).",
           ""]
  for _, title, folder in sorted(steps):
    with open(os.path.join(folder, "table.md")) as f:
      table = f.read().rstrip("\n")
    seconds = summary["steps"].get(os.path.basename(folder), {}).get("seconds", 0.0)
    parts += [f"## {title}", "", f"CPU: {step_cpu(folder)}. Step `{os.path.basename(folder)}`, wall time "
              f"{duration(seconds)}.", "", table, ""]
  target = os.path.join(out, TABLES)
  with open(target + ".tmp", "w") as f:
    f.write("\n".join(parts))
  os.replace(target + ".tmp", target)
  return target


def main(argv=None) -> None:
  argv = sys.argv[1:] if argv is None else argv
  what, args = (argv[0], argv[1:]) if argv else ("", [])
  one = len(args) == 1
  commands = {"provenance-now": (one, lambda: provenance_now(args[0])),
              "provenance": (one, lambda: print(provenance_summary(args[0]), end="")),
              "log-tables": (bool(args), lambda: print(_logs(args, log_tables), end="")),
              "log-text": (bool(args), lambda: print(_logs(args, log_text), end="")),
              "json-rows": (bool(args), lambda: print(json_rows(args), end="")),
              "walltime": (one, lambda: print(walltime_text(args[0]), end="")),
              "concat": (one, lambda: print(f"tables: {concat(args[0])}"))}
  ok, action = commands.get(what, (False, None))
  if not ok:
    print("usage:\n" + __doc__.split("\n\n")[1], file=sys.stderr)
    sys.exit(2)
  try:
    action()
  except (OSError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)

if __name__ == "__main__":
  main()
