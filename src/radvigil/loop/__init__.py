"""The closed loop: training jobs, retraining triggers and rollout, on top of the layers below."""
