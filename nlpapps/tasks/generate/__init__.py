"""Generation (one-to-many): one condition in (categories such as a domain or a locale, numbers
such as a score), a whole text out, written one character at a time.

data: the texts and their conditions, the character vocabulary; model: the conditioned recurrent
decoder; serving: the exported signatures, sampling inside the graph; evaluation: perplexity
against baselines, copies, diversity and control; run: the whole task, top to bottom.
"""

from nlpapps.tasks.generate.run import NAME, run

__all__ = ["NAME", "run"]
