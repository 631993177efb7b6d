"""``distillnerf`` subcommands provided by the model library."""
