"""distillnerf_train: training, teachers, foundation-feature targets and evaluation for DistillNeRF."""
