"""Identity-locked generation: framing, the diffusion pipelines and the face re-render pass."""
