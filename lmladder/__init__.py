"""lmladder: language-model ladders, from counting letters to training a GPT, on one scale."""

__version__ = "0.1.0"
