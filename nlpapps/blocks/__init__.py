"""Recurrent building blocks: textbook cells and the project's one recurrent-layer factory."""

from nlpapps.blocks.attention import Attention
from nlpapps.blocks.cells import GRUCell, LSTMCell, PeepholeLSTMCell
from nlpapps.blocks.stack import CELLS, POOLINGS, RecurrentStack, recurrent_stack

__all__ = [
    "CELLS",
    "POOLINGS",
    "Attention",
    "GRUCell",
    "LSTMCell",
    "PeepholeLSTMCell",
    "RecurrentStack",
    "recurrent_stack",
]
