"""Training throughput of lwcl's jitted train step against a PyTorch eager loop written as Avalanche runs it.

    bin/bench vs-torch [--rounds=5] [--steps=20] [--settings=convnet,mlp,resnet20,resnet20-local]
                       [--methods=finetune,ewc,agem,...] [--steps-per-dispatch=1,8] [--matmul=2048]
                       [--json=PATH] [--no-torch] [--torch-threads=N]

What is measured: examples per second of whole training steps (forward, backward, the method's work, the
optimizer update) on random uint8 images (28x28x1; ResNet-20: 32x32x3), normalized inside the step on both
sides, in these settings (:mod:`lwcl.benchmarks.vs_torch_settings`):

* ``convnet``: ``configs/default.py`` (conv32-pool-conv64-pool-fc128, 5 tasks x 2 classes task-incremental
  with one head per task, batch 64, SGD 0.01 with momentum 0.9), methods ``finetune`` and ``ewc`` (the
  penalty with omega and anchor filled with random values);
* ``mlp``: the GEM protocol of ``configs/_protocols.py`` (MLP 2x100, one 10-way head, batch 10, plain SGD
  0.1) cut to 5 tasks, so the current task has 4 old tasks of 256 memories each (no padded task slots),
  methods ``finetune``, ``agem`` (a 256-example reference batch from the memories), ``gem`` and ``lgd``;
* ``resnet20``: the CIFAR ResNet-20 of the layer-wise recipe (``configs/_layerwise.py``: batch 128, SGD 0.1
  with momentum 0.9 and weight decay 5e-4, BatchNorm in train mode), one 10-way head, trained end to end;
* ``resnet20-local``: the same network in ``local`` mode (9 local blocks with linear auxiliary heads,
  stop-gradient between blocks, the sum of the local losses);
* ``rehearsal`` and ``rehearsal-b64``: the class-incremental ConvNet of
  ``configs/rehearsal_split_fashion_mnist.py`` (one 10-way head, plain SGD), method ``er`` at batch B (10,
  the protocol's; 64, the default config's) with a replay batch of B drawn from a full 500-slot reservoir
  buffer and the minibatch offered to it, and ``finetune`` at batch 2B: the same forward and backward work
  without the buffer. Their ratio (seconds per ER step over seconds per fine-tuning step, each side) is
  printed below the table: issue 29 asks lwcl's to be at most 1.2.

Convolutions are lowered as a default run lowers them (``model.conv_impl=auto``: on CPU oneDNN's
convolutions when lwcl's oneDNN library is built, else XLA's native convolution at one step per call and patch
matmuls with ``--steps-per-dispatch`` K > 1, where K steps run in one compiled loop on device-resident data;
:mod:`lwcl.models.conv`), with lwcl's XLA:CPU flags (:mod:`lwcl.platform.xla_flags`, set by ``bin/bench``'s
:func:`lwcl.platform.configure`). The header names the lowering of each row's step.

lwcl side: the step ``lwcl.engine.experiment.Experiment`` builds (``layerwise.build_fns``, ``build_method``,
``optim.optimizer``, ``make_train_step``, ``jax.jit`` with the state donated), fed NumPy batches and a
float32 learning rate as the runner does, blocking only at the end of a timed block. FLOPs per step: XLA's
``cost_analysis()`` of that compiled step (a loop's body counted once: GEM's QP iterations are undercounted,
negligible against its memory gradients); where convolutions are oneDNN custom calls, which XLA does not
count, of the same step compiled with ``model.conv_impl=native``.

PyTorch side (:mod:`lwcl.benchmarks.torch_side`): the same architectures and initialization (kernels normal with
variance 1 / fan-in, Flax's scale; zero biases), NCHW, train mode, ``torch.set_num_threads`` at its default
(``--torch-threads``), and per step the order of Avalanche's ``SGDBasedTemplate.training_epoch`` with its
plugins' hooks: ``before_training_iteration`` (GEM: one forward/backward per old task on its 256 memories;
A-GEM: one on a 256-example reference batch), ``optimizer.zero_grad()``, forward (multi-head:
``MultiTaskModule``'s dispatch on the batch's task labels; ER: the minibatch concatenated with a replay batch
of random buffer rows, as ``ReplayPlugin``'s ``ReplayDataLoader`` yields it; Avalanche updates the buffer at
the end of an experience, ``after_training_exp``, so its step has no per-step insertion as lwcl's and
Mammoth's reservoir have), cross-entropy, EWC's penalty added to the loss (``EWCPlugin.before_backward``;
one accumulated importance and anchor, as its online mode), ``loss.backward()``, the projection of the
flattened gradient (``AGEMPlugin`` / ``GEMPlugin.after_backward``; GEM's QP by quadprog on the host in float64
with Avalanche's ``1e-3`` ridge, :func:`lwcl.benchmarks.projection._host_qp`), ``optimizer.step()``. LGD is
our port (Avalanche has none): per layer, mean of the old gradients, residuals, SVD basis, projection, as a
plain per-parameter loop. Memories and the replay buffer are tensors already in memory (no DataLoader on the
timed path).

How: every (setting, method, side) and a 2048x2048 float32 matmul in JAX and in PyTorch take turns in
interleaved rounds of ``--steps`` steps, each timed as a block; the median over rounds of seconds per step
is reported, and lwcl's achieved FLOP/s as a fraction of the JAX matmul's. On a machine loaded by other jobs,
PyTorch's default intra-op threads (one per core) can wait at each op for a descheduled thread: compare
``--torch-threads=1``.
"""

from __future__ import annotations

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from lwcl import layerwise  # noqa: E402

# First: sets OPENBLAS_NUM_THREADS=1 before NumPy loads (see there); both sides' host work runs under it.
from lwcl.benchmarks import projection as proj  # noqa: I001, F401  pylint: disable=g-bad-import-order
from lwcl.benchmarks.vs_torch_settings import BUFFER_SEEN, OLD_TASKS, SETTINGS, TITLES, config, data  # noqa: E402
from lwcl.core.state import TrainState  # noqa: E402
from lwcl.data.pipeline import Preprocessor  # noqa: E402
from lwcl.engine import optim  # noqa: E402
from lwcl.engine.steps import make_train_step, make_train_steps  # noqa: E402
from lwcl.methods import EpisodicState, ImportanceState, build_method  # noqa: E402
from lwcl.methods import memory as memory_lib  # noqa: E402
from lwcl.methods.replay import ReplayState  # noqa: E402
from lwcl.models import build_model  # noqa: E402


class LwclStep:
  """lwcl's real train step for one (setting, method), compiled once, its method state filled so that the
  method does its full work (full old-task memories; non-zero importances and an anchor off the params).

  With ``k > 1`` a call is ``k`` steps in one compiled loop on data placed on the device once
  (:func:`lwcl.engine.steps.make_train_steps`, ``train.steps_per_dispatch = k``; convolutions lowered as
  ``model.conv_impl=auto`` chooses for it).

  Attributes:
    examples: examples per call (``k`` steps); flops: XLA's FLOP count of one call (``k`` x the one-step
      program's, since XLA counts a loop's body once); k: steps per call.
  """

  def __init__(self, setting: str, method: str, seed: int = 0, k: int = 1):
    s, c = SETTINGS[setting], config(setting, method)
    d = data(setting, c.train.batch_size, seed)
    masks = np.ones((s["tasks"], s["outputs"]), bool)
    scenario = types.SimpleNamespace(num_heads=s["heads"], output_dim=s["outputs"], max_tasks=s["tasks"],
                                     image_shape=s["shape"], label_masks=masks)
    preprocess = Preprocessor.from_config(c.data, d["images"])

    def parts(model_config):
      fns = layerwise.build_fns(c.layerwise, build_model(model_config, scenario, k), preprocess,
                                scenario.label_masks, scenario.image_shape, scenario.num_heads,
                                scenario.output_dim)
      method_obj = build_method(c.method, scenario, fns)
      return fns, method_obj, optim.optimizer(fns, method_obj.transformation(), c.optimizer,
                                              c.train.epochs_per_task)

    fns, method_obj, tx = parts(c.model)
    params, stats = _init(fns, s["shape"], seed)
    method_state = _filled(method_obj.init_state(params, stats), d, seed)
    self.state = TrainState(jnp.zeros((), jnp.int32), params, stats, tx.init(params), method_state,
                            jax.random.PRNGKey(seed + 1))
    self.batches, self.count = d["batches"], 0
    self.learning_rate = np.float32(c.optimizer.learning_rate)
    bs = c.train.batch_size
    self.examples, self.k = bs * k, k
    jitted = jax.jit(make_train_step(fns, tx, method_obj), donate_argnums=(0,))
    self.step = jitted.lower(self.state, self.batches[0], self.learning_rate).compile()
    self.conv_impl = fns.model.conv_impl  # the lowering build_model chose
    counted = self.step
    if "onednn" in self.conv_impl:  # XLA does not count custom calls: count the native lowering's program
      native = c.model.copy_and_resolve_references()
      native.conv_impl = "native"
      fns_n, method_n, tx_n = parts(native)
      counted = jax.jit(make_train_step(fns_n, tx_n, method_n)).lower(
          self.state, self.batches[0], self.learning_rate).compile()
    cost = counted.cost_analysis()
    self.flops = k * float((cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"])
    if k > 1:
      on_device = jax.device_put({key: np.concatenate([b[key] for b in self.batches])
                                  for key in self.batches[0]})
      n = len(self.batches) * bs
      steps = {"index": (np.arange(k * bs, dtype=np.int32) % n).reshape(k, bs),
               "learning_rate": np.full(k, self.learning_rate, np.float32)}
      loop = jax.jit(make_train_steps(fns, tx, method_obj), donate_argnums=(0,))
      compiled = loop.lower(self.state, on_device, steps, np.int32(k)).compile()
      self.step = lambda state, batch, lr: compiled(state, on_device, steps, np.int32(k))  # noqa: E731
    self.run(2)  # warm up

  def run(self, steps: int) -> float:
    """Seconds per step over ``steps`` consecutive steps (dispatched asynchronously, as the runner does)."""
    tic = time.perf_counter()
    for _ in range(steps):
      self.state, metrics = self.step(self.state, self.batches[self.count % len(self.batches)],
                                      self.learning_rate)
      self.count += 1
    jax.block_until_ready((self.state, metrics))
    return (time.perf_counter() - tic) / steps


def _init(fns, image_shape: tuple, seed: int):
  """``(params, batch_stats)`` at Flax's default initialization scale (kernels normal with variance
  1 / fan-in, zero biases) drawn with NumPy, without compiling Flax's initializers (seconds on a CPU)."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(lambda: fns.init(jax.random.PRNGKey(seed), image_shape))

  def draw(path, x):
    if jax.tree_util.keystr(path[-1:]) != "['kernel']":  # BatchNorm: scale 1, others 0
      return jnp.full(x.shape, float(jax.tree_util.keystr(path[-1:]) in ("['scale']", "['var']")), x.dtype)
    fan_in = x.shape[-2] if len(x.shape) == 3 else np.prod(x.shape[:-1])  # task heads: [heads, in, out]
    return jnp.asarray(rng.standard_normal(x.shape) / np.sqrt(fan_in), x.dtype)

  return jax.tree_util.tree_map_with_path(draw, shapes)


def _filled(method_state, data: dict, seed: int):
  """``method_state`` with full old-task memories (episodic methods), random importances and an anchor
  near the parameters (importance penalties), or a full replay buffer that has seen ``BUFFER_SEEN``
  examples (rehearsal: the stream's fifth task, so that an offered example is stored with probability
  500 / 48,000 but the reservoir draw and the scatter run for every one); other states unchanged."""
  if isinstance(method_state, ReplayState):
    labels = jnp.asarray(data["buffer_labels"])
    return method_state.replace(buffer=method_state.buffer.replace(
        images=jnp.asarray(data["buffer_images"]), labels=labels, tasks=labels // 2,
        seen=jnp.asarray(BUFFER_SEEN, jnp.int32)))
  if isinstance(method_state, EpisodicState):
    mem = method_state.memory
    for t in range(OLD_TASKS):
      mem = memory_lib.add(mem, jnp.asarray(data["mem_images"][t]), jnp.asarray(data["mem_labels"][t]), t)
    return method_state.replace(memory=mem)
  if isinstance(method_state, ImportanceState):
    rng = np.random.default_rng(seed + 2)
    draw = lambda f: lambda x: jnp.asarray(f(x), jnp.float32)  # noqa: E731
    return method_state.replace(
        omega=jax.tree.map(draw(lambda x: rng.uniform(0, 1, x.shape)), method_state.omega),
        anchor=jax.tree.map(draw(lambda x: np.asarray(x) + 0.01 * rng.standard_normal(x.shape)),
                            method_state.anchor))
  return method_state


class Matmul:
  """A ``size x size`` float32 matmul in JAX or PyTorch: the machine's attainable FLOP/s in this run."""

  def __init__(self, side: str, size: int):
    self.side, self.examples, self.flops = side, 1, 2.0 * size ** 3
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size), np.float32) for _ in range(2))
    if side == "jax":
      f, a, b = jax.jit(jnp.matmul), jnp.asarray(a), jnp.asarray(b)
      self.fn = lambda: f(a, b).block_until_ready()
    else:
      import torch  # pylint: disable=g-import-not-at-top
      a, b = torch.from_numpy(a), torch.from_numpy(b)
      self.fn = lambda: a @ b
    self.run(1)

  def run(self, steps: int) -> float:
    tic = time.perf_counter()
    for _ in range(steps):
      self.fn()
    return (time.perf_counter() - tic) / steps


def measure(settings, methods, rounds: int, steps: int, with_torch: bool, matmul: int = 2048,
            ks=(1,)) -> dict:
  """Median seconds per step of every (setting, method) on each side (lwcl at every
  ``train.steps_per_dispatch`` in ``ks``), and of the matmuls, in interleaved rounds; returns
  ``{'rows': [...], 'matmul_flops_per_s': {side: ...}}`` (rows: examples/s, FLOPs)."""
  sides = ("lwcl", "torch") if with_torch else ("lwcl",)
  runners = {("matmul", "", side): Matmul("jax" if side == "lwcl" else "torch", matmul) for side in sides}
  for setting in (s for s in SETTINGS if s in settings):
    for m in (m for m in SETTINGS[setting]["methods"] if m in methods):
      for k in ks:
        runners[(setting, m, "lwcl" if k == 1 else f"lwcl-K{k}")] = LwclStep(setting, m, k=k)
      if with_torch:
        from lwcl.benchmarks.torch_side import TorchStep  # pylint: disable=g-import-not-at-top
        runners[(setting, m, "torch")] = TorchStep(setting, m)
  samples = {key: [] for key in runners}
  for _ in range(rounds):
    for key, runner in runners.items():
      calls = 2 if key[0] == "matmul" else max(1, steps // getattr(runner, "k", 1))  # ~steps train steps
      samples[key].append(runner.run(calls))
  sec = {key: float(np.median(v)) for key, v in samples.items()}
  peak = {side: runners[("matmul", "", side)].flops / sec[("matmul", "", side)] for side in sides}
  rows = []
  for (setting, m, side), runner in runners.items():
    if setting == "matmul" or not side.startswith("lwcl"):
      continue
    t = runners.get((setting, m, "torch"))
    row = {"setting": setting, "method": m, "steps_per_dispatch": runner.k, "conv_impl": runner.conv_impl,
           "examples_per_step": runner.examples // runner.k,
           "lwcl_seconds_per_step": sec[(setting, m, side)] / runner.k,
           "lwcl_flops_per_step": runner.flops / runner.k,
           "lwcl_examples_per_s": runner.examples / sec[(setting, m, side)],
           "torch_seconds_per_step": sec[(setting, m, "torch")] if t else None,
           "torch_examples_per_s": t.examples / sec[(setting, m, "torch")] if t else None,
           "torch_projected_fraction": t.projected / t.count if t else None}
    row["lwcl_flops_per_s"] = row["lwcl_flops_per_step"] / row["lwcl_seconds_per_step"]
    row["lwcl_fraction_of_matmul"] = row["lwcl_flops_per_s"] / peak["lwcl"]
    row["ratio"] = row["lwcl_examples_per_s"] / row["torch_examples_per_s"] if t else None
    if t:  # PyTorch at lwcl's FLOP count (same maths; GEM/LGD host work differs slightly)
      row["torch_fraction_of_matmul"] = row["lwcl_flops_per_step"] / row["torch_seconds_per_step"] / peak["torch"]
    rows.append(row)
  return {"rows": rows, "matmul_flops_per_s": peak, "replay_cost": replay_cost(sec)}


def replay_cost(sec: dict) -> dict:
  """``{setting: {side: ratio}}``: seconds per ER step over seconds per fine-tuning step at twice the batch
  (the same forward and backward work; issue 29 asks at most 1.2 of lwcl), for each rehearsal setting and
  side (``lwcl``, ``lwcl-K8``..., ``torch``) measured with both methods."""
  out = {}
  for (setting, m, side), s in sec.items():
    base = sec.get((setting, "finetune", side))
    if m == "er" and base:
      out.setdefault(setting, {})[side] = s / base
  return out


def table(result: dict) -> str:
  """The markdown table of :func:`measure`'s result."""
  _fmt = lambda x, spec, suffix="": "-" if x is None else format(x, spec) + suffix  # noqa: E731
  lines = ["| setting | method | convolutions | lwcl (examples/s) | PyTorch (examples/s) | lwcl / PyTorch "
           "| lwcl MFLOP/step | lwcl GFLOP/s | lwcl of JAX matmul | PyTorch of torch matmul (lwcl FLOPs) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for r in result["rows"]:
    k = r.get("steps_per_dispatch", 1)
    conv = r.get("conv_impl", "-") if r["setting"] != "mlp" else "-"
    lines.append(f"| {r['setting']}{f' (K={k})' if k > 1 else ''} | {TITLES[r['method']]} | {conv} | "
                 f"{r['lwcl_examples_per_s']:,.0f} | "
                 f"{_fmt(r['torch_examples_per_s'], ',.0f')} | {_fmt(r['ratio'], '.2f', 'x')} | "
                 f"{r['lwcl_flops_per_step'] / 1e6:,.1f} | {r['lwcl_flops_per_s'] / 1e9:.1f} | "
                 f"{100 * r['lwcl_fraction_of_matmul']:.1f}% | "
                 f"{_fmt(r.get('torch_fraction_of_matmul'), '.1%')} |")
  return "\n".join(lines)


def replay_table(replay: dict) -> str:
  """The markdown table of :func:`replay_cost`'s ratios: a row per setting, a column per side."""
  sides = list(dict.fromkeys(side for ratios in replay.values() for side in ratios))
  name = lambda side: {"lwcl": "lwcl", "torch": "PyTorch"}.get(side, side.replace("lwcl-K", "lwcl (K=") + ")")  # noqa: E731
  lines = ["| setting | " + " | ".join(name(side) for side in sides) + " |", "|---" * (len(sides) + 1) + "|"]
  for setting, ratios in replay.items():
    lines.append(f"| {setting} | " + " | ".join(f"{ratios[side]:.2f}x" if side in ratios else "-"
                                                for side in sides) + " |")
  return "\n".join(lines)


def main(argv: list) -> None:
  parser = argparse.ArgumentParser(prog="bin/bench vs-torch", description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median over them)")
  parser.add_argument("--steps", type=int, default=20, help="timed steps per runner and round")
  parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated subset")
  parser.add_argument("--methods", default="finetune,ewc,agem,gem,lgd,er", help="comma-separated subset")
  parser.add_argument("--matmul", type=int, default=2048, help="size of the reference float32 matmul")
  parser.add_argument("--steps-per-dispatch", default="1",
                      help="comma-separated train.steps_per_dispatch values for lwcl (e.g. 1,8)")
  parser.add_argument("--json", default="", help="also write the numbers to this file")
  parser.add_argument("--no-torch", action="store_true", help="only the lwcl half (no PyTorch needed)")
  parser.add_argument("--torch-threads", type=int, default=0,
                      help="torch.set_num_threads(N) first; 0 (default) leaves PyTorch's default")
  args = parser.parse_args(argv)
  split = lambda v: [x.strip() for x in v.split(",") if x.strip()]  # noqa: E731
  settings, methods = split(args.settings), split(args.methods)
  try:
    ks = tuple(int(k) for k in split(args.steps_per_dispatch))
  except ValueError:
    ks = (0,)
  bad = min(args.rounds, args.steps, args.matmul, *ks) < 1 or not set(methods) <= set(TITLES)
  if bad or not set(settings) <= set(SETTINGS):
    parser.error(f"--rounds, --steps, --matmul, --steps-per-dispatch must be >= 1; --settings a subset of "
                 f"{', '.join(SETTINGS)}, --methods of {', '.join(TITLES)}")
  if args.torch_threads > 0 and not args.no_torch:
    import torch  # pylint: disable=g-import-not-at-top
    torch.set_num_threads(args.torch_threads)
  load_before, tic = os.getloadavg(), time.perf_counter()
  result = measure(settings, methods, args.rounds, args.steps, not args.no_torch, args.matmul, ks)
  load = {"before": load_before, "after": os.getloadavg()}
  result.update(rounds=args.rounds, steps=args.steps, matmul_size=args.matmul, load_average=load,
                seconds=time.perf_counter() - tic, device=jax.devices()[0].platform,
                cpus=len(os.sched_getaffinity(0)), openblas_threads=os.environ.get("OPENBLAS_NUM_THREADS"))
  threads, peak = "", result["matmul_flops_per_s"]
  if not args.no_torch:
    import torch  # pylint: disable=g-import-not-at-top
    result.update(torch_version=torch.__version__, torch_threads=torch.get_num_threads())
    how = "set by --torch-threads" if args.torch_threads > 0 else "default"
    threads = f"; PyTorch {torch.__version__}, {torch.get_num_threads()} threads ({how})"
  print(f"\nlwcl vs a PyTorch eager loop (Avalanche-style), {result['device']}, {result['cpus']} CPUs"
        f"{threads}; median of {args.rounds} interleaved rounds of {args.steps} steps; "
        f"{args.matmul}^2 float32 matmul: JAX {peak['lwcl'] / 1e9:.1f} GFLOP/s" +
        (f", PyTorch {peak['torch'] / 1e9:.1f} GFLOP/s" if "torch" in peak else "") +
        f"; load average {load['before'][0]:.2f} before, {load['after'][0]:.2f} after "
        f"({result['seconds']:.0f} s).\n")
  for setting in settings:
    print(f"* {setting}: {SETTINGS[setting]['title']}")
  print("\n" + table(result))
  frac = {r["method"]: r["torch_projected_fraction"] for r in result["rows"]
          if r["torch_projected_fraction"] is not None and r["method"] in ("agem", "gem")}
  if frac:
    print("\nPyTorch steps that projected (constraint violated): " +
          ", ".join(f"{TITLES[m]} {100 * f:.0f}%" for m, f in frac.items()))
  if result["replay_cost"]:
    print("\nSeconds per ER step over seconds per fine-tuning step at twice the batch (issue 29: lwcl <= "
          "1.2x):\n\n" + replay_table(result["replay_cost"]))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=1)
