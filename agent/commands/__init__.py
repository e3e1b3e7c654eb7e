"""One module per subcommand of ``preserve``."""
