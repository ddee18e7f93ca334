"""lmphys: synthetic worlds, small GPT/BERT models, training loops and probes for the
*Physics of Language Models* series, written as pure JAX functions over pytrees."""
