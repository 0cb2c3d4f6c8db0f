"""nlpapps: recurrent-network applications for language and sequence tasks."""

import os

# TensorFlow's C++ start-up chatter would drown the CLI's one-line errors.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"
