"""Transformer models (Flax NNX): one block, GPT and BERT stacks, position schemes, decoding."""
