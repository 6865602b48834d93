"""Commands timed in interleaved rounds (wall, CPU, peak RSS, page faults), resumably, and their table: the
measurements of docs/results.md taken with ``/usr/bin/time`` (fixed cost of a run, replicas against one
run, kernel time per allocator, streamed against in-memory data, the test suite).

    python docs/studies/timed_rounds.py run OUT [--rounds=3] [--allow-failure] NAME=COMMAND ...
    python docs/studies/timed_rounds.py table OUT [--ratio=A/B ...] [--last-line]

``run``: round 1 runs every command in the order given, then round 2, ...; each as ``bash -c COMMAND`` in the
current folder, its output in ``OUT/round<r>/<NAME>/log.txt``. ``{workdir}`` in a command stands for
``OUT/round<r>/<NAME>/run`` (a fresh folder each round: ``python -m lwcl.main --workdir={workdir}`` trains
every round instead of reporting the first round's results) and ``{round}`` for ``OUT/round<r>`` (shared by
the round's commands, e.g. a compilation cache that the first command fills and the next one reads). The
measurement (``os.wait4``'s resource usage of the command and everything it waited for: user and system CPU
seconds, the largest peak RSS, minor page faults; wall seconds) goes to ``OUT/round<r>/<NAME>/time.json``; a
command with a ``time.json`` is not run again (an interrupted study resumes at the first command without one;
the interrupted command starts over in an emptied folder). A command that fails stops the study (exit 1)
unless ``--allow-failure`` (its exit status is then recorded and shown).

``table``: one row per command (in the order of ``run``): each round's wall seconds, medians of wall, user and
system CPU seconds, the largest peak RSS, the median minor page faults, and when the command left an lwcl
``results.json`` in ``{workdir}``: the median ``train_seconds``, wall / train and ACC. ``--ratio=A/B``: A's wall
over B's in each round and their median. ``--last-line``: the last line each command printed (a test
suite's summary).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

COMMANDS = "commands.json"


def _folder(out: str, rnd: int, name: str) -> str:
  return os.path.join(out, f"round{rnd}", name)


def parse_commands(items) -> dict:
  """``{name: command}`` of ``NAME=COMMAND`` strings, in order.

  Raises:
    ValueError: an item without ``=``, a name that is not a plain word, a name given twice.
  """
  out = {}
  for item in items:
    name, sep, command = item.partition("=")
    if not sep or not name or not all(c.isalnum() or c in "_-." for c in name) or not command.strip():
      raise ValueError(f"{item!r} is not NAME=COMMAND (NAME: letters, digits, _ - .)")
    if name in out:
      raise ValueError(f"{name} is given twice")
    out[name] = command
  return out


def run_one(command: str, folder: str, out: str, rnd: int) -> dict:
  """Runs ``command`` (``{workdir}``, ``{round}`` filled in) in an emptied ``folder``; its measurement."""
  if os.path.exists(folder):
    shutil.rmtree(folder)
  os.makedirs(folder)
  text = command.replace("{workdir}", os.path.join(folder, "run")).replace("{round}", os.path.join(out, f"round{rnd}"))
  start = time.time()
  tic = time.perf_counter()
  with open(os.path.join(folder, "log.txt"), "w") as log:
    proc = subprocess.Popen(["bash", "-c", text], stdout=log, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
  wall = time.perf_counter() - tic
  proc.returncode = os.waitstatus_to_exitcode(status)
  return {"command": text, "rc": proc.returncode, "start": start, "wall_seconds": wall,
          "user_seconds": usage.ru_utime, "system_seconds": usage.ru_stime, "max_rss_kib": usage.ru_maxrss,
          "minor_faults": usage.ru_minflt}


def run(out: str, commands: dict, rounds: int, allow_failure: bool = False) -> bool:
  """Every round of every command not yet measured (see the module's docstring); False when one failed
  (and ``allow_failure`` is off: the study stops there)."""
  os.makedirs(out, exist_ok=True)
  path = os.path.join(out, COMMANDS)
  if os.path.exists(path):
    with open(path) as f:
      before = json.load(f)
    if before["commands"] != commands or before["rounds"] != rounds:
      raise ValueError(f"{out} holds another study's rounds ({path}); use another folder")
  with open(path, "w") as f:
    json.dump({"commands": commands, "rounds": rounds}, f, indent=1)
  for rnd in range(1, rounds + 1):
    for name, command in commands.items():
      folder = _folder(out, rnd, name)
      if os.path.exists(os.path.join(folder, "time.json")):
        continue
      print(f"timed_rounds: round {rnd}/{rounds}: {name}", flush=True)
      m = run_one(command, folder, out, rnd)
      print(f"timed_rounds: {name} rc={m['rc']} wall {m['wall_seconds']:.1f} s, user {m['user_seconds']:.1f} s, "
            f"sys {m['system_seconds']:.1f} s", flush=True)
      if m["rc"] != 0 and not allow_failure:
        print(f"timed_rounds: {name} failed (exit {m['rc']}); its output: {folder}/log.txt", file=sys.stderr)
        return False
      with open(os.path.join(folder, "time.json"), "w") as f:
        json.dump(m, f, indent=1)
  return True


def measurements(out: str) -> tuple:
  """``(names, {name: [per-round measurement or None]})`` of a study folder; a measurement gains
  ``results`` (the lwcl results.json its ``{workdir}`` holds, or None) and ``last_line``."""
  with open(os.path.join(out, COMMANDS)) as f:
    study = json.load(f)
  names, found = list(study["commands"]), {}
  for name in names:
    found[name] = []
    for rnd in range(1, study["rounds"] + 1):
      folder = _folder(out, rnd, name)
      path = os.path.join(folder, "time.json")
      if not os.path.exists(path):
        found[name].append(None)
        continue
      with open(path) as f:
        m = json.load(f)
      res = os.path.join(folder, "run", "results.json")
      m["results"] = json.load(open(res)) if os.path.exists(res) else None
      with open(os.path.join(folder, "log.txt"), errors="replace") as f:
        lines = [line.strip() for line in f.read().splitlines() if line.strip()]
      m["last_line"] = lines[-1] if lines else ""
      found[name].append(m)
  return names, found


def _median(values) -> float | None:
  values = [v for v in values if v is not None]
  return statistics.median(values) if values else None


def _num(value, fmt: str = ".1f") -> str:
  return "-" if value is None else format(value, fmt)


def table(out: str, ratios=(), last_line: bool = False) -> str:
  """The markdown table of a study folder (see the module's docstring); rounds not measured show ``-``."""
  names, found = measurements(out)
  trained = any(m and m["results"] for ms in found.values() for m in ms)
  head = ("| command | wall s (rounds) | median wall s | user s | system s | peak RSS KiB | minor faults | "
          + "train s | wall / train | ACC % | " * trained + "exit | " + "last line |" * last_line)
  lines = [head.rstrip(" "), "|---" * (8 + 3 * trained + last_line) + "|"]
  for name in names:
    ms = [m for m in found[name] if m]
    rounds = ", ".join("-" if m is None else f"{m['wall_seconds']:.1f}" for m in found[name])
    row = (f"| {name} | {rounds} | {_num(_median(m['wall_seconds'] for m in ms))} | "
           f"{_num(_median(m['user_seconds'] for m in ms))} | {_num(_median(m['system_seconds'] for m in ms))} | "
           f"{_num(max((m['max_rss_kib'] for m in ms), default=None), ',')} | "
           f"{_num(_median(m['minor_faults'] for m in ms), ',.0f')} | ")
    if trained:
      train = [m["results"].get("train_seconds") if m["results"] else None for m in ms]
      per_round = [m["wall_seconds"] / t for m, t in zip(ms, train) if t]
      acc = _median(m["results"].get("acc") if m["results"] and isinstance(m["results"].get("acc"), float)
                    else None for m in ms)
      row += f"{_num(_median(train), '.2f')} | {_num(_median(per_round), '.2f')} | " \
             f"{_num(None if acc is None else 100 * acc, '.2f')} | "
    row += f"{', '.join(sorted({str(m['rc']) for m in ms})) or '-'} | "
    if last_line:
      row += f"{(ms[-1]['last_line'] if ms else '-').replace('|', '/')} |"
    lines.append(row.rstrip(" "))
  for ratio in ratios:
    a, _, b = ratio.partition("/")
    if a not in found or b not in found:
      raise ValueError(f"--ratio={ratio}: {a} or {b} is not one of {', '.join(names)}")
    each = [ma["wall_seconds"] / mb["wall_seconds"] for ma, mb in zip(found[a], found[b]) if ma and mb]
    lines += ["", f"{a} / {b}, wall time: " + ", ".join(f"{r:.2f}" for r in each)
              + f" per round; median **{_num(_median(each), '.2f')}x**"]
  return "\n".join(lines) + "\n"


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  sub = parser.add_subparsers(dest="what", required=True)
  r = sub.add_parser("run")
  r.add_argument("out")
  r.add_argument("commands", nargs="+", metavar="NAME=COMMAND")
  r.add_argument("--rounds", type=int, default=3)
  r.add_argument("--allow-failure", action="store_true", help="record a failing command's exit status and go on")
  t = sub.add_parser("table")
  t.add_argument("out")
  t.add_argument("--ratio", action="append", default=[], metavar="A/B", help="A's wall time over B's per round")
  t.add_argument("--last-line", action="store_true", help="a column with each command's last output line")
  args = parser.parse_args(argv)
  try:
    if args.what == "run":
      if args.rounds < 1:
        raise ValueError(f"--rounds={args.rounds}: at least 1")
      sys.exit(0 if run(args.out, parse_commands(args.commands), args.rounds, args.allow_failure) else 1)
    print(table(args.out, args.ratio, args.last_line), end="")
  except (ValueError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  main()
