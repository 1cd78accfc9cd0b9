"""Evaluation: asking a served model, metrics, the judge, answer verification, the RAG baseline, probes, reports and
human review sheets."""
