"""Pseudo-labelling on Ray Data: a teacher's greedy transcripts for every input clip."""
