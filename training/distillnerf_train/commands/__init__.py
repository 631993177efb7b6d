"""``distillnerf`` subcommands provided by the training package."""
