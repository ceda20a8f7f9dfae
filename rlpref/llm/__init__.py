"""LLM track: text reward models trained on multi-annotator preferences (MultiPref), with
annotator agreement (and other signals) as preference strength for ResponseRank.

Entry point: ``python -m rlpref.llm.train experiment=rr_agree``.
"""
