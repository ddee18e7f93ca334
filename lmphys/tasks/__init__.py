"""Synthetic worlds: each module owns the meaning of its tokens (data, tokenizer, evaluations)."""
