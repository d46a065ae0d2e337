"""The meta-predictor: the model, the dataset encoder, meta-learning, and the method registry."""
