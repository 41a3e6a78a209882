"""Other learning settings: aggregate labels, condensation, federated, energy models, bottlenecks, missing modalities."""
