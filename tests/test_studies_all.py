"""docs/studies/all.sh, the one command that reruns docs/results.md's CPU tables: every section is one step or
listed as not regenerated, every step's commands name configs, scripts, benchmarks, options and config keys
that exist, the bookkeeping (DONE, walltime.tsv, table.md, results_tables.md) works and resumes, and the table
helpers it calls (docs/studies/run_tables.py, timed_rounds.py, all_report.py) give docs/results.md's figures
from stored runs. Nothing here trains: ``--list`` is bash alone, and the bookkeeping runs made-up steps."""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import scipy.stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDIES = os.path.join(ROOT, "docs", "studies")
ALL_SH = os.path.join(STUDIES, "all.sh")
REHEARSAL_RUNS = os.path.join(STUDIES, "rehearsal_runs", "class_500")


def _module(name: str):
  spec = importlib.util.spec_from_file_location(f"studies_{name}", os.path.join(STUDIES, f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _listing() -> tuple:
  """``({step: {'title', 'estimate', 'commands': [(kind, text)]}}, {'not regenerated': [...], 'partly': [...]})``
  of ``all.sh --list``, steps in order."""
  out = subprocess.run(["bash", ALL_SH, "--list"], capture_output=True, text=True, timeout=60, check=True).stdout
  steps, skipped, current = {}, {"not regenerated": [], "partly": []}, None
  for line in out.splitlines():
    if line.startswith("  "):
      kind, _, text = line.strip().partition(" ")
      steps[current]["commands"].append((kind.rstrip(":"), text.strip()))
      continue
    fields = line.split("\t")
    if fields[0] in skipped:
      skipped[fields[0]].append(fields[1])
    else:
      current = fields[0]
      steps[current] = {"title": fields[1], "estimate": fields[2], "commands": []}
  return steps, skipped


def _sections() -> list:
  with open(os.path.join(ROOT, "docs", "results.md")) as f:
    return [line[3:].strip() for line in f if line.startswith("## ")]


def _expand(text: str) -> list:
  """Bash's brace expansion of ``{a,b}`` (the commands' only use of braces with a comma)."""
  m = re.search(r"\{([^{}\s]*,[^{}\s]*)\}", text)  # a group { ...; } has spaces
  if not m:
    return [text]
  return [e for part in m.group(1).split(",") for e in _expand(text[:m.start()] + part + text[m.end():])]


def test_every_section_is_one_step_or_listed_as_not_regenerated():
  steps, skipped = _listing()
  sections, titles = _sections(), [s["title"] for s in steps.values()]
  assert steps and len(set(titles)) == len(titles)
  for title in titles + skipped["not regenerated"]:
    assert title in sections, f"{title!r} is not a section of docs/results.md (renamed?)"
  for section in sections:
    assert titles.count(section) + skipped["not regenerated"].count(section) == 1, section
  for part in skipped["partly"]:  # partly regenerated: the start of one step's title
    assert sum(t.startswith(part) for t in titles) == 1, part
  assert [sections.index(t) for t in titles] == sorted(sections.index(t) for t in titles), "not in the doc's order"
  for name, s in steps.items():
    assert re.fullmatch(r"[a-z_]+", name) and s["estimate"], name
    assert [k for k, _ in s["commands"]].count("run") >= 1 and s["commands"][-1][0] == "table", name


def test_commands_name_what_exists():
  from lwcl.config import files as config_files
  default = config_files.load_spec(os.path.join(ROOT, "configs", "default.py"))
  steps, _ = _listing()
  checked = {"config": set(), "key": set(), "bench": set(), "script": set()}
  for s in steps.values():
    for _, command in s["commands"]:
      for text in _expand(command):
        for path, arg in re.findall(r"(configs/[\w/.-]+\.py)(?::([\w,+.-]+))?", text):
          assert os.path.isfile(os.path.join(ROOT, path)), path
          spec = f"{path}:{arg}" if arg else path
          if spec not in checked["config"]:
            config_files.load_spec(os.path.join(ROOT, spec))  # an unknown argument raises
            checked["config"].add(spec)
        for key in re.findall(r"--config\.([A-Za-z_][\w.]*)=", text) + re.findall(r"--set ([A-Za-z_][\w.]*)=", text):
          config_files.get_key(default, key)  # KeyError: not a key of configs/default.py
          checked["key"].add(key)
        for tool in re.findall(r"(?<![\w./])bin/([\w-]+)", text):
          assert os.access(os.path.join(ROOT, "bin", tool), os.X_OK), f"bin/{tool}"
        for name, rest in re.findall(r"(?<![\w./])bin/bench ([\w-]+)([^|;&\"]*)", text):
          source = os.path.join(ROOT, "lwcl", "benchmarks", name.replace("-", "_") + ".py")
          assert os.path.isfile(source), f"bin/bench {name}"
          _options_exist(source, rest, f"bin/bench {name}")
          checked["bench"].add(name)
        for script, rest in re.findall(r"(docs/studies/[\w.-]+\.(?:sh|py))([^|;&\"]*)", text):
          path = os.path.join(ROOT, script)
          assert os.path.isfile(path) and (script.endswith(".py") or os.access(path, os.X_OK)), script
          if script.endswith(".py"):
            _options_exist(path, rest, script)
          checked["script"].add(script)
          sub = rest.split()[0] if rest.split() else ""
          if script.rsplit("/", 1)[1] in ("run_tables.py", "timed_rounds.py", "all_report.py"):
            assert f"{script.rsplit('/', 1)[1]} {sub} " in open(path).read(), f"{script} {sub}"
        for module, rest in re.findall(r"-m (lwcl[\w.]*)([^|;&\"]*)", text):
          path = os.path.join(ROOT, *module.split(".")) + ".py"
          assert os.path.isfile(path), module
          if module != "lwcl.main":  # its --config.KEY are checked above
            _options_exist(path, rest, module)
  assert len(checked["config"]) > 20 and "model.dtype" in checked["key"] and len(checked["bench"]) >= 7


def _options_exist(source: str, rest: str, what: str) -> None:
  """Every ``--option`` of ``rest`` (a command's arguments) is a string in ``source``."""
  text = open(source).read()
  for option in re.findall(r"(?<!\S)(--[\w-]+)", rest):
    assert f'"{option}"' in text, f"{what}: {option} is not one of its options"


def _columns_agree(markdown: str) -> None:
  """Every markdown table in ``markdown`` has as many cells in each row as in its header."""
  for block in re.findall(r"(?:^\|.*\n?)+", markdown, re.M):
    widths = {line.count("|") for line in block.splitlines()}
    assert len(widths) == 1, block


def test_walltime_is_the_sum_over_every_attempt(tmp_path):
  report = _module("all_report")
  path = tmp_path / "walltime.tsv"
  path.write_text("default\t2026-12-01T10:00:00Z\t2026-12-01T10:05:00Z\t300\tabc1234\n"
                  "layerwise_depth\t2026-12-01T10:05:00Z\t2026-12-01T12:05:00Z\t7200\tabc1234\n"
                  "\n"  # blank lines are skipped
                  "layerwise_depth\t2026-12-02T09:00:00Z\t2026-12-02T10:30:00Z\t5400\tdef5678-dirty\n"
                  "test_suite\t2026-12-02T10:30:00Z\t2026-12-02T10:45:12Z\t912\tdef5678-dirty\n")
  summary = report.walltime_summary(report.read_walltime(str(path)))
  assert summary["total_seconds"] == 300 + 7200 + 5400 + 912 and summary["attempts"] == 4
  assert summary["steps"]["layerwise_depth"] == {"seconds": 12600.0, "attempts": 2}
  assert list(summary["steps"]) == ["default", "layerwise_depth", "test_suite"]
  assert summary["commits"] == ["abc1234", "def5678-dirty"]
  assert report.duration(13812) == "3 h 50 min 12 s" and report.duration(59) == "0 min 59 s"
  text = report.walltime_text(str(tmp_path))
  assert "total wall time: 13812 s (3 h 50 min 12 s)" in text and text.splitlines()[-1].startswith("CPU: ")
  path.write_text("default\t2026-12-01T10:00:00Z\t2026-12-01T10:05:00Z\t300\tabc1234\tkilled\n")
  summary = report.walltime_summary(report.read_walltime(str(path)))
  assert summary["killed"] == 1 and "(1 killed by SIGKILL" in report.walltime_text(str(tmp_path))
  path.write_text("default\t2026-12-01T10:00:00Z\t300\tabc1234\n")
  with pytest.raises(ValueError, match="4 fields"):
    report.read_walltime(str(path))


def _made_up_steps(tmp_path, steps_text: str, **env) -> dict:
  """The environment that makes all.sh run ``steps_text`` (step/run/table lines) instead of its steps, with
  this interpreter as ``$py`` and no setup."""
  python = tmp_path / "python"
  python.write_text(f"#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} \"$@\"\n")
  python.chmod(0o755)
  steps = tmp_path / "steps.sh"
  steps.write_text(f"py={python}\nsetup=:\n" + steps_text)
  return dict(os.environ, LWCL_ALL_STEPS_FILE=str(steps), **env)


def test_a_study_resumes_skips_finished_steps_and_counts_every_attempt(tmp_path):
  env = _made_up_steps(tmp_path, "step one \"Default experiment\" \"1 s\"\n"
                       "run 'for s in 0 1; do \\\n    echo $s >> $D/seeds.txt; done'\n"  # a continued line
                       "table 'echo \"| seeds |\"; echo \"|---|\"; echo \"| $(wc -l < $D/seeds.txt) |\"'\n"
                       "step two \"Test suite\" \"1 s\"\n"
                       "run '[ -f $D/tried ] || { touch $D/tried; exit 3; }'\n"
                       "table 'echo two'\n")
  out = tmp_path / "out"
  first = subprocess.run(["bash", ALL_SH, str(out)], env=env, capture_output=True, text=True, timeout=120)
  assert first.returncode == 3, first.stdout + first.stderr  # step two failed once: no DONE, no tables
  assert (out / "one" / "DONE").exists() and not (out / "two" / "DONE").exists()
  assert not (out / "results_tables.md").exists()
  second = subprocess.run(["bash", ALL_SH, str(out)], env=env, capture_output=True, text=True, timeout=120)
  assert second.returncode == 0, second.stdout + second.stderr
  assert "one: finished before" in second.stdout and (out / "one" / "seeds.txt").read_text() == "0\n1\n"
  rows = [line.split("\t") for line in (out / "walltime.tsv").read_text().splitlines()]
  assert [r[0] for r in rows] == ["one", "two", "two"] and all(r[3].isdigit() for r in rows)
  assert [len(r) for r in rows] == [5, 6, 5] and rows[1][5] == "failed (exit 3)"  # the failed attempt says so
  assert "the sum over 3 step attempts (1 stopped by an error or a signal)" in second.stdout
  assert "CPU: " in second.stdout
  table = (out / "one" / "table.md").read_text()
  assert table.startswith("| seeds |\n|---|\n| 2 |") and "- commit: " in table and "- jax " in table
  tables = (out / "results_tables.md").read_text()
  assert tables.index("## Default experiment") < tables.index("## Test suite") and "\nCPU: " in tables
  assert subprocess.run(["bash", ALL_SH, str(out), "nosuchstep"], env=env, capture_output=True,
                        timeout=60).returncode == 2


def test_run_tables_give_the_rehearsal_tables_figures_from_the_stored_runs():
  tables = _module("run_tables")
  groups = tables.find_groups([REHEARSAL_RUNS])
  stored = [d for d in os.listdir(REHEARSAL_RUNS) if os.path.isfile(os.path.join(REHEARSAL_RUNS, d, "results.json"))]
  assert [len(runs) for _, runs in groups] == [5] * len(groups) and len(groups) == len(stored) >= 10
  text = tables.seeds_table(groups)
  er = next(line for line in text.splitlines() if line.startswith("| rehearsal_split_fashion_mnist_er |"))
  assert "77.80 +- 1.46" in er and "98.75 +- 0.15" in er  # docs/results.md: ER 77.80 ± 1.46, Task-IL 98.75 ± 0.15
  assert "75.76 / 78.29 / 78.59 / 77.87 / 78.51" in text  # ER's per-seed ACC
  runs = tables.find_runs(["ER=" + os.path.join(REHEARSAL_RUNS, "rehearsal_split_fashion_mnist_er", "seed*")])
  assert len(runs) == 5 and tables.runs_table(runs).count("| er |") == 5
  for text in (tables.runs_table(runs), tables.seeds_table(groups[:2], old_tasks=True)):
    _columns_agree(text)
  summary = _module("all_report").provenance_summary(REHEARSAL_RUNS)
  assert "- commit: 8ec34f6" in summary and "AMD EPYC, family 25, model 17; avx2 yes, avx512f yes, amx no" in summary
  with pytest.raises(ValueError, match="no finished seed"):
    tables.find_groups([os.path.join(REHEARSAL_RUNS, "nothing_*")])


def test_an_attempt_killed_by_sigkill_is_recorded_to_its_last_heartbeat(tmp_path):
  # the first attempt SIGKILLs all.sh itself ($$ in a step's command) 3.5 s in, as a machine that ends would
  env = _made_up_steps(tmp_path, "step one \"Default experiment\" \"1 s\"\n"
                       "run '[ -f $D/killed_once ] || { touch $D/killed_once; sleep 3.5; kill -KILL $$; }'\n"
                       "table 'echo one'\n", LWCL_ALL_HEARTBEAT="1")
  out = tmp_path / "out"
  started = time.monotonic()
  first = subprocess.run(["bash", ALL_SH, str(out)], env=env, capture_output=True, text=True, timeout=120)
  lived = time.monotonic() - started  # the attempt's real life, an upper bound of what may be counted
  assert first.returncode == -9 and not (out / "walltime.tsv").exists()
  attempt = (out / "one" / "attempt.txt").read_text().split("\t")
  assert len(attempt) == 3 and attempt[0].isdigit()
  second = subprocess.run(["bash", ALL_SH, str(out)], env=env, capture_output=True, text=True, timeout=120)
  assert second.returncode == 0, second.stdout + second.stderr
  assert "one: an attempt started " in second.stdout and not (out / "one" / "attempt.txt").exists()
  rows = [line.split("\t") for line in (out / "walltime.tsv").read_text().splitlines()]
  assert [(r[0], len(r)) for r in rows] == [("one", 6), ("one", 5)] and rows[0][5] == "killed"
  # the heartbeat's last touch (1 s apart, the kill 3.5 s after the step began): not more than the attempt lived
  assert 2 <= int(rows[0][3]) <= lived + 1 and rows[0][1] == attempt[1]
  assert "(1 killed by SIGKILL, counted to their last heartbeat)" in second.stdout
  (out / "one" / "attempt.txt").write_text("")  # killed as it wrote the file: dropped, not counted
  (out / "one" / "DONE").unlink()
  third = subprocess.run(["bash", ALL_SH, str(out)], env=env, capture_output=True, text=True, timeout=120)
  assert third.returncode == 0 and "unreadable attempt.txt" in third.stdout, third.stdout + third.stderr
  assert len((out / "walltime.tsv").read_text().splitlines()) == 3  # the killed one, two finished


def test_rehearsal_table_gives_the_rows_per_seed_values_and_paired_differences(tmp_path, capsys):
  table = _module("rehearsal_table")
  table.main(os.path.dirname(REHEARSAL_RUNS))
  text = capsys.readouterr().out
  assert "| ER | 500 | 5 | 77.80 ± 1.46 | -25.56 ± 1.79 | 25.56 ± 1.79 | 98.75 ± 0.15 |" in text
  assert "- ER (500): 75.76 / 78.29 / 78.59 / 77.87 / 78.51" in text  # docs/results.md's per-seed ACC
  # docs/results.md's paired differences (an independent check: NumPy and SciPy's t quantile on the seeds)
  er, der = (np.array([run["acc"] for run in json.load(open(os.path.join(
      REHEARSAL_RUNS, f"rehearsal_split_fashion_mnist_{m}", "results.json")))["runs"]]) * 100 for m in ("er", "der"))
  d = der - er
  half = scipy.stats.t.ppf(0.975, 4) * d.std(ddof=1) / np.sqrt(5)
  assert f"- DER - ER: {d.mean():.2f} ± {half:.2f} (5 seeds)" in text and "- DER - ER: 2.46 ± 0.92" in text
  at_200 = text[text.index("at memory 200"):text.index("From memory 500 to 200")]
  assert "- ER - fine-tuning: 55.65 ± 3.04 (5 seeds)" in at_200  # fine-tuning's runs serve both sizes
  assert "- DER++ 200 - DER++ 500: -8.17 ± 0.84 (5 seeds)" in text
  # A memory method missing at one size is missing there (never its other size's runs): only ER at 500 here
  only = tmp_path / "out"
  for method in ("er", "finetune"):
    (only / "class_500" / f"rehearsal_split_fashion_mnist_{method}").mkdir(parents=True)
    shutil.copy(os.path.join(REHEARSAL_RUNS, f"rehearsal_split_fashion_mnist_{method}", "results.json"),
                only / "class_500" / f"rehearsal_split_fashion_mnist_{method}")
  table.main(str(only))
  text = capsys.readouterr().out
  assert "not finished: " in text and "ER (200)" in text.split("not finished: ")[1].splitlines()[0]
  assert "- ER - fine-tuning: 57.87" in text and "ER" not in text[text.index("at memory 200"):]


def test_rehearsal_table_names_the_rows_our_seed_rule_asks_10_seeds_of(tmp_path):
  # "3 seeds at least; 10 where seeds spread by more than 3 points": --wide lists a row with fewer than 10
  # seeds that spreads more, and rehearsal_table.sh reruns those with 10.
  table = _module("rehearsal_table")
  stored = os.path.dirname(REHEARSAL_RUNS)
  want = []
  for group in ("class_500", "class_200"):
    for name in sorted(os.listdir(os.path.join(stored, group))):
      with open(os.path.join(stored, group, name, "results.json")) as f:
        acc = np.array([run["acc"] for run in json.load(f)["runs"]]) * 100
      if acc.size < 10 and acc.max() - acc.min() > 3:
        want.append((group, name[len(table.PREFIX):]))
  got = table.wide_rows(stored)
  assert sorted(got) == sorted(want) and len(got) == 10  # docs/results.md: 10 of the 20 rows
  # the study script gives them 10 seeds: 5 for every row, then 10 for each row --wide lists
  script = open(os.path.join(STUDIES, "rehearsal_table.sh")).read()
  assert "rehearsal_table.py --wide" in script and 'compare "$group" --seeds=10 "$c:$argument"' in script
  # a row with 10 seeds is not listed, however wide
  folder = tmp_path / "class_500" / f"{table.PREFIX}der"
  folder.mkdir(parents=True)
  with open(os.path.join(REHEARSAL_RUNS, f"{table.PREFIX}der", "results.json")) as f:
    res = json.load(f)
  res["runs"] = res["runs"] * 2
  res["num_seeds"] = 10
  (folder / "results.json").write_text(json.dumps(res))
  assert table.wide_rows(str(tmp_path)) == []
  res["num_seeds"] = 5
  (folder / "results.json").write_text(json.dumps(res))
  assert table.wide_rows(str(tmp_path)) == [("class_500", "der")]


def test_rehearsal_table_names_each_rows_commits_from_its_seeds(tmp_path, capsys):
  # A row whose seeds 3-4 were added later (bin/compare --seeds=N on a finished run) by another commit
  table = _module("rehearsal_table")
  row = tmp_path / "class_500" / f"{table.PREFIX}er"
  shutil.copytree(os.path.join(REHEARSAL_RUNS, f"{table.PREFIX}er"), row)
  for seed in (3, 4):
    res = json.loads((row / f"seed{seed}" / "results.json").read_text())
    res["provenance"]["lwcl"]["commit"] = "abcdef0123"
    (row / f"seed{seed}" / "results.json").write_text(json.dumps(res))
  summary = json.loads((row / "results.json").read_text())
  assert table.commits(summary, str(row)) == "8ec34f6 (seeds 0-2) + abcdef0 (seeds 3-4)"
  table.main(str(tmp_path))
  assert "('8ec34f6 (seeds 0-2) + abcdef0 (seeds 3-4)', 'AMD EPYC', 25, 17)" in capsys.readouterr().out
  assert table.commits(summary, str(tmp_path)) == "8ec34f6"  # no seed folders: the summary's


def test_rehearsal_table_gives_the_task_incremental_table_after_the_class_incremental_one(tmp_path, capsys):
  table = _module("rehearsal_table")
  row = tmp_path / "task_500" / f"{table.PREFIX}er"
  shutil.copytree(os.path.join(REHEARSAL_RUNS, f"{table.PREFIX}er"), row)
  res = json.loads((row / "results.json").read_text())
  res = {k: v for k, v in res.items() if not k.startswith("task_il")}  # a task-incremental run has no Task-IL reading
  (row / "results.json").write_text(json.dumps(res))
  table.main(str(tmp_path))
  text = capsys.readouterr().out
  task = ("| method | memory | seeds | ACC (task-incremental, one head per task) | BWT | forgetting | "
          "train s (all seeds) |")
  assert text.index("| method | memory | seeds | Class-IL ACC |") < text.index(task)
  assert "| ER | 500 | 5 | 77.80 ± 1.46 | -25.56 ± 1.79 | 25.56 ± 1.79 | 213 |" in text  # no Task-IL column
  assert "ACC (task-incremental, one head per task) per seed (seeds in order):" in text
  res["runs"][0]["acc"] -= 0.05  # seed 0 five points lower: a spread over 3 points
  (row / "results.json").write_text(json.dumps(res))
  assert table.wide_rows(str(tmp_path)) == [("task_500", "er")]


def test_timed_rounds_interleave_resume_and_tabulate(tmp_path):
  timed = _module("timed_rounds")
  out = str(tmp_path / "rounds")
  commands = timed.parse_commands(["a=echo a >> {round}/order; echo 3 passed", "b=echo b >> {round}/order"])
  assert timed.run(out, commands, rounds=2)
  assert (tmp_path / "rounds" / "round1" / "order").read_text() == "a\nb\n"
  os.remove(os.path.join(out, "round2", "b", "time.json"))  # as if round 2 had stopped in b
  assert timed.run(out, commands, rounds=2)
  assert (tmp_path / "rounds" / "round2" / "order").read_text() == "a\nb\nb\n"  # only b ran again
  text = timed.table(out, ratios=["a/b"], last_line=True)
  _columns_agree(text)
  assert text.splitlines()[2].startswith("| a | ") and "| 0 | 3 passed |" in text and "a / b, wall time:" in text
  assert not timed.run(str(tmp_path / "failing"), timed.parse_commands(["x=exit 4"]), rounds=1)
  with pytest.raises(ValueError, match="another study"):
    timed.run(out, {"a": "true"}, rounds=2)
  with pytest.raises(ValueError, match="NAME=COMMAND"):
    timed.parse_commands(["no command"])


def test_log_tables_keep_a_benchmarks_markdown_and_its_caption(tmp_path):
  report = _module("all_report")
  log = "compiling...\nPer-step time relative to fine-tuning:\n\n| a | b |\n|---|---|\n| 1 | 2 |\ndone\n"
  assert report.log_tables(log) == "Per-step time relative to fine-tuning:\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
  assert report.log_tables("no table\n").startswith("```\nno table")
  path = tmp_path / "mlp_64.log"  # bin/bench stream throughput prints one JSON object last
  path.write_text("loading\n" + json.dumps({"config": {"model": "mlp", "threads": 2}, "loader": 4352.5}) + "\n")
  assert report.json_rows([str(path)]).splitlines() == [
      "| file | config.model | config.threads | loader |", "|---|---|---|---|", "| mlp_64 | mlp | 2 | 4,352.5 |"]
