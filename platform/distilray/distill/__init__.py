"""Distillation on Ray Train: pseudo-labelled data in, a trained student model folder out.

``config`` (the stage's config model), ``data`` (Ray Data reading, filter, collator),
``losses`` (the objective), ``step`` (pure train/eval steps), ``loop`` (the per-worker
recipe), ``trainer`` (TorchTrainer, fit, resume), ``export`` (model folder and card).
"""
