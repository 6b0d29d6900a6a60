"""Distillation on Ray Train: pseudo-labelled data in, a trained student model folder out.

``config`` (the stage's config model), ``data`` (Ray Data reading, λ filter, hold-out,
features), ``collate`` (padding and label masking), ``losses`` (the objective),
``optim`` (AdamW and schedule), ``step`` (pure train/eval steps), ``checkpoint`` and
``history`` (what a run leaves in storage), ``loop`` (the per-worker recipe),
``trainer`` (TorchTrainer, fit, resume), ``export`` (model folder and card) and
``outcome`` (what a finished run produced).
"""
