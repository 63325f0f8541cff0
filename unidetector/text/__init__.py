"""Text side: CLIP text encoder, prompts, embedding files, and the synthetic word-vector encoder."""
