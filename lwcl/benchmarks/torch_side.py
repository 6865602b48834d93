"""The PyTorch side of ``bin/bench vs-torch``: an eager training loop as Avalanche runs it, on the settings
of :mod:`lwcl.benchmarks.vs_torch_settings`. PyTorch is imported only when a :class:`TorchStep` is built
(``--no-torch`` never needs it)."""

from __future__ import annotations

import time

import numpy as np

from lwcl.benchmarks import projection as proj
from lwcl.benchmarks.vs_torch_settings import OLD_TASKS, SETTINGS, config, data
from lwcl.data.pipeline import Preprocessor


class TorchStep:
  """The PyTorch eager step of one (setting, method), in the order Avalanche's template and plugins run it
  (:mod:`lwcl.benchmarks.vs_torch`'s doc). ``projected`` counts the steps whose gradient the method changed
  (A-GEM, GEM: a violated constraint; LGD: every step)."""

  def __init__(self, setting: str, method: str, seed: int = 0):
    import torch  # pylint: disable=g-import-not-at-top  (benchmark-only dependency)
    from torch import nn  # pylint: disable=g-import-not-at-top
    self.torch, self.nn_f, self.method, self.setting = torch, nn.functional, method, setting
    s, c = SETTINGS[setting], config(setting, method)
    d = data(setting, c.train.batch_size, seed)
    torch.manual_seed(seed)
    self.model, self.heads, self.local = _torch_model(nn, setting, s)  # in train mode
    opt = c.optimizer
    self.opt = torch.optim.SGD(self.model.parameters(), lr=opt.learning_rate, momentum=opt.momentum,
                               weight_decay=float(opt.get("weight_decay", 0.0)))
    pre = Preprocessor.from_config(c.data, d["images"])  # the same normalization as lwcl's
    self.mean = torch.tensor(pre.mean, dtype=torch.float32).view(1, -1, 1, 1)
    self.std = torch.tensor(pre.std, dtype=torch.float32).view(1, -1, 1, 1)
    nchw = lambda x: torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, -3)))  # noqa: E731
    long = lambda x: torch.from_numpy(x).long()  # noqa: E731
    self.batches = [(nchw(b["image"]), long(b["label"]), long(b["task"])) for b in d["batches"]]
    self.mem_x = nchw(d["mem_images"])  # [old tasks, 256, C, H, W] uint8
    self.mem_y = long(d["mem_labels"])
    self.buf_x, self.buf_y = nchw(d["buffer_images"]), long(d["buffer_labels"])  # ER: a full buffer
    self.replay_batch = int(c.method.get("replay_batch", 0)) or c.train.batch_size
    self.params = list(self.model.parameters())
    named = list(self.model.named_parameters())
    self.importance = {n: torch.rand_like(p) for n, p in named}  # EWC
    self.saved = {n: p.detach().clone() + 0.01 * torch.randn_like(p) for n, p in named}
    self.strength, self.margin, self.count, self.projected = c.method.strength, proj.MARGIN, 0, 0
    self.layers = [ps for ps in (list(m.parameters(recurse=False)) for m in self.model.modules()) if ps]
    self.examples = c.train.batch_size
    self.run(2)  # warm up

  def forward(self, x, task):
    """Logits; multi-head models dispatch on the tasks present, as Avalanche's ``MultiTaskModule``."""
    h = self.model[0](x.float().div(255.0).sub(self.mean).div(self.std))
    if self.heads is None:
      return h
    if len(self.heads) == 1:
      return self.heads[0](h)
    tasks = self.torch.unique(task)
    if len(tasks) == 1:
      return self.heads[int(tasks.item())](h)
    out = self.torch.empty(h.shape[0], self.heads[0].out_features)
    for t in tasks.tolist():
      out[task == t] = self.heads[t](h[task == t])
    return out

  def local_loss(self, x, y):
    """Local mode: the sum of every block's loss, each block fed the previous one's detached output."""
    h, loss = x.float().div(255.0).sub(self.mean).div(self.std), 0.0
    for block, head in zip(self.model[0], self.model[1]):
      h = block(h.detach())
      loss = loss + self.nn_f.cross_entropy(head(h), y)
    return loss

  def flat_grad(self):
    return self.torch.cat([p.grad.flatten() if p.grad is not None else self.torch.zeros(p.numel())
                           for p in self.params])

  def set_grad(self, flat) -> None:
    n = 0
    for p in self.params:
      if p.grad is not None:
        p.grad.copy_(flat[n:n + p.numel()].view_as(p))
      n += p.numel()

  def step(self, x, y, task) -> None:
    """One training iteration: memory gradients, the replay batch joined (ER), zero_grad, forward, loss
    (+ penalty), backward, projection, optimizer step."""
    torch, F, m = self.torch, self.nn_f, self.method
    if m in ("gem", "lgd"):  # GEMPlugin.before_training_iteration: one gradient per old task
      rows = []
      for t in range(OLD_TASKS):
        self.opt.zero_grad()
        F.cross_entropy(self.forward(self.mem_x[t], torch.full((proj.MEMORY,), t)), self.mem_y[t]).backward()
        rows.append(self.flat_grad())
      G = torch.stack(rows)
    elif m == "agem":  # AGEMPlugin.before_training_iteration: one reference batch from the memories
      self.opt.zero_grad()
      idx = torch.randperm(OLD_TASKS * proj.MEMORY)[:256]
      xs, ys = self.mem_x.flatten(0, 1)[idx], self.mem_y.flatten()[idx]
      F.cross_entropy(self.forward(xs, idx // proj.MEMORY), ys).backward()
      ref = self.flat_grad()
    if m == "er":  # ReplayPlugin's ReplayDataLoader: the minibatch joined by random buffer rows
      idx = torch.randperm(self.buf_y.shape[0])[:self.replay_batch]
      x, y = torch.cat([x, self.buf_x[idx]]), torch.cat([y, self.buf_y[idx]])
      task = torch.cat([task, self.buf_y[idx] // 2])
    self.opt.zero_grad()
    loss = self.local_loss(x, y) if self.local else F.cross_entropy(self.forward(x, task), y)
    if m == "ewc":  # EWCPlugin.before_backward
      penalty = 0.0
      for n, p in self.model.named_parameters():
        penalty = penalty + (self.importance[n] * (p - self.saved[n]).pow(2)).sum()
      loss = loss + self.strength * penalty
    loss.backward()
    with torch.no_grad():
      if m == "agem":  # AGEMPlugin.after_backward
        g = self.flat_grad()
        dot = torch.dot(g, ref)
        if dot < 0:
          self.set_grad(g - ref * (dot / torch.dot(ref, ref)))
          self.projected += 1
      elif m == "gem":  # GEMPlugin.after_backward, solve_quadprog on the host
        g = self.flat_grad()
        if (torch.mv(G, g) < 0).sum() != 0:
          # pylint: disable-next=protected-access
          v = proj._host_qp(g.numpy(), G.numpy(), np.ones(OLD_TASKS, bool), self.margin, 1e-3)
          self.set_grad(torch.from_numpy(v).float())
          self.projected += 1
      elif m == "lgd":
        self.lgd(G)
    self.opt.step()

  def lgd(self, G) -> None:
    """Our port of LGD (Tang et al. 2021): per layer, ``gbar`` = mean old gradient, basis ``U`` of the
    residuals (SVD, numerical rank as ``scipy.linalg.orth``), ``Pg = g - U^T U g``, and if
    ``<Pgbar, Pg> < 0`` the A-GEM step against ``Pgbar``."""
    torch, col = self.torch, 0
    for layer in self.layers:
      n = sum(p.numel() for p in layer)
      g = torch.cat([p.grad.flatten() for p in layer])
      Gl = G[:, col:col + n]
      col += n
      gbar = Gl.mean(0)
      _, sv, vh = torch.linalg.svd(Gl - gbar, full_matrices=False)
      U = vh[sv > sv.max() * max(Gl.shape) * torch.finfo(sv.dtype).eps]
      pg, pb = g - U.T @ (U @ g), gbar - U.T @ (U @ gbar)
      dot = torch.dot(pb, pg)
      if dot < 0:
        pg = pg - pb * (dot / torch.dot(pb, pb))
      k = 0
      for p in layer:
        p.grad.copy_(pg[k:k + p.numel()].view_as(p))
        k += p.numel()
    self.projected += 1

  def run(self, steps: int) -> float:
    """Seconds per step over ``steps`` consecutive steps."""
    tic = time.perf_counter()
    for _ in range(steps):
      self.step(*self.batches[self.count % len(self.batches)])
      self.count += 1
    return (time.perf_counter() - tic) / steps


def _resnet20(nn, outputs: int, local: bool):
  """CIFAR ResNet-20 as ``configs/_layerwise.py`` builds it (3x3 stem of 16, 3 stages of 3 basic blocks of
  16/32/64 channels, 1x1 conv + BatchNorm projection shortcuts, BatchNorm momentum 0.1 = Flax's 0.9, global
  average pool, Linear). ``local``: ``(blocks, heads)``: 9 local blocks (the stem with the first residual
  block) and their heads (2x2 adaptive average pool + Linear; the last: global pool + Linear)."""
  class Basic(nn.Module):
    def __init__(self, cin, cout, stride):
      super().__init__()
      self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
      self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
      self.shortcut = None
      if stride != 1 or cin != cout:
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
      y = self.b2(self.c2(nn.functional.relu(self.b1(self.c1(x)))))
      return nn.functional.relu(y + (x if self.shortcut is None else self.shortcut(x)))

  stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
  blocks, cin = [], 16
  for stage, width in enumerate((16, 32, 64)):
    for i in range(3):
      blocks.append(Basic(cin, width, 2 if stage > 0 and i == 0 else 1))
      cin = width
  final = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, outputs))
  if not local:
    return nn.Sequential(stem, *blocks, final)
  widths = [16] * 3 + [32] * 3 + [64] * 3
  heads = [nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(4 * w, outputs)) for w in widths[:-1]]
  return nn.ModuleList([nn.Sequential(stem, blocks[0]), *blocks[1:]]), nn.ModuleList(heads + [final])


def _torch_model(nn, setting: str, s: dict):
  """``(model, heads, local)``: ``model[0]`` the body (MLP, ResNet-20: the whole network; local mode: the
  local blocks, ``model[1]`` their heads), else ``model[1]`` the task heads; kernels initialized as lwcl's
  side (LeCun normal, zero biases)."""
  local = setting.endswith("-local")
  if setting == "convnet" or setting.startswith("rehearsal"):
    body = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(64 * 7 * 7, 128), nn.ReLU())
    heads = nn.ModuleList([nn.Linear(128, s["outputs"]) for _ in range(s["heads"])])
    model = nn.ModuleList([body, heads])
  elif setting == "mlp":
    body = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(),
                         nn.Linear(100, s["outputs"]))
    heads, model = None, nn.ModuleList([body])
  else:
    net = _resnet20(nn, s["outputs"], local)
    heads, model = None, nn.ModuleList(list(net) if local else [net])
  for m in model.modules():
    if isinstance(m, (nn.Linear, nn.Conv2d)):
      nn.init.normal_(m.weight, std=m.weight[0].numel() ** -0.5)
      if m.bias is not None:
        nn.init.zeros_(m.bias)
  return model.train(), heads, local
