"""Inference engines other than transformers ``generate`` (CTranslate2)."""
