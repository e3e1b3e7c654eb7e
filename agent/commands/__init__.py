"""One module per subcommand of ``preserve``, and the group that holds them (``group``)."""

# Subcommand -> (module under agent.commands, its click command): imported when named
# (or for --help), not by every collection (some 30 ms of start-up, bench/RESULTS.md).
SUBCOMMANDS = {
    "keygen": ("keygen", "keygen"),
    "custody": ("custody", "custody"),
    "release": ("release", "release"),
    "verify": ("verify", "verify_command"),
    "report": ("report", "report_command"),
    "export": ("export", "export_command"),
    "image": ("image", "image_command"),
    "selfcheck": ("selfcheck", "selfcheck"),
    "fleet-summary": ("fleet_summary", "fleet_summary_command"),
}
