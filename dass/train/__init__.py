"""Training: the fit loop, teacher readiness, losses, the teacher-logit cache."""
