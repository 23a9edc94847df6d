"""Monte-Carlo evaluation: the reported evaluations also average K passes with the regulariser on.

``monte_carlo = dict(samples=K)`` in a config (absent: off) makes the evaluation after the last
training epoch, and every test run, score each batch twice: deterministically, as always, and
as the mean of K passes in which the attention regulariser draws its masks
(:func:`dropkey_core.sampling_in_eval`; everything else stays in eval mode). The metrics report
the second next to the first as ``mc/<metric name>`` (``mc/cls/top1`` beside ``cls/top1``).
Other evaluations cost what they always did; the reported ones cost K forward passes more.

The pieces are shared here; a task supplies only what it averages (:class:`MonteCarloModel`)
and which metrics it recomputes on the average (:class:`MonteCarloMetric`).
"""
from __future__ import annotations

from typing import Callable, Optional

from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from dropkey_core import sampling_in_eval

from .files import DataFormatError
from .hooks import unwrap

MC_PREFIX = "mc"
FIELDS = ("samples",)


def resolve_monte_carlo(cfg: Config) -> Optional[int]:
    """The number of stochastic passes ``cfg.monte_carlo`` asks for, or None (off)."""
    source = cfg.filename or "<config>"
    given = cfg.get("monte_carlo")
    if given is None:
        return None
    if not isinstance(given, dict):
        raise DataFormatError(source, "monte_carlo", f"{given!r} is not dict(samples=K)")
    for key in given:
        if key not in FIELDS:
            raise DataFormatError(source, f"monte_carlo.{key}",
                                  f"unknown key (allowed: {', '.join(FIELDS)})")
    samples = given.get("samples")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise DataFormatError(source, "monte_carlo.samples",
                              f"{samples!r} is not a whole number of passes >= 1")
    return samples


def average_passes(forward: Callable[[], dict], samples: int) -> dict:
    """The element-wise mean of ``samples`` calls of ``forward``, each a dict of tensors."""
    total = {key: value.clone() for key, value in forward().items()}
    for _ in range(samples - 1):
        for key, value in forward().items():
            total[key] += value
    return {key: value / samples for key, value in total.items()}


class MonteCarloModel:
    """Mixin of a model whose ``predict`` mode can add a Monte-Carlo average to its outputs.

    :class:`MonteCarloEvalHook` sets ``monte_carlo_samples`` for the evaluations that report
    (0: off). The model calls :meth:`monte_carlo` with a function of the batch that returns the
    quantities a mean of passes is taken over (class probabilities; regressed parameters before
    any non-linear decoding) and decodes the average as it decodes a single pass.
    """

    monte_carlo_samples: int = 0

    def monte_carlo(self, forward: Callable[[], dict]) -> Optional[dict]:
        """The mean of ``monte_carlo_samples`` calls of ``forward`` with the regulariser
        sampling; None, with no pass run, when Monte-Carlo evaluation is off."""
        if not self.monte_carlo_samples:
            return None
        with sampling_in_eval(self):
            return average_passes(forward, self.monte_carlo_samples)


def monte_carlo_names(metrics: dict) -> dict:
    """Metrics computed on the Monte-Carlo average, under the names a
    :class:`MonteCarloMetric`'s ``compute_metrics`` returns them."""
    return {f"{MC_PREFIX}/{key}": value for key, value in metrics.items()}


class MonteCarloMetric:
    """Mixin of an mmengine ``BaseMetric`` whose ``compute_metrics`` also returns metrics of the
    Monte-Carlo average, named by :func:`monte_carlo_names`. They are reported as
    ``mc/<prefix>/<name>``, next to ``<prefix>/<name>``, so that every Monte-Carlo metric of a
    run shares one prefix."""

    def evaluate(self, size: int) -> dict:
        metrics = super().evaluate(size)
        inner = "/".join(filter(None, (self.prefix, MC_PREFIX))) + "/"
        return {("/".join(filter(None, (MC_PREFIX, self.prefix, key[len(inner):])))
                 if key.startswith(inner) else key): value for key, value in metrics.items()}


@HOOKS.register_module()
class MonteCarloEvalHook(Hook):
    """Checks ``monte_carlo`` before the run and tells the model K at the reported evaluations.

    Those are every test and standalone validation, and in training the validation after the
    last epoch; the intermediate validations stay deterministic only. A model that cannot
    average passes (not a :class:`MonteCarloModel`) with ``monte_carlo`` set is an error naming
    the field, before training.
    """

    def __init__(self):
        self.samples: Optional[int] = None
        self.max_epochs: Optional[int] = None

    def before_run(self, runner) -> None:
        self.samples = resolve_monte_carlo(runner.cfg)
        model = unwrap(runner.model)
        if self.samples is not None and not isinstance(model, MonteCarloModel):
            raise DataFormatError(runner.cfg.filename or "<config>", "monte_carlo",
                                  f"{type(model).__name__} cannot average stochastic passes "
                                  "(Monte-Carlo evaluation: classification and mesh models)")

    def before_train(self, runner) -> None:
        self.max_epochs = runner.max_epochs

    def _tell_model(self, runner, samples: int) -> None:
        if self.samples is not None:
            unwrap(runner.model).monte_carlo_samples = samples

    def before_val_epoch(self, runner) -> None:
        final = self.max_epochs is None or runner.epoch >= self.max_epochs
        self._tell_model(runner, self.samples if final else 0)

    def before_test_epoch(self, runner) -> None:
        self._tell_model(runner, self.samples)

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._tell_model(runner, 0)

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._tell_model(runner, 0)
