"""Evaluation of teacher, student and speculative decoding on labelled audio, on Ray."""
