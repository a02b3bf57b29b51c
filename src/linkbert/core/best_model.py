"""--load_best_model_at_end: which dev evaluation is the best so far (--metric_for_best_model,
--greater_is_better, as 4.9.1's Trainer decided it)."""

from __future__ import annotations

import logging
from typing import Callable, Optional

from .errors import UserError
from .rundir import RunFolder

logger = logging.getLogger("linkbert")


class BestModel:
    def __init__(self, metric_for_best_model: Optional[str], greater_is_better: Optional[bool],
                 main_metric: str) -> None:
        self.name = metric_for_best_model or main_metric
        self.key = self.name if self.name.startswith("eval_") else f"eval_{self.name}"
        # 4.9.1: greater is better unless the metric is a loss
        self.greater = not self.key.endswith("loss") if greater_is_better is None else greater_is_better

    def improves(self, metrics: dict, best: Optional[float]) -> bool:
        """Whether these dev metrics beat the best so far (`best`; None: none yet)."""
        if self.key not in metrics:
            raise UserError("unknown_metric", f"--metric_for_best_model {self.name}: the dev metrics are "
                            f"{', '.join(sorted(metrics))}")
        value = metrics[self.key]
        return best is None or (value > best if self.greater else value < best)

    def load(self, state, folder: Optional[RunFolder], load_weights: Callable[[dict], None]) -> None:
        """At the end of training: the best dev model's weights (read by the run folder) back into
        the model, if one was saved."""
        weights = folder.best_model_weights(state.best_checkpoint) if folder is not None else None
        if weights is not None:
            logger.info("Loading the best dev model (%s = %s) from %s", self.name, state.best_metric,
                        state.best_checkpoint)
            load_weights(weights)
