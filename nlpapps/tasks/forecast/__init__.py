"""Streaming forecast (many-to-many, synchronous): at every step the model reads one more reading
and forecasts each target's next `horizon` steps, carrying its recurrent state instead of re-reading
the past.

Targets are quantities (a column: a value per horizon step with its 10 % and 90 % quantiles, scored
by MAE against persistence and seasonal naive) or events ("precip > 0": a probability per horizon
step, scored by Brier skill against climatology, persistence and a logistic regression). The export
takes raw readings in physical units: carrying missing readings forward, the encodings and the
normalisation all happen inside it.

data (series, features, targets) → model (stacks and heads, the fit) → serving (the signatures) →
scores and references → run (train, score, export) and backtest (rolling origins over the series).
"""

from nlpapps.tasks.forecast.data import check, model_inputs, other_stations, prepare, read_readings
from nlpapps.tasks.forecast.run import run

NAME = "forecast"

__all__ = ["NAME", "check", "model_inputs", "other_stations", "prepare", "read_readings", "run"]
