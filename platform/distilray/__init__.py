"""distilray: Distil-Whisper knowledge distillation on Ray.

Stages (one module each): ``labelling`` (Ray Data pseudo-labelling), ``student``
(initialisation), ``distill`` (Ray Train), ``inference`` (short/long-form and
speculative decoding), ``evaluation``, ``serving`` (Ray Serve). Nothing runs at import.
"""

__version__ = "0.1.0"
