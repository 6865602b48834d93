"""What kind of run a config asks for, and which combinations of run modes exist: the one place for both.

=========  ==========================  ===========================================================
kind       config                       what runs (module)
=========  ==========================  ===========================================================
single     (none of the below)          one stream (:mod:`lwcl.engine.experiment`)
seeds      ``num_seeds = S > 0``        S seeds as replicas of one vmapped program (:mod:`lwcl.runs.seeds`)
orders     ``num_orders = R > 0``       R task orders as replicas of one program (:mod:`lwcl.runs.orders`);
                                        with ``num_seeds = S``, the R x S product
sweep      ``sweep.key`` set            candidates on validation data as replicas where the key allows,
                                        then the selected one on test data (:mod:`lwcl.runs.sweep`); with
                                        ``num_seeds = S``, every candidate over S seeds, selected on
                                        the mean, and the final run over the S seeds
=========  ==========================  ===========================================================

Combinations: ``num_seeds`` with ``num_orders`` or with ``sweep.key`` (products of the replica axis,
:class:`lwcl.runs.axis.ReplicaAxis`). Refused, with one line naming the runs to do instead:
``sweep.key`` with ``num_orders`` (a sweep selects on one task order); the config validator refuses it with
the other combinations (:mod:`lwcl.config.values`). Every ``results.json`` written at the top of a
workdir carries its ``kind``; :func:`lwcl.runs.driver.format_summary` prints each kind's summary.
"""

from __future__ import annotations

KINDS = ("single", "seeds", "orders", "sweep")


def kind_of(config) -> str:
  """The kind of run ``config`` asks for (one of :data:`KINDS`); check the config first
  (:func:`lwcl.config.values.check_values` refuses the combinations that do not exist). A product with
  seeds is of its outer kind (``orders`` or ``sweep``)."""
  if config.sweep.key:
    return "sweep"
  if config.num_orders:
    return "orders"
  if config.num_seeds:
    return "seeds"
  return "single"


def kind_of_results(results: dict) -> str:
  """The kind of a ``results.json`` (its ``kind``; files written before the field existed are recognized
  by their keys)."""
  if "kind" in results:
    return results["kind"]
  if "orders" in results:
    return "orders"
  if "seeds" in results:
    return "seeds"
  return "sweep" if "sweep" in results else "single"
