"""Self-supervised and contrastive representation learning."""
